package hooks

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/attribution"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Limits of a reported sale.
const (
	maxMetadataBytes = 16 << 10
	maxExternalID    = 255
	futureSkew       = 5 * time.Minute // occurred_at may run this far ahead of our clock
)

// errConversionConflict: the sender reused an external id for a different sale (409).
var errConversionConflict = errors.New("this external_id was already recorded with another amount or currency")

// conversionInput is one sale as any source reports it (API, postback, Stripe).
type conversionInput struct {
	ProgramID      string // "" = derived from the click, affiliate code or coupon, else the default program
	Source         string
	ExternalID     string
	ClickID        string
	AffiliateCode  string
	Coupon         string
	Customer       string
	CustomerEmail  string
	Amount         int64
	Currency       string
	OccurredAt     time.Time // zero = now
	Status         string    // "" = approved; pending and rejected are accepted from senders
	SubscriptionID string
	PaymentIntent  string
	Charge         string
	Metadata       map[string]any
	// IgnoreMismatch makes a duplicate external id with other figures a plain duplicate
	// (Stripe reports one payment through several events whose amounts may differ by discounts).
	IgnoreMismatch bool
	// AttributedAt is when the customer was referred, if before the sale (a Stripe trial's
	// signup): clicks and cookie windows are judged then. Zero = OccurredAt.
	AttributedAt time.Time
	// Imported is a superuser's import of history: occurred_at may precede the attribution window.
	Imported bool
	// Signed is a sale from a provider's signed event (Stripe, Paddle, Lemon Squeezy, Shopify):
	// its occurred_at is trusted, even past the window, as a delivery retried for days (holds.go).
	Signed bool
}

// conversionService records sales exactly once, attributes them and keeps the rollups, the
// live counters and the affiliate's webhook outbox in step, all in one transaction.
type conversionService struct {
	app  core.App
	live *liveHub
	now  func() time.Time
	// ids are time-ordered, so conversions append to the primary key and to the commission
	// engine's (conversion, kind) index instead of landing on random pages. Shared with every
	// withTx copy, so no two sales of the process share an instant.
	ids     *store.OrderedIDs
	metrics *metrics
	gap     *clickGap // clicks still in the stream of redirect nodes (click_awaiter.go)
}

// newConversionService builds the service; live may be nil (CLI commands broadcast nothing).
func newConversionService(app core.App, live *liveHub) *conversionService {
	return &conversionService{app: app, live: live, now: time.Now, ids: &store.OrderedIDs{}, metrics: metricsOf(app), gap: clickGapOf(app)}
}

// withTx is the service recording inside tx, an enclosing transaction (a webhook event's):
// its RunInTransaction joins tx instead of opening another.
func (s *conversionService) withTx(tx core.App) *conversionService {
	c := *s
	c.app = tx
	return &c
}

// record stores the sale (created = true) or returns the one already stored under the same
// source and external id (created = false). Errors are validation.Errors (400),
// attribution.ErrNoAttribution (422) or errConversionConflict (409); a *clickPendingError
// (the click may still be in the stream: awaitingClick) is not counted; anything else is internal.
// A sale created inside an enclosing transaction (withTx) is counted when that ends.
func (s *conversionService) record(in conversionInput) (*core.Record, bool, error) {
	rec, created, err := s.recordSale(in)
	if pending := (*clickPendingError)(nil); errors.As(err, &pending) {
		return rec, created, err
	}
	if created && s.app.IsTransactional() {
		// Inside a webhook event's transaction: the sale exists once that commits. Rolled
		// back, it was an attempt that failed (the provider sends the event again).
		s.app.TxInfo().OnComplete(func(txErr error) error {
			if txErr != nil {
				s.metrics.sale(in.Source, false, txErr)
			} else {
				s.metrics.sale(in.Source, true, nil)
			}
			return nil
		})
	} else {
		s.metrics.sale(in.Source, created, err)
	}
	return rec, created, err
}

