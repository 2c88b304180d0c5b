package hooks

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/router"
	"github.com/pocketbase/pocketbase/tools/security"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// The merchant API (docs/http-api.md#merchant-api): plain JSON reads and writes for a
// merchant's server holding an API key (or a superuser): sales, affiliates and payouts,
// newest first, paged with an opaque cursor. Writes of affiliates go through the records API's
// own request hooks and the record hooks, so what a dashboard edit does (validation, codes,
// lifecycle mail) happens here too.

const (
	merchantPageDefault = 50
	merchantPageMax     = 200
	maxAffiliateBody    = 16 << 10
)

// listQuery is one page of a merchant list: a filter of the collection, ordered newest first
// by timeField then id, resumed after the cursor.
type listQuery struct {
	collection string
	timeField  string
	filters    []string
	params     dbx.Params
}

// where adds a filter expression with its parameters.
func (q *listQuery) where(expr string, params dbx.Params) {
	q.filters = append(q.filters, expr)
	for k, v := range params {
		q.params[k] = v
	}
}

// equal adds "field = value" for a query parameter that is set; allowed, when not empty, is
// what the value may be (else a 400 naming the parameter).
func (q *listQuery) equal(e *core.RequestEvent, param, field string, allowed ...string) error {
	v := strings.TrimSpace(e.Request.URL.Query().Get(param))
	if v == "" {
		return nil
	}
	if len(allowed) > 0 && !slices.Contains(allowed, v) {
		return e.BadRequestError("Invalid "+param+".", fieldError(param, "invalid_"+param, "One of "+strings.Join(allowed, ", ")+"."))
	}
	q.where(field+" = {:"+param+"}", dbx.Params{param: v})
	return nil
}

// days adds from/to (UTC days YYYY-MM-DD, inclusive) on the query's time field.
func (q *listQuery) days(e *core.RequestEvent) error {
	for _, p := range []string{"from", "to"} {
		v := e.Request.URL.Query().Get(p)
		if v == "" {
			continue
		}
		day, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return e.BadRequestError("Invalid "+p+".", fieldError(p, "invalid_date", "A UTC day as YYYY-MM-DD."))
		}
		if p == "from" {
			q.where(q.timeField+" >= {:from}", dbx.Params{"from": store.DBTime(day)})
		} else {
			q.where(q.timeField+" < {:to}", dbx.Params{"to": store.DBTime(day.AddDate(0, 0, 1))})
		}
	}
	return nil
}

// page answers {"items", "next_cursor"}: up to limit records after the cursor ("" on the
// last page). The cursor is the last item's time and id, opaque to clients.
func (q *listQuery) page(e *core.RequestEvent, show func(*core.Record)) error {
	limit, err := intParam(e, "limit", merchantPageDefault, 1, merchantPageMax)
	if err != nil {
		return err
	}
	if c := e.Request.URL.Query().Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		at, id, ok := strings.Cut(string(raw), "|")
		if err != nil || !ok || id == "" {
			return e.BadRequestError("Invalid cursor.", fieldError("cursor", "invalid_cursor", "Pass next_cursor of the previous page as it is."))
		}
		q.where("("+q.timeField+" < {:cursor_at} || ("+q.timeField+" = {:cursor_at} && id < {:cursor_id}))",
			dbx.Params{"cursor_at": at, "cursor_id": id})
	}
	filter := strings.Join(q.filters, " && ")
	if filter == "" {
		filter = "id != ''"
	}
	records, err := e.App.FindRecordsByFilter(q.collection, filter, "-"+q.timeField+",-id", limit+1, 0, q.params)
	if err != nil {
		return e.InternalServerError("", err)
	}
	next := ""
	if len(records) > limit {
		records = records[:limit]
		last := records[limit-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(last.GetDateTime(q.timeField).String() + "|" + last.Id))
	}
	for _, r := range records {
		show(r)
	}
	return e.JSON(http.StatusOK, map[string]any{"items": records, "next_cursor": next})
}

func newListQuery(collection, timeField string) *listQuery {
	return &listQuery{collection: collection, timeField: timeField, params: dbx.Params{}}
}

// affiliateParam checks a request's affiliate filter names an affiliate (400 naming it if not).
func affiliateParam(e *core.RequestEvent) error {
	id := e.Request.URL.Query().Get("affiliate")
	if id == "" {
		return nil
	}
	if _, err := e.App.FindRecordById(collections.Affiliates, id); err != nil {
		return e.BadRequestError("Unknown affiliate.", fieldError("affiliate", "unknown_affiliate", "No affiliate has this id."))
	}
	return nil
}

