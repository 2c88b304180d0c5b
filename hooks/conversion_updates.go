package hooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/saleupdate"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
)

// A recorded sale changes through several doors: the dashboard (the records API as a
// superuser), the merchant API's update form, the postback, Stripe's refunds and disputes. They
// all converge on one function, the conversions update hook (applyConversionEdit): each door
// loads the sale and saves it with its new status or refunded amount through the app, so the
// same hook settles the change (saleupdate.Settle), moves the ledger and the rollups, and writes
// the sale's history row, in the save's transaction. Refunds reach the commissions through the
// engine (applyRefunds), from refunded_amount, as Stripe refunds always did.
//
// The merchant doors (API and postback) add the ordering (saleupdate.Decide): the sender's
// updated_at or sequence of the last update applied is kept on the sale, and an older update is
// acknowledged and ignored. The check, the save and the history row share one transaction.

// saleChange says where a save of a conversion comes from: the door, who, a note, and the
// sender's order key when the door applies one. Doors pass it in the save's context.
type saleChange struct {
	Door, Actor, Note string
	// The sender's order key (history), and whether it becomes the sale's last applied one.
	UpdatedAt time.Time
	Sequence  int64
	StoreKey  bool
}

type saleChangeKey struct{}

// saveSale saves conv in tx as a change through door c: the update hook records c.
func saveSale(tx core.App, conv *core.Record, c saleChange) error {
	return tx.SaveWithContext(context.WithValue(context.Background(), saleChangeKey{}, c), conv)
}

// dashboardActor is the custom key (not a field: it is never stored or returned) under which a
// superuser's records API update of a conversion carries the superuser's email to the hook.
const dashboardActor = "@pbaActor"

// saleChangeOf is the door of the save e: passed by a door, else the dashboard's superuser,
// else code (system).
func saleChangeOf(e *core.RecordEvent) saleChange {
	if e.Context != nil {
		if c, ok := e.Context.Value(saleChangeKey{}).(saleChange); ok {
			return c
		}
	}
	if email, ok := e.Record.GetRaw(dashboardActor).(string); ok {
		return saleChange{Door: collections.DoorDashboard, Actor: email}
	}
	return saleChange{Door: collections.DoorSystem}
}

// saleEvent is one row of a sale's history (conversion_events).
type saleEvent struct {
	Conversion, Affiliate, Program string
	Change                         saleChange
	StatusBefore, StatusAfter      string
	RefundedBefore, RefundedAfter  int64
	Commission                     int64 // change of the sale's net commission
}

// recordSaleEvent writes ev in tx, the transaction of the change it records.
func recordSaleEvent(tx core.App, ev saleEvent) error {
	col, err := tx.FindCachedCollectionByNameOrId(collections.ConversionEvents)
	if err != nil {
		return err
	}
	r := core.NewRecord(col)
	r.Load(map[string]any{
		collections.EventConversion:       ev.Conversion,
		collections.FieldAffiliate:        ev.Affiliate,
		collections.FieldProgram:          ev.Program,
		collections.EventDoor:             ev.Change.Door,
		collections.EventActor:            ev.Change.Actor,
		collections.EventStatusBefore:     ev.StatusBefore,
		collections.EventStatusAfter:      ev.StatusAfter,
		collections.EventRefundedBefore:   ev.RefundedBefore,
		collections.EventRefundedAfter:    ev.RefundedAfter,
		collections.EventCommissionChange: ev.Commission,
		collections.EventSenderSequence:   ev.Change.Sequence,
		collections.EventNote:             truncateStripeText(ev.Change.Note, 500), // any text: cut at a character boundary
	})
	if !ev.Change.UpdatedAt.IsZero() {
		r.Set(collections.EventSenderUpdatedAt, ev.Change.UpdatedAt)
	}
	if err := tx.Save(r); err != nil {
		return fmt.Errorf("history of conversion %s: %w", ev.Conversion, err)
	}
	return nil
}

// registerSaleHistory keeps conversion_events server-written: superusers read it, an affiliate
// the rows of its own sales (the collection's rules), and no one writes it through the API.
func registerSaleHistory(app core.App) {
	refuse := func(e *core.RecordRequestEvent) error {
		return e.ForbiddenError("A sale's history is written by the server only.", nil)
	}
	app.OnRecordCreateRequest(collections.ConversionEvents).BindFunc(refuse)
	app.OnRecordUpdateRequest(collections.ConversionEvents).BindFunc(refuse)
	app.OnRecordDeleteRequest(collections.ConversionEvents).BindFunc(refuse)
	// The dashboard's door: tell the update hook who changed the sale.
	app.OnRecordUpdateRequest(collections.Conversions).BindFunc(func(e *core.RecordRequestEvent) error {
		if e.HasSuperuserAuth() {
			e.Record.SetRaw(dashboardActor, e.Auth.Email())
		}
		return e.Next()
	})
}

// errSaleNotFound: no sale of the caller's program under this source and external id (404).
var errSaleNotFound = errors.New("no such sale")