// recordSale is record without the count of its result.
func (s *conversionService) recordSale(in conversionInput) (*core.Record, bool, error) {
	in.Currency = strings.ToLower(strings.TrimSpace(in.Currency))
	in.Coupon = strings.ToLower(strings.TrimSpace(in.Coupon))
	in.AffiliateCode = strings.ToLower(strings.TrimSpace(in.AffiliateCode))
	if in.OccurredAt.IsZero() {
		in.OccurredAt = s.now()
	}
	if errs := s.validate(in); len(errs) > 0 {
		return nil, false, errs
	}

	var rec *core.Record
	var created bool
	var liveDelta liveCounters
	err := s.app.RunInTransaction(func(tx core.App) error {
		existing, err := tx.FindFirstRecordByFilter(collections.Conversions, "source = {:source} && external_id = {:id}",
			dbx.Params{"source": in.Source, "id": in.ExternalID})
		switch {
		case err == nil:
			rec = existing
			if !in.IgnoreMismatch && (int64(existing.GetInt(collections.FieldAmount)) != in.Amount ||
				existing.GetString(collections.FieldCurrency) != in.Currency) {
				return errConversionConflict
			}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("find duplicate: %w", err)
		}

		program, decision, err := s.attribute(tx, in)
		if program != nil && !in.Signed { // signed provider events are trusted (holds.go)
			if errs := checkOccurredAt(tx, in.OccurredAt, s.now(), program, in.ClickID, in.Imported); errs != nil {
				return errs
			}
		}
		if err != nil {
			return err
		}
		if program.Currency() != in.Currency {
			return fieldError("currency", "currency_mismatch",
				fmt.Sprintf("The program's currency is %q.", program.Currency()))
		}
		rec, err = s.insert(tx, in, program, decision)
		if err != nil {
			return err
		}
		created = true
		if rec.GetString(collections.FieldStatus) != collections.ConversionRejected {
			liveDelta = liveCounters{Conversions: 1, Revenue: in.Amount}
			key := store.StatsKeyOf(in.OccurredAt, decision.AffiliateID, program.Id, decision.LinkID)
			if err := store.AddStats(tx, map[store.StatsKey]store.StatsDelta{key: {Conversions: 1, Revenue: in.Amount}}); err != nil {
				return err
			}
		}
		if err := applyPendingStripe(tx, rec); err != nil {
			return err
		}
		return saleCreatedEvents(tx, rec)
	})
	if err != nil {
		return rec, false, err
	}
	if created && liveDelta.Conversions > 0 && s.live != nil {
		s.live.add(rec.GetString(collections.FieldAffiliate), liveDelta)
	}
	return rec, created, nil
}

func (s *conversionService) validate(in conversionInput) validation.Errors {
	errs := validation.Errors{}
	switch {
	case strings.TrimSpace(in.ExternalID) == "":
		errs["external_id"] = validation.NewError("required", "The sale's id in your system is required (it makes retries safe).")
	case len(in.ExternalID) > maxExternalID || !textcheck.Line(in.ExternalID):
		errs["external_id"] = validation.NewError("invalid", "At most 255 printable characters, no control or bidirectional formatting character.")
	}
	for field, v := range map[string]string{
		"click_id": in.ClickID, "affiliate_code": in.AffiliateCode, "coupon": in.Coupon, "customer": in.Customer,
		"customer_email": in.CustomerEmail, "subscription_id": in.SubscriptionID,
	} {
		if !textcheck.Line(v) {
			errs[field] = validation.NewError("invalid_characters", textcheck.Message)
		}
	}
	switch {
	case in.Amount <= 0:
		errs["amount"] = validation.NewError("invalid_amount", "A positive integer of minor units (1999 for 19.99 USD).")
	case in.Amount > money.MaxAmount:
		errs["amount"] = validation.NewError("too_large", fmt.Sprintf("At most %d minor units.", money.MaxAmount))
	}
	if !money.ValidCurrency(in.Currency) {
		errs["currency"] = validation.NewError("invalid_currency", "A three-letter ISO 4217 code, e.g. usd.")
	}
	if in.OccurredAt.After(s.now().Add(futureSkew)) {
		errs["occurred_at"] = validation.NewError("in_future", "The sale cannot have happened in the future.")
	}
	if in.Metadata != nil {
		if b, err := json.Marshal(in.Metadata); err != nil || len(b) > maxMetadataBytes {
			errs["metadata"] = validation.NewError("too_large", "At most 16 KiB of JSON.")
		}
	}
	switch in.Status {
	case "", collections.ConversionApproved, collections.ConversionPending, collections.ConversionRejected:
	default:
		errs["status"] = validation.NewError("invalid_status", "One of approved, pending, rejected.")
	}
	if in.ClickID == "" && in.AffiliateCode == "" && in.Coupon == "" && in.Customer == "" {
		errs["click_id"] = validation.NewError("required", "Give click_id, affiliate_code or coupon (or a returning customer).")
	}
	return errs
}