// handleSales is GET /api/pba/sales: conversions newest first (by occurred_at), filtered by
// affiliate, program, status, source and UTC days.
func handleSales(e *core.RequestEvent) error {
	if err := affiliateParam(e); err != nil {
		return err
	}
	q := newListQuery(collections.Conversions, collections.ConversionOccurredAt)
	for _, f := range []struct {
		param   string
		allowed []string
	}{
		{"affiliate", nil}, {"program", nil},
		{"status", []string{collections.ConversionPending, collections.ConversionApproved, collections.ConversionRejected, collections.ConversionRefunded}},
		{"source", nil},
	} {
		if err := q.equal(e, f.param, f.param, f.allowed...); err != nil {
			return err
		}
	}
	if err := q.days(e); err != nil {
		return err
	}
	return q.page(e, func(*core.Record) {})
}

// handlePayoutsList is GET /api/pba/payouts: payouts newest first (by created), filtered by
// affiliate, program, status and UTC days.
func handlePayoutsList(e *core.RequestEvent) error {
	if err := affiliateParam(e); err != nil {
		return err
	}
	q := newListQuery(collections.Payouts, "created")
	if err := q.equal(e, "affiliate", "affiliate"); err != nil {
		return err
	}
	if err := q.equal(e, "program", "program"); err != nil {
		return err
	}
	if err := q.equal(e, "status", "status", collections.PayoutPending, collections.PayoutProcessing,
		collections.PayoutPaid, collections.PayoutFailed, collections.PayoutCanceled); err != nil {
		return err
	}
	if err := q.days(e); err != nil {
		return err
	}
	return q.page(e, func(*core.Record) {})
}

// handleAffiliatesList is GET /api/pba/affiliates: affiliates newest first (by created),
// filtered by program, status, tier, email and code.
func handleAffiliatesList(e *core.RequestEvent) error {
	q := newListQuery(collections.Affiliates, "created")
	for _, p := range []string{"program", "tier", "code"} {
		if err := q.equal(e, p, p); err != nil {
			return err
		}
	}
	if err := q.equal(e, "status", collections.FieldStatus, collections.AffiliatePending, collections.AffiliateApproved,
		collections.AffiliateRejected, collections.AffiliateSuspended); err != nil {
		return err
	}
	if email := strings.TrimSpace(e.Request.URL.Query().Get("email")); email != "" {
		q.where("email:lower = {:email}", dbx.Params{"email": strings.ToLower(email)})
	}
	if err := q.days(e); err != nil {
		return err
	}
	return q.page(e, showAffiliate)
}

// showAffiliate shows an affiliate's email to the merchant's server (the records API shows it
// to superusers only); hidden fields stay hidden.
func showAffiliate(r *core.Record) { r.IgnoreEmailVisibility(true) }

// handleAffiliateView is GET /api/pba/affiliates/{id}.
func handleAffiliateView(e *core.RequestEvent) error {
	r, err := e.App.FindRecordById(collections.Affiliates, e.Request.PathValue("id"))
	if err != nil {
		return e.NotFoundError("No such affiliate.", fieldError("id", "not_found", "No affiliate has this id."))
	}
	showAffiliate(r)
	return e.JSON(http.StatusOK, r)
}

// affiliateWrite is the JSON of POST and PATCH /api/pba/affiliates: what a merchant's server
// may set. A nil field is left as it is (on create: the records API's default).
type affiliateWrite struct {
	Name               *string   `json:"name"`
	Email              *string   `json:"email"`
	Program            *string   `json:"program"`
	Status             *string   `json:"status"`
	Tier               *string   `json:"tier"`
	Code               *string   `json:"code"`
	CommissionOverride *float64  `json:"commission_override"`
	PayoutEmail        *string   `json:"payout_email"`
	Tags               *[]string `json:"tags"`
	Notes              *string   `json:"notes"`
	Timezone           *string   `json:"timezone"`
}