// saleRef names a recorded sale: its program ("" = any, for superusers), source and external id.
type saleRef struct {
	Program, Source, ExternalID string
}

// findSale loads the sale ref names in tx, or errSaleNotFound. A sale of another program is not
// found: a program's secret neither sees nor changes another program's sales.
func findSale(tx core.App, ref saleRef) (*core.Record, error) {
	r, err := tx.FindFirstRecordByFilter(collections.Conversions, "source = {:source} && external_id = {:id}",
		dbx.Params{"source": ref.Source, "id": ref.ExternalID})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, errSaleNotFound
	case err != nil:
		return nil, fmt.Errorf("find sale %s/%s: %w", ref.Source, ref.ExternalID, err)
	case ref.Program != "" && r.GetString(collections.FieldProgram) != ref.Program:
		return nil, errSaleNotFound
	}
	return r, nil
}

// saleUpdate is a merchant's change of a recorded sale.
type saleUpdate struct {
	saleupdate.Update
	Reason string // "" = unchanged
}

// applySaleUpdate applies u to conv (loaded in tx, the caller's transaction): the ordering
// check (saleupdate.Decide), then, unless the update is stale, a save through the app so the
// update hook settles it, moves the ledger and writes the history row.
func applySaleUpdate(tx core.App, conv *core.Record, u saleUpdate, c saleChange) (saleupdate.Decision, error) {
	cur := saleupdate.State{
		Status:    conv.GetString(collections.FieldStatus),
		Amount:    int64(conv.GetInt(collections.FieldAmount)),
		Refunded:  int64(conv.GetInt(collections.ConversionRefundedAmount)),
		UpdatedAt: conv.GetDateTime(collections.ConversionSenderUpdatedAt).Time(),
		Sequence:  int64(conv.GetInt(collections.ConversionSenderSequence)),
	}
	d, err := saleupdate.Decide(cur, u.Update)
	if err != nil {
		return d, settleError(err)
	}
	newReason := u.Reason != "" && u.Reason != conv.GetString(collections.ConversionReason)
	if d.Outcome == saleupdate.Stale || (d.Outcome == saleupdate.Unchanged && !d.StoreKey && !newReason) {
		return d, nil
	}
	conv.Set(collections.FieldStatus, d.Status)
	conv.Set(collections.ConversionRefundedAmount, d.Refunded)
	if newReason {
		conv.Set(collections.ConversionReason, u.Reason)
	}
	c.UpdatedAt, c.Sequence, c.StoreKey = u.UpdatedAt, u.Sequence, d.StoreKey
	c.Note = d.Message
	if u.Reason != "" {
		c.Note += " (reason: " + u.Reason + ")"
	}
	return d, saveSale(tx, conv, c)
}

// settleError turns saleupdate's refusal into the 400 naming the field.
func settleError(err error) error {
	var se *saleupdate.Error
	if errors.As(err, &se) {
		return fieldError(se.Field, se.Code, se.Message)
	}
	return err
}

// update applies u to the sale ref names, in one transaction.
func (s *conversionService) update(ref saleRef, u saleUpdate, c saleChange) (*core.Record, saleupdate.Decision, error) {
	var rec *core.Record
	var d saleupdate.Decision
	err := s.app.RunInTransaction(func(tx core.App) error {
		var err error
		if rec, err = findSale(tx, ref); err != nil {
			return err
		}
		d, err = applySaleUpdate(tx, rec, u, c)
		return err
	})
	return rec, d, err
}

// updateAnswer is the sale as the records API shows it, plus what the update did.
func updateAnswer(rec *core.Record, d saleupdate.Decision) map[string]any {
	out := rec.PublicExport()
	out["update"] = map[string]any{"outcome": d.Outcome, "message": d.Message}
	return out
}

// Sources of sales the merchant updates; Stripe's follow Stripe's events.
var updatableSources = []string{collections.SourceAPI, collections.SourcePostback, collections.SourceManual, collections.SourceCoupon}

// maxUpdateBody bounds the update form's body.
const maxUpdateBody = 4 << 10

