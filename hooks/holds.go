package hooks

import (
	"time"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/attribution"
)

// Honest holds. A commission is held for the program's hold_days from when pbaffiliate recorded
// the sale (ruleContext.compute), so a sale claimed to have happened long ago cannot skip its
// hold. The claimed time still places the sale in stats_daily and in the attribution window,
// so it is held to that window too: a sender's occurred_at may not be older than the program's
// cookie_days, nor before the click it names (checkOccurredAt). Superusers import history by
// marking a sale imported, which lifts the window but not the hold. Stripe's signed events are
// trusted: a payment Stripe retried for days keeps its payment time.

// occurredAtMessages explain each attribution.SaleTimeProblem.
var occurredAtMessages = map[string]string{
	attribution.TimeInFuture:    "The sale cannot have happened in the future.",
	attribution.TimeTooOld:      "The sale is older than the program's attribution window (cookie_days); a superuser can import it with imported: true.",
	attribution.TimeBeforeClick: "The sale cannot have happened before the click it is attributed to.",
}

// checkOccurredAt refuses (field error naming occurred_at) a sale of program at `at`, reported now,
// that lies outside the program's attribution window (unless imported) or before the click
// clickID of the program.
func checkOccurredAt(tx core.App, at, now time.Time, program *collections.Program, clickID string, imported bool) validation.Errors {
	var clickCreated time.Time
	if clickID != "" {
		if c, err := tx.FindRecordById(collections.Clicks, clickID); err == nil && c.GetString(collections.FieldProgram) == program.Id {
			clickCreated = c.GetDateTime(collections.FieldCreated).Time()
		}
	}
	cookieDays := program.CookieDays()
	if imported {
		cookieDays = 0
	}
	if problem := attribution.SaleTimeProblem(at, now, cookieDays, clickCreated); problem != "" {
		return fieldError(collections.ConversionOccurredAt, problem, occurredAtMessages[problem])
	}
	return nil
}

// heldFrom is when a commission's hold starts: when the sale was recorded, or its occurred_at
// if that is later (a sender's clock may run up to futureSkew ahead of ours). A bonus is held
// from the end of its month, or from when it was created if that month is over.
func heldFrom(recorded, occurred time.Time) time.Time {
	if occurred.After(recorded) {
		return occurred
	}
	return recorded
}

// registerSaleTimes holds sales created or redated through the records API (the dashboard) to
// the same window as the conversions API. The conversion service checks its own sales.
func registerSaleTimes(app core.App) {
	check := func(e *core.RecordRequestEvent, created bool) error {
		r := e.Record
		at := r.GetDateTime(collections.ConversionOccurredAt).Time()
		if !created && at.Equal(r.Original().GetDateTime(collections.ConversionOccurredAt).Time()) {
			return e.Next()
		}
		program, err := collections.FindProgram(e.App, r.GetString(collections.FieldProgram))
		if err != nil {
			return e.Next() // the relation's own validation answers
		}
		if err := checkOccurredAt(e.App, at, time.Now(), program, r.GetString(collections.ConversionClick),
			r.GetBool(collections.ConversionImported)); err != nil {
			return e.BadRequestError("Invalid conversion.", err)
		}
		return e.Next()
	}
	app.OnRecordCreateRequest(collections.Conversions).BindFunc(func(e *core.RecordRequestEvent) error { return check(e, true) })
	app.OnRecordUpdateRequest(collections.Conversions).BindFunc(func(e *core.RecordRequestEvent) error { return check(e, false) })
}

// importForbidden answers a program secret (API or postback) that tries to mark a sale
// imported: only superusers import history.
func importForbidden(e *core.RequestEvent) error {
	return e.ForbiddenError("Only a superuser can import sales.",
		fieldError(collections.ConversionImported, "forbidden", "Only a superuser can mark a sale imported."))
}