// fields are the body's fields by record field name.
func (w affiliateWrite) fields() map[string]any {
	out := map[string]any{}
	for name, v := range map[string]any{
		collections.FieldName: w.Name, core.FieldNameEmail: w.Email, collections.FieldProgram: w.Program,
		collections.FieldStatus: w.Status, collections.AffiliateTier: w.Tier, collections.FieldCode: w.Code,
		collections.AffiliateCommissionOverride: w.CommissionOverride, collections.AffiliatePayoutEmail: w.PayoutEmail,
		collections.AffiliateTags: w.Tags, collections.AffiliateNotes: w.Notes, collections.AffiliateTimezone: w.Timezone,
	} {
		switch p := v.(type) {
		case *string:
			if p != nil {
				out[name] = *p
			}
		case *float64:
			if p != nil {
				out[name] = *p
			}
		case *[]string:
			if p != nil {
				out[name] = *p
			}
		}
	}
	return out
}

// handleAffiliateCreate is POST /api/pba/affiliates: an affiliate created as a superuser's
// records API create would be (a random password: the affiliate sets its own through the
// portal's password reset). Answers 201 with the record.
func handleAffiliateCreate(e *core.RequestEvent) error {
	body, err := readAffiliateWrite(e)
	if err != nil {
		return err
	}
	if body.Email == nil || strings.TrimSpace(*body.Email) == "" {
		return e.BadRequestError("Invalid affiliate.", fieldError("email", "required", "The affiliate's email."))
	}
	c, err := e.App.FindCachedCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		return e.InternalServerError("", err)
	}
	rec := core.NewRecord(c)
	rec.Load(body.fields())
	rec.SetPassword(security.RandomString(30))
	return saveAsAdmin(e, rec, true)
}

// handleAffiliateUpdate is PATCH /api/pba/affiliates/{id}: approve, reject, suspend, change
// the tier or the profile, as a superuser's records API update would.
func handleAffiliateUpdate(e *core.RequestEvent) error {
	rec, err := e.App.FindRecordById(collections.Affiliates, e.Request.PathValue("id"))
	if err != nil {
		return e.NotFoundError("No such affiliate.", fieldError("id", "not_found", "No affiliate has this id."))
	}
	body, err := readAffiliateWrite(e)
	if err != nil {
		return err
	}
	fields := body.fields()
	if len(fields) == 0 {
		return e.BadRequestError("Nothing to change.", fieldError("body", "empty", "Send at least one field."))
	}
	rec.Load(fields)
	return saveAsAdmin(e, rec, false)
}

func readAffiliateWrite(e *core.RequestEvent) (affiliateWrite, error) {
	var body affiliateWrite
	raw, err := io.ReadAll(e.Request.Body)
	if err != nil {
		return body, e.BadRequestError("Could not read the body.", err)
	}
	if errs := decodeStrict(raw, &body); errs != nil {
		return body, e.BadRequestError("Invalid affiliate.", errs)
	}
	return body, nil
}

// saveAsAdmin saves rec through the records API's request hooks (OnRecordCreateRequest or
// OnRecordUpdateRequest) and then the model's, the way PocketBase's own records API handler
// does for a superuser, and answers the record (201 created, 200 updated). A caller holding an
// API key acts, for those hooks, as a superuser named after the key: its scope is what
// allowed the route, and the hooks must see an admin's write, not a signup.
func saveAsAdmin(e *core.RequestEvent, rec *core.Record, create bool) error {
	if key := apiKeyOf(e); key != nil && e.Auth == nil {
		su, err := e.App.FindCachedCollectionByNameOrId(core.CollectionNameSuperusers)
		if err != nil {
			return e.InternalServerError("", err)
		}
		actor := core.NewRecord(su)
		actor.Id = key.ID
		actor.Set(core.FieldNameEmail, key.label())
		e.Auth = actor
		defer func() { e.Auth = nil }()
	}
	ev := &core.RecordRequestEvent{RequestEvent: e, Record: rec}
	ev.Collection = rec.Collection()
	status := http.StatusOK
	trigger := e.App.OnRecordUpdateRequest().Trigger
	if create {
		status, trigger = http.StatusCreated, e.App.OnRecordCreateRequest().Trigger
	}
	return trigger(ev, func(ev *core.RecordRequestEvent) error {
		if err := ev.App.Save(ev.Record); err != nil {
			var apiErr *router.ApiError
			var verrs validation.Errors
			switch {
			case errors.As(err, &apiErr):
				return apiErr
			case errors.As(err, &verrs):
				return ev.BadRequestError("Invalid affiliate.", verrs)
			}
			return ev.InternalServerError("", err)
		}
		showAffiliate(ev.Record)
		return ev.JSON(status, ev.Record)
	})
}