// handleUpdate is POST (or PATCH) /api/pba/conversions/{source}/{external_id}: the merchant
// reports a change of a recorded sale (docs/http-api.md). 200 with the sale and what the update
// did (applied, unchanged, stale), 404 unknown sale, 400 naming the field.
func (s *conversionService) handleUpdate(e *core.RequestEvent) error {
	programID, err := conversionCaller(e)
	if err != nil {
		return err
	}
	ref := saleRef{Program: programID, Source: e.Request.PathValue("source"), ExternalID: e.Request.PathValue("external_id")}
	switch {
	case ref.Source == collections.SourceStripe:
		return e.BadRequestError("Stripe sales follow Stripe's events.", fieldError("source", "stripe",
			"Refund or dispute the payment in Stripe: charge.refunded and charge.dispute.* update the sale."))
	case slices.Contains(providerSources, ref.Source):
		return e.BadRequestError("This provider's sales follow its webhook events.", fieldError("source", ref.Source,
			"Refund the order in "+ref.Source+": its refund webhook updates the sale."))
	case !slices.Contains(updatableSources, ref.Source):
		return e.BadRequestError("Unknown source.", fieldError("source", "invalid", "One of "+strings.Join(updatableSources, ", ")+"."))
	}
	raw, err := io.ReadAll(e.Request.Body)
	if err != nil {
		return e.BadRequestError("Could not read the body.", err)
	}
	u, errs := parseUpdateBody(raw, time.Now())
	if len(errs) > 0 {
		return e.BadRequestError("Invalid update.", errs)
	}
	c := saleChange{Door: collections.DoorAPI}
	if key := apiKeyOf(e); key != nil {
		c.Actor = key.label()
	} else if programID == "" && e.Auth != nil {
		c.Actor = e.Auth.Email()
	}
	rec, d, err := s.update(ref, u, c)
	var verrs validation.Errors
	switch {
	case errors.Is(err, errSaleNotFound):
		return e.NotFoundError("No such sale.", fieldError("external_id", "not_found",
			fmt.Sprintf("No sale of this program was recorded with source %q and external_id %q.", ref.Source, ref.ExternalID)))
	case errors.As(err, &verrs):
		return e.BadRequestError("Invalid update.", verrs)
	case err != nil:
		return e.InternalServerError("", err)
	}
	return e.JSON(http.StatusOK, updateAnswer(rec, d))
}

// parseUpdateBody reads the update form's JSON object field by field, so each problem is named:
// status, refunded_amount (an integer of minor units: a string or a decimal is refused),
// updated_at (RFC 3339, not in the future) or sequence (a positive integer), reason.
func parseUpdateBody(raw []byte, now time.Time) (saleUpdate, validation.Errors) {
	u := saleUpdate{Update: saleupdate.Update{Refunded: -1}}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return u, validation.Errors{"body": validation.NewError("invalid_json",
			"A JSON object of status, refunded_amount, updated_at or sequence, and reason.")}
	}
	errs := validation.Errors{}
	str := func(name string, v json.RawMessage) (string, bool) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			errs[name] = validation.NewError("invalid_type", "A string.")
			return "", false
		}
		return strings.TrimSpace(s), true
	}
	integer := func(name string, v json.RawMessage, what string) (int64, bool) {
		text := strings.TrimSpace(string(v))
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || n < 0 {
			errs[name] = validation.NewError("invalid_"+name, what)
			return 0, false
		}
		return n, true
	}
	for name, v := range fields {
		if string(v) == "null" {
			continue
		}
		switch name {
		case "status":
			if s, ok := str(name, v); ok {
				if s = strings.ToLower(s); saleupdate.ValidStatus(s) {
					u.Status = s
				} else {
					errs[name] = validation.NewError("invalid_status", "One of approved, pending, rejected, refunded.")
				}
			}
		case "refunded_amount":
			n, ok := integer(name, v, "The cumulative refunded amount: an integer of minor units (1999 for 19.99 USD), not a string or a decimal.")
			switch {
			case ok && n > money.MaxAmount:
				errs[name] = validation.NewError("too_large", fmt.Sprintf("At most %d minor units.", money.MaxAmount))
			case ok:
				u.Refunded = n
			}
		case "sequence":
			n, ok := integer(name, v, "A positive integer that grows with each change of the sale.")
			switch {
			case ok && (n == 0 || n > 1<<53):
				errs[name] = validation.NewError("invalid_sequence", "A positive integer, at most 2^53.")
			case ok:
				u.Sequence = n
			}
		case "updated_at":
			if s, ok := str(name, v); ok {
				t, err := time.Parse(time.RFC3339, s)
				switch {
				case err != nil:
					errs[name] = validation.NewError("invalid_time", "An RFC 3339 time such as 2026-11-24T10:00:00Z.")
				case t.After(now.Add(futureSkew)):
					errs[name] = validation.NewError("in_future", "The change cannot have happened in the future.")
				default:
					u.UpdatedAt = t.UTC()
				}
			}
		case "reason":
			if s, ok := str(name, v); ok {
				if len(s) > 200 || !textcheck.Line(s) {
					errs[name] = validation.NewError("invalid", "At most 200 printable characters, no control or bidirectional formatting character.")
				} else {
					u.Reason = s
				}
			}
		default:
			errs[name] = validation.NewError("unknown_field", "Not a field of an update: status, refunded_amount, updated_at, sequence, reason.")
		}
	}
	if u.Sequence > 0 && !u.UpdatedAt.IsZero() {
		errs["sequence"] = validation.NewError("one_order_key", "Give updated_at or sequence, not both.")
	}
	if len(errs) == 0 && u.Status == "" && u.Refunded < 0 {
		errs["status"] = validation.NewError("required", "Give status, refunded_amount or both.")
	}
	return u, errs
}