// attribute looks up every candidate the input names and lets attribution.Decide choose.
func (s *conversionService) attribute(tx core.App, in conversionInput) (*collections.Program, attribution.Decision, error) {
	var click *attribution.Click
	var clickRecord *core.Record
	if in.ClickID != "" {
		if r, err := tx.FindRecordById(collections.Clicks, in.ClickID); err == nil {
			clickRecord = r
		} else if s.gap.pending(in.ClickID) {
			return nil, attribution.Decision{}, &clickPendingError{clickID: in.ClickID}
		}
	}
	var codeAffiliate *core.Record
	if in.AffiliateCode != "" {
		codeAffiliate, _ = tx.FindFirstRecordByData(collections.Affiliates, collections.FieldCode, in.AffiliateCode)
		if codeAffiliate == nil { // an imported legacy code (hooks/import.go) credits its affiliate too
			if alias, err := tx.FindFirstRecordByData(collections.CodeAliases, collections.FieldCode, in.AffiliateCode); err == nil {
				codeAffiliate, _ = tx.FindRecordById(collections.Affiliates, alias.GetString(collections.FieldAffiliate))
			}
		}
	}

	programID := in.ProgramID
	if programID == "" {
		switch {
		case clickRecord != nil:
			programID = clickRecord.GetString(collections.FieldProgram)
		case codeAffiliate != nil:
			programID = codeAffiliate.GetString(collections.FieldProgram)
		}
	}
	var coupon *core.Record
	if in.Coupon != "" {
		filter, params := "code = {:code} && active = true", dbx.Params{"code": in.Coupon, "program": programID}
		if programID != "" {
			filter += " && program = {:program}"
		}
		if found, err := tx.FindRecordsByFilter(collections.Coupons, filter, "created", 2, 0, params); err == nil && len(found) == 1 {
			coupon = found[0]
			if programID == "" {
				programID = coupon.GetString(collections.FieldProgram)
			}
		}
	}
	var program *collections.Program
	var err error
	if programID == "" {
		program, err = collections.FindDefaultProgram(tx)
	} else {
		program, err = collections.FindProgram(tx, programID)
	}
	if err != nil {
		return nil, attribution.Decision{}, fieldError("program", "unknown_program", "No such active program.")
	}
	if !program.Active() {
		return nil, attribution.Decision{}, fieldError("program", "inactive_program", "The program is not active.")
	}

	recurring := program.GetString(collections.ProgramRecurring)
	attributedAt := in.OccurredAt
	if !in.AttributedAt.IsZero() && in.AttributedAt.Before(attributedAt) {
		attributedAt = in.AttributedAt
	}
	input := attribution.Input{
		Program: attribution.Program{
			ID: program.Id, CookieDays: program.CookieDays(),
			FirstClick: program.GetString(collections.ProgramAttribution) == collections.AttributionFirstClick,
			Sticky:     recurring == collections.RecurringMonths || recurring == collections.RecurringLifetime,
		},
		OccurredAt:    attributedAt,
		CustomerEmail: in.CustomerEmail,
	}
	if clickRecord != nil {
		if click, err = s.clickCandidate(tx, clickRecord); err != nil {
			return nil, attribution.Decision{}, err
		}
		input.Click = click
		if input.Program.FirstClick && click.Visitor != "" {
			if input.FirstClick, err = s.firstClick(tx, program, click.Visitor, attributedAt); err != nil {
				return nil, attribution.Decision{}, err
			}
		}
	}
	if codeAffiliate != nil && codeAffiliate.GetString(collections.FieldProgram) == program.Id {
		input.AffiliateCode = affiliateCandidate(codeAffiliate)
	}
	if coupon != nil && coupon.GetString(collections.FieldProgram) == program.Id {
		if a, err := tx.FindRecordById(collections.Affiliates, coupon.GetString(collections.FieldAffiliate)); err == nil {
			input.Coupon = affiliateCandidate(a)
		}
	}
	if in.Customer != "" && input.Program.Sticky {
		first, err := tx.FindRecordsByFilter(collections.Conversions,
			"program = {:program} && customer = {:customer} && status != 'rejected'", "occurred_at", 1, 0,
			dbx.Params{"program": program.Id, "customer": in.Customer})
		if err == nil && len(first) == 1 {
			if a, err := tx.FindRecordById(collections.Affiliates, first[0].GetString(collections.FieldAffiliate)); err == nil {
				input.Customer = affiliateCandidate(a)
			}
		}
	}
	d, err := attribution.Decide(input)
	return program, d, err
}

