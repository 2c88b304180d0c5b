package hooks

import (
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/attribution"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/postback"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/saleupdate"
)

// maxConversionBody bounds POST /api/pba/conversions (16 KiB of metadata plus the fields).
const maxConversionBody = 64 << 10

// conversionBody is the JSON of POST /api/pba/conversions (docs/http-api.md).
type conversionBody struct {
	Program        string          `json:"program"` // superusers only: id or slug
	ClickID        string          `json:"click_id"`
	AffiliateCode  string          `json:"affiliate_code"`
	Coupon         string          `json:"coupon"`
	ExternalID     string          `json:"external_id"`
	Amount         int64           `json:"amount"` // a JSON string or decimal is refused (decodeStrict)
	Currency       string          `json:"currency"`
	Customer       string          `json:"customer"`
	CustomerEmail  string          `json:"customer_email"`
	OccurredAt     string          `json:"occurred_at"`
	Status         string          `json:"status"`
	SubscriptionID string          `json:"subscription_id"`
	Metadata       json.RawMessage `json:"metadata"`
	Imported       bool            `json:"imported"` // superusers only (holds.go)
}

// handleAPI is POST /api/pba/conversions: 201 new, 200 duplicate, 409 conflicting
// duplicate, 422 nobody to credit, 400 with per-field messages.
func (conversions *conversionService) handleAPI(e *core.RequestEvent) error {
	programID, err := conversionCaller(e)
	if err != nil {
		return err
	}
	bySecret := programID != "" // a program's postback secret, not a superuser or an API key
	raw, err := io.ReadAll(e.Request.Body)
	if err != nil {
		return e.BadRequestError("Could not read the body.", err)
	}
	var body conversionBody
	if errs := decodeStrict(raw, &body); errs != nil {
		if _, ok := errs["amount"]; ok {
			errs["amount"] = validation.NewError("invalid_amount", "An integer of minor units (1999 for 19.99 USD), not a string or a decimal.")
		}
		return e.BadRequestError("Invalid conversion.", errs)
	}
	if programID == "" && body.Program != "" { // superuser choosing the program
		p, err := e.App.FindFirstRecordByFilter(collections.Programs, "id = {:p} || slug = {:p}", map[string]any{"p": body.Program})
		if err != nil {
			return e.BadRequestError("Unknown program.", fieldError("program", "unknown_program", "No program has this id or slug."))
		}
		programID = p.Id
	} else if programID != "" && body.Program != "" && body.Program != programID {
		return e.BadRequestError("The program is the one of the secret.", fieldError("program", "forbidden", "Omit program when authenticating with a program secret."))
	}
	if body.Imported && (bySecret || apiKeyOf(e) != nil) { // imports are for superusers, whatever program they name
		return importForbidden(e)
	}

	in := conversionInput{
		ProgramID: programID, Source: collections.SourceAPI, ExternalID: strings.TrimSpace(body.ExternalID),
		ClickID: strings.TrimSpace(body.ClickID), AffiliateCode: body.AffiliateCode, Coupon: body.Coupon,
		Customer: strings.TrimSpace(body.Customer), CustomerEmail: strings.TrimSpace(body.CustomerEmail),
		Amount: body.Amount, Currency: body.Currency, Status: strings.ToLower(strings.TrimSpace(body.Status)),
		SubscriptionID: body.SubscriptionID, Imported: body.Imported,
	}
	errs := validation.Errors{}
	if body.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339, body.OccurredAt)
		if err != nil {
			errs["occurred_at"] = validation.NewError("invalid_time", "An RFC 3339 time such as 2026-11-24T10:00:00Z.")
		}
		in.OccurredAt = t
	}
	if len(body.Metadata) > 0 && string(body.Metadata) != "null" {
		if err := json.Unmarshal(body.Metadata, &in.Metadata); err != nil {
			errs["metadata"] = validation.NewError("invalid_metadata", "A JSON object.")
		}
	}
	if len(errs) > 0 {
		return e.BadRequestError("Invalid conversion.", errs)
	}
	return respondConversion(e, conversions, in)
}