func (s *conversionService) clickCandidate(tx core.App, r *core.Record) (*attribution.Click, error) {
	a, err := tx.FindRecordById(collections.Affiliates, r.GetString(collections.FieldAffiliate))
	if err != nil {
		return nil, fmt.Errorf("click %s affiliate: %w", r.Id, err)
	}
	return &attribution.Click{
		ID: r.Id, LinkID: r.GetString(collections.FieldLink), ProgramID: r.GetString(collections.FieldProgram),
		Visitor: r.GetString(collections.ClickVisitor), Flag: r.GetString(collections.ClickFlag),
		Created: r.GetDateTime(collections.FieldCreated).Time(), Affiliate: *affiliateCandidate(a),
	}, nil
}

// The two reads of firstClick. A visitor id minted by a click is that click's id, and that click
// comes before every other click carrying the id; the others are in idx_clicks_visitor, whose
// condition "visitor != id" the query states (SQLite uses a partial index only for a query
// that does).
const (
	firstClickMintingSQL = `SELECT id FROM {{clicks}} WHERE id = {:visitor}
		AND program = {:program} AND flag = '' AND created >= {:since}`
	firstClickLaterSQL = `SELECT id FROM {{clicks}} WHERE visitor = {:visitor} AND visitor != id
		AND created >= {:since} AND program = {:program} AND flag = '' ORDER BY created LIMIT 1`
)

// firstClick is the visitor's earliest unflagged click in the program within the cookie window.
// It runs inside the conversion's transaction, which holds the one write connection (clicks
// wait for it), so it reads by primary key, then by idx_clicks_visitor, and never scans clicks.
func (s *conversionService) firstClick(tx core.App, program *collections.Program, visitor string, at time.Time) (*attribution.Click, error) {
	params := dbx.Params{"program": program.Id, "visitor": visitor, "since": store.DBTime(at.AddDate(0, 0, -program.CookieDays()))}
	r, err := recordByIDQuery(tx, collections.Clicks, firstClickMintingSQL, params)
	if err == nil && r == nil {
		r, err = recordByIDQuery(tx, collections.Clicks, firstClickLaterSQL, params)
	}
	if err != nil {
		return nil, fmt.Errorf("first click of visitor %s: %w", visitor, err)
	}
	if r == nil {
		return nil, nil
	}
	return s.clickCandidate(tx, r)
}

func affiliateCandidate(a *core.Record) *attribution.Affiliate {
	return &attribution.Affiliate{ID: a.Id, Email: a.Email(), Approved: a.GetString(collections.FieldStatus) == collections.AffiliateApproved}
}

func (s *conversionService) insert(tx core.App, in conversionInput, program *collections.Program, d attribution.Decision) (*core.Record, error) {
	col, err := tx.FindCachedCollectionByNameOrId(collections.Conversions)
	if err != nil {
		return nil, err
	}
	status, reason := in.Status, ""
	if status == "" {
		status = collections.ConversionApproved
	}
	if d.Rejected {
		status, reason = collections.ConversionRejected, d.Reason
	}
	paymentNumber := 1
	if in.SubscriptionID != "" {
		n, err := tx.CountRecords(collections.Conversions, dbx.HashExp{collections.ConversionSubscriptionID: in.SubscriptionID})
		if err != nil {
			return nil, err
		}
		paymentNumber = int(n) + 1
	}
	meta := map[string]any{}
	for k, v := range in.Metadata {
		meta[k] = v
	}
	meta["attribution"] = map[string]any{"path": d.Path, "skipped": d.Skipped}

	r := core.NewRecord(col)
	r.Id = s.ids.Next(time.Now())
	r.Load(map[string]any{
		collections.FieldAffiliate:           d.AffiliateID,
		collections.FieldProgram:             program.Id,
		collections.ConversionClick:          d.ClickID,
		collections.FieldLink:                d.LinkID,
		collections.ConversionSource:         in.Source,
		collections.ConversionExternalID:     in.ExternalID,
		collections.ConversionCustomer:       in.Customer,
		collections.FieldAmount:              in.Amount,
		collections.FieldCurrency:            in.Currency,
		collections.FieldStatus:              status,
		collections.ConversionReason:         reason,
		collections.ConversionOccurredAt:     in.OccurredAt.UTC(),
		collections.ConversionSubscriptionID: in.SubscriptionID,
		collections.ConversionPaymentNumber:  paymentNumber,
		collections.ConversionPaymentIntent:  in.PaymentIntent,
		collections.ConversionCharge:         in.Charge,
		collections.ConversionMetadata:       meta,
		collections.ConversionRefundedAmount: 0,
		collections.ConversionImported:       in.Imported,
	})
	if err := tx.Save(r); err != nil {
		return nil, fmt.Errorf("save conversion: %w", err)
	}
	return r, nil
}