// handlePostback is GET /api/pba/postback: the same as the API for servers that can only
// call a URL, with the amount as a decimal string. It also updates a recorded sale: status
// (refunded, rejected, approved, pending) and refund= (cumulative, decimal) on a known txid go
// through applySaleUpdate, as the API's update form does.
func (conversions *conversionService) handlePostback(e *core.RequestEvent) error {
	req, problems := postback.Parse(e.Request.URL.Query())
	program := "" // with an API key (sales:write): any program's sales, as for the API
	if apiKeyOf(e) != nil {
		delete(problems, "key")
	} else {
		if problems["key"] != "" {
			return e.UnauthorizedError("The program's postback key is required.", fieldError("key", "required", problems["key"]))
		}
		var ok bool
		if program, ok = programBySecret(e.App, req.Key); !ok {
			return e.UnauthorizedError("Unknown postback key.", fieldError("key", "invalid", "No program has this key."))
		}
	}
	if e.Request.URL.Query().Has(collections.ConversionImported) {
		return importForbidden(e)
	}
	if len(problems) > 0 {
		errs := validation.Errors{}
		for field, msg := range problems {
			errs[field] = validation.NewError("invalid_"+field, msg)
		}
		return e.BadRequestError("Invalid postback.", errs)
	}
	in := conversionInput{
		ProgramID: program, Source: collections.SourcePostback, ExternalID: req.TxID, ClickID: req.ClickID,
		AffiliateCode: req.AffiliateCode, Coupon: req.Coupon, Customer: req.Customer, Amount: req.Amount,
		Currency: req.Currency, Status: req.Status, OccurredAt: req.OccurredAt,
	}
	keyed := req.Sequence > 0 || !req.UpdatedAt.IsZero()
	if !req.Update() && !keyed {
		if req.Amount == 0 {
			return e.BadRequestError("Invalid postback.", fieldError("amount", "required",
				"The sale's amount (a decimal like 19.99) records it; status or refund update a recorded txid."))
		}
		return respondConversion(e, conversions, in) // a sale, as before
	}
	u := saleUpdate{Update: saleupdate.Update{Status: req.Status, Refunded: -1, UpdatedAt: req.UpdatedAt, Sequence: req.Sequence}}
	if req.HasRefund {
		u.Refunded = req.Refund
	}
	if in.Status == collections.ConversionRefunded {
		in.Status = "" // a sale reported refunded at once is recorded approved, then refunded
	}
	var rec *core.Record
	var created bool
	var d saleupdate.Decision
	update := func(tx core.App) error {
		var err error
		rec, err = findSale(tx, saleRef{Program: program, Source: collections.SourcePostback, ExternalID: req.TxID})
		switch {
		case errors.Is(err, errSaleNotFound) && req.Amount == 0:
			return err
		case errors.Is(err, errSaleNotFound):
			if rec, created, err = conversions.withTx(tx).record(in); err != nil || !created {
				// Not created: recorded by another program under this txid (the sources' ids are
				// unique): not this program's sale to change.
				return cmp.Or(err, errSaleNotFound)
			}
			// Only the refund (and the order key) are left to apply: the status is the sale's
			// own (a self-referral stays rejected).
			if u.Status != collections.ConversionRefunded {
				u.Status = ""
			}
		case err != nil:
			return err
		case req.Amount > 0 && (int64(rec.GetInt(collections.FieldAmount)) != req.Amount || rec.GetString(collections.FieldCurrency) != req.Currency):
			return errConversionConflict
		}
		d, err = applySaleUpdate(tx, rec, u, saleChange{Door: collections.DoorPostback})
		return err
	}
	err := conversions.awaitingClick(e.Request.Context(), func() error { return conversions.app.RunInTransaction(update) })
	var verrs validation.Errors
	switch {
	case errors.Is(err, errSaleNotFound):
		return e.NotFoundError("No such sale.", fieldError("txid", "not_found",
			fmt.Sprintf("No sale of this program was recorded with txid %q; give amount, currency and click_id, affiliate_code or coupon to record it.", req.TxID)))
	case errors.As(err, &verrs), errors.Is(err, attribution.ErrNoAttribution), errors.Is(err, errConversionConflict),
		errors.Is(err, errClickBehind):
		return respondConversionError(e, rec, err)
	case err != nil:
		return e.InternalServerError("", err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return e.JSON(status, updateAnswer(rec, d))
}

func respondConversion(e *core.RequestEvent, conversions *conversionService, in conversionInput) error {
	var rec *core.Record
	var created bool
	err := conversions.awaitingClick(e.Request.Context(), func() (err error) {
		rec, created, err = conversions.record(in)
		return err
	})
	if err != nil {
		return respondConversionError(e, rec, err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return e.JSON(status, rec)
}

// respondConversionError answers a sale that could not be recorded: 400 invalid, 422 nobody to
// credit, 409 its external id was recorded with other figures (rec), 503 its click is still on
// its way from a redirect node (click_awaiter.go), 500 anything else.
func respondConversionError(e *core.RequestEvent, rec *core.Record, err error) error {
	var verrs validation.Errors
	switch {
	case errors.Is(err, errClickBehind):
		return clickBehind(e)
	case errors.As(err, &verrs):
		return e.BadRequestError("Invalid conversion.", verrs)
	case errors.Is(err, attribution.ErrNoAttribution):
		return e.Error(http.StatusUnprocessableEntity, "No affiliate can be credited with this sale; nothing was stored.",
			fieldError("click_id", "no_attribution", "The click, affiliate code and coupon are unknown, expired, flagged or not approved."))
	case errors.Is(err, errConversionConflict):
		return e.Error(http.StatusConflict, "This external_id was already recorded with another amount or currency.",
			fieldError("external_id", "conflict", fmt.Sprintf("Recorded as %d %s.", rec.GetInt(collections.FieldAmount), rec.GetString(collections.FieldCurrency))))
	}
	return e.InternalServerError("", err)
}

// conversionCaller authenticates the sender: a superuser (program chosen in the body), or a
// program's postback secret as a Bearer token (the program is the secret's).
func conversionCaller(e *core.RequestEvent) (string, error) {
	if adminCaller(e) { // a superuser, or an API key with sales:write: any program's sales
		return "", nil
	}
	token, ok := strings.CutPrefix(e.Request.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return "", e.UnauthorizedError("Send the program's postback secret as `Authorization: Bearer <secret>`.", nil)
	}
	program, ok := programBySecret(e.App, strings.TrimSpace(token))
	if !ok {
		return "", e.UnauthorizedError("Unknown program secret.", nil)
	}
	return program, nil
}

// programBySecret finds the program whose postback secret is secret, comparing in constant
// time so the response time says nothing about how much of a guess was right.
func programBySecret(app core.App, secret string) (string, bool) {
	programs, err := app.FindAllRecords(collections.Programs)
	if err != nil || secret == "" {
		return "", false
	}
	found := ""
	for _, p := range programs {
		if subtle.ConstantTimeCompare([]byte(p.GetString(collections.ProgramPostbackSecret)), []byte(secret)) == 1 {
			found = p.Id
		}
	}
	return found, found != ""
}
