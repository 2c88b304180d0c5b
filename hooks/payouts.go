package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/robfig/cron/v3"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// payoutsCronJob asks every minute whether a program's payout schedule is due.
const payoutsCronJob = "pbaPayouts"

// Run triggers and line actions, as stored in payout_runs.
const (
	triggerSchedule = "schedule"
	triggerManual   = "manual"

	actionPay          = "pay"
	actionCarryForward = "carry_forward"
	actionSkip         = "skip"
)

// payoutLine is one affiliate's outcome in a run (or a preview).
type payoutLine struct {
	Affiliate   string `json:"affiliate"`
	Name        string `json:"name"`
	Email       string `json:"email"`
	Currency    string `json:"currency"`
	Amount      int64  `json:"amount"`
	Commissions int    `json:"commissions"`
	Method      string `json:"method"`
	Action      string `json:"action"`
	Reason      string `json:"reason,omitempty"`
	Payout      string `json:"payout,omitempty"`
}

// payoutReport is what a run did (or, for a preview, would do) in one program.
type payoutReport struct {
	Program string       `json:"program"`
	Run     string       `json:"run,omitempty"`
	DryRun  bool         `json:"dry_run"`
	Lines   []payoutLine `json:"lines"`
	Payouts int          `json:"payouts"`
	Total   int64        `json:"total"`
}

// payoutEngine claims due runs, groups payable commissions into payouts and (with Stripe)
// executes them. Grouping is one transaction per affiliate; a run is claimed by a unique
// (program, scheduled_for) row, so restarts and parallel processes run it once.
type payoutEngine struct {
	app    core.App
	stripe bool            // Stripe is configured: affiliates with payout_method stripe can be paid
	api    stripeAPI       // nil without Stripe
	exec   *stripeExecutor // nil without Stripe; one per engine so its rate limit holds across runs
	now    func() time.Time
	mu     sync.Mutex
}

func registerPayouts(app core.App, cfg Config) *payoutEngine {
	e := &payoutEngine{app: app, stripe: cfg.StripeSecretKey != "", api: newStripeAPI(cfg), now: time.Now}
	if e.api != nil {
		e.exec = newStripeExecutor(app, e.api, e.now, cfg.StripeRateLimit)
	}
	app.Cron().MustAdd(payoutsCronJob, "* * * * *", func() {
		_, runErr := e.runDue()
		if runErr != nil {
			app.Logger().Error("payout schedule run failed", "error", runErr)
		}
		execErr := e.executeDue(context.Background())
		if execErr != nil {
			app.Logger().Error("payout transfers failed", "error", execErr)
		}
		metricsOf(app).jobDone(payoutsCronJob, errors.Join(runErr, execErr))
	})
	registerPayoutRecords(app)
	return e
}

// runNow previews (dryRun) or runs payouts for one program (id or slug) or all active ones.
// A manual run is claimed like a scheduled one, at the current time.
func (e *payoutEngine) runNow(program string, dryRun bool) ([]payoutReport, error) {
	filter, params := "active = true", dbx.Params{"p": program}
	if program != "" {
		filter = "id = {:p} || slug = {:p}"
	}
	programs, err := e.app.FindRecordsByFilter(collections.Programs, filter, "created", 0, 0, params)
	if err != nil {
		return nil, err
	}
	if program != "" && len(programs) == 0 {
		return nil, errUnknownProgram(program)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	reports := []payoutReport{}
	for _, p := range programs {
		now := e.now().UTC()
		runID := ""
		if !dryRun {
			id, claimed, err := e.claim(p.Id, now, triggerManual)
			if err != nil {
				return reports, err
			}
			if !claimed {
				continue // another run claimed this very instant
			}
			runID = id
		}
		rep, err := e.runProgram(p.Id, runID, now, dryRun)
		if err != nil {
			return reports, err
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// runDue claims and runs every program's schedule that is due.
func (e *payoutEngine) runDue() ([]payoutReport, error) {
	if !e.mu.TryLock() {
		return nil, nil
	}
	defer e.mu.Unlock()
	programs, err := e.app.FindAllRecords(collections.Programs, dbx.HashExp{collections.ProgramActive: true})
	if err != nil {
		return nil, fmt.Errorf("active programs: %w", err)
	}
	reports, err := e.resumeInterrupted()
	if err != nil {
		return reports, err
	}
	for _, p := range programs {
		due, ok, err := e.dueTime(p)
		if err != nil {
			e.app.Logger().Warn("payout schedule", "program", p.Id, "error", err)
			continue
		}
		if !ok {
			continue
		}
		runID, claimed, err := e.claim(p.Id, due, triggerSchedule)
		if err != nil || !claimed {
			if err != nil {
				return reports, err
			}
			continue
		}
		rep, err := e.runProgram(p.Id, runID, due, false)
		if err != nil {
			return reports, err
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// runLease is how long a claimed run may stay "running" before another pass takes it over:
// its process died between the claim and the end of the run.
const runLease = 5 * time.Minute

// resumeInterrupted finishes runs a crashed process claimed but did not complete. Running a
// run again is safe: it only takes payable commissions no payout holds yet.
func (e *payoutEngine) resumeInterrupted() ([]payoutReport, error) {
	var stale []struct {
		ID      string `db:"id"`
		Program string `db:"program"`
		At      string `db:"scheduled_for"`
	}
	err := e.app.DB().NewQuery(`SELECT id, program, scheduled_for FROM payout_runs WHERE status = 'running' AND updated < {:before}`).
		Bind(dbx.Params{"before": store.DBTime(e.now().Add(-runLease))}).All(&stale)
	if err != nil {
		return nil, fmt.Errorf("interrupted payout runs: %w", err)
	}
	var reports []payoutReport
	for _, r := range stale {
		at, _ := store.ParseDBTime(r.At)
		rep, err := e.runProgram(r.Program, r.ID, at, false)
		if err != nil {
			return reports, fmt.Errorf("resume payout run %s: %w", r.ID, err)
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// dueTime is the latest scheduled time of the program at or before now that has no run yet.
func (e *payoutEngine) dueTime(p *core.Record) (time.Time, bool, error) {
	sched, err := cron.ParseStandard(p.GetString(collections.ProgramPayoutSchedule))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("parse schedule: %w", err)
	}
	last := p.GetDateTime(collections.FieldCreated).Time()
	var lastRun string
	err = e.app.DB().NewQuery("SELECT IFNULL(MAX(scheduled_for), '') FROM payout_runs WHERE program = {:p} AND trigger = 'schedule'").
		Bind(dbx.Params{"p": p.Id}).Row(&lastRun)
	if err != nil {
		return time.Time{}, false, err
	}
	if lastRun != "" {
		if t, err := store.ParseDBTime(lastRun); err == nil {
			last = t
		}
	}
	now := e.now()
	next := sched.Next(last)
	if next.IsZero() || next.After(now) {
		return time.Time{}, false, nil
	}
	for { // several missed times (the server was down): run once, for the latest
		after := sched.Next(next)
		if after.IsZero() || after.After(now) {
			return next.UTC(), true, nil
		}
		next = after
	}
}

// claim inserts the run's row; false when another process (or an earlier attempt) has it.
func (e *payoutEngine) claim(programID string, at time.Time, trigger string) (string, bool, error) {
	id := store.NewID()
	res, err := e.app.DB().NewQuery(`INSERT INTO payout_runs (id, program, scheduled_for, trigger, status, payouts, total, report, created, updated)
		VALUES ({:id}, {:p}, {:at}, {:trigger}, 'running', 0, 0, '{}', {:now}, {:now}) ON CONFLICT (program, scheduled_for) DO NOTHING`).
		Bind(dbx.Params{"id": id, "p": programID, "at": store.DBTime(at), "trigger": trigger, "now": store.DBTime(e.now())}).Execute()
	if err != nil {
		return "", false, fmt.Errorf("claim payout run: %w", err)
	}
	n, _ := res.RowsAffected()
	return id, n == 1, nil
}

// balance is an affiliate's payable, unassigned commissions in one currency.
type balance struct {
	Affiliate   string `db:"affiliate"`
	Currency    string `db:"currency"`
	Amount      int64  `db:"amount"`
	Commissions int    `db:"n"`
	Name        string `db:"name"`
	Email       string `db:"email"`
	Status      string `db:"status"`
	Method      string `db:"payout_method"`
	Account     string `db:"stripe_account_id"`
	Enabled     bool   `db:"payouts_enabled"`
}

// runProgram pays every affiliate of the program whose net payable balance reaches the
// program's min_payout; the rest carries forward. dryRun only reports.
func (e *payoutEngine) runProgram(programID, runID string, periodEnd time.Time, dryRun bool) (payoutReport, error) {
	return e.report(programID, runID, periodEnd, dryRun, "")
}

// previewAffiliate is the payout preview of the program (runProgram, dry run) for one
// affiliate's lines only: the portal's next payout, without a program-wide preview per page.
func (e *payoutEngine) previewAffiliate(programID, affiliateID string) (payoutReport, error) {
	return e.report(programID, "", e.now().UTC(), true, affiliateID)
}

// report is runProgram, for every affiliate of the program or (affiliate set, dry runs only)
// for that one.
func (e *payoutEngine) report(programID, runID string, periodEnd time.Time, dryRun bool, affiliate string) (payoutReport, error) {
	if affiliate != "" && !dryRun {
		return payoutReport{}, errors.New("payout run: only a preview may be limited to one affiliate")
	}
	rep := payoutReport{Program: programID, Run: runID, DryRun: dryRun, Lines: []payoutLine{}}
	program, err := collections.FindProgram(e.app, programID)
	if err != nil {
		return rep, err
	}
	onlyAffiliate := ""
	if affiliate != "" {
		onlyAffiliate = " AND c.affiliate = {:a}"
	}
	var balances []balance
	err = e.app.DB().NewQuery(`SELECT c.affiliate AS affiliate, c.currency AS currency, SUM(c.amount) AS amount, COUNT(*) AS n,
			a.name AS name, a.email AS email, a.status AS status, a.payout_method AS payout_method,
			a.stripe_account_id AS stripe_account_id, a.payouts_enabled AS payouts_enabled
		FROM commissions c JOIN affiliates a ON a.id = c.affiliate
		WHERE c.program = {:p} AND c.status = 'payable' AND c.payout = ''` + onlyAffiliate + `
		GROUP BY c.affiliate, c.currency`).Bind(dbx.Params{"p": programID, "a": affiliate}).All(&balances)
	if err != nil {
		return rep, fmt.Errorf("payable balances: %w", err)
	}
	sort.Slice(balances, func(i, j int) bool { return balances[i].Affiliate < balances[j].Affiliate })
	for _, b := range balances {
		line := payoutLine{Affiliate: b.Affiliate, Name: b.Name, Email: b.Email, Currency: b.Currency, Amount: b.Amount,
			Commissions: b.Commissions, Method: e.method(b), Action: actionPay}
		switch {
		case b.Status != collections.AffiliateApproved:
			line.Action, line.Reason = actionSkip, "affiliate is "+b.Status
		case b.Amount <= 0 || b.Amount < program.MinPayout():
			line.Action, line.Reason = actionCarryForward, fmt.Sprintf("below the minimum payout of %d", program.MinPayout())
		case line.Method == collections.MethodStripe && (b.Account == "" || !b.Enabled):
			line.Action, line.Reason = actionSkip, "Stripe onboarding incomplete"
			if !dryRun && runID != "" {
				if err := queueActionNeeded(e.app.DB(), b.Affiliate, b.Email, b.Amount, b.Currency, runID, line.Reason, e.now()); err != nil {
					return rep, err
				}
			}
		}
		if line.Action == actionPay && !dryRun {
			id, amount, err := e.createPayout(programID, runID, b, line.Method, periodEnd)
			if err != nil {
				return rep, err
			}
			line.Payout, line.Amount = id, amount
		}
		if line.Action == actionPay {
			rep.Payouts++
			rep.Total += line.Amount
		}
		rep.Lines = append(rep.Lines, line)
	}
	if !dryRun && runID != "" {
		_, err := e.app.DB().NewQuery(`UPDATE payout_runs SET status = 'done', payouts = {:n}, total = {:t}, report = {:r}, updated = {:now} WHERE id = {:id}`).
			Bind(dbx.Params{"n": rep.Payouts, "t": rep.Total, "r": mustJSON(rep), "now": store.DBTime(e.now()), "id": runID}).Execute()
		if err != nil {
			return rep, fmt.Errorf("close payout run: %w", err)
		}
	}
	return rep, nil
}

// method is how an affiliate is paid: Stripe when it chose Stripe and Stripe is configured.
func (e *payoutEngine) method(b balance) string {
	if b.Method == collections.MethodStripe && e.stripe {
		return collections.MethodStripe
	}
	return collections.MethodManual
}

// createPayout moves the affiliate's payable commissions of the program into a new pending
// payout, in one transaction: the payout's amount is the sum of exactly the commissions it
// links, whatever changed since the balances were read.
func (e *payoutEngine) createPayout(programID, runID string, b balance, method string, periodEnd time.Time) (string, int64, error) {
	id := store.NewID()
	var amount int64
	err := e.app.RunInTransaction(func(tx core.App) error {
		now := store.DBTime(e.now())
		res, err := tx.DB().NewQuery(`UPDATE commissions SET payout = {:id}, updated = {:now}
			WHERE program = {:p} AND affiliate = {:a} AND currency = {:c} AND status = 'payable' AND payout = ''`).
			Bind(dbx.Params{"id": id, "now": now, "p": programID, "a": b.Affiliate, "c": b.Currency}).Execute()
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNothingToPay
		}
		if err := tx.DB().NewQuery("SELECT SUM(amount) FROM commissions WHERE payout = {:id}").Bind(dbx.Params{"id": id}).Row(&amount); err != nil {
			return err
		}
		if amount <= 0 {
			return errNothingToPay // clawbacks arrived meanwhile: nothing left to pay
		}
		_, err = tx.DB().NewQuery(`INSERT INTO payouts (id, affiliate, program, run, amount, currency, method, status, stripe_transfer_id,
				idempotency_key, attempts, error, period_end, paid_at, reference, next_attempt_at, created, updated)
			VALUES ({:id}, {:a}, {:p}, {:run}, {:amount}, {:c}, {:method}, 'pending', '', {:key}, 0, '', {:end}, '', '', '', {:now}, {:now})`).
			Bind(dbx.Params{"id": id, "a": b.Affiliate, "p": programID, "run": runID, "amount": amount, "c": b.Currency,
				"method": method, "key": "pba_payout_" + id, "end": store.DBTime(periodEnd), "now": now}).Execute()
		if err != nil {
			return err
		}
		return newEventEmitter(tx).emitRecord(eventPayoutCreated, collections.Payouts, id)
	})
	if errors.Is(err, errNothingToPay) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("create payout for %s: %w", b.Affiliate, err)
	}
	announcePayout(e.app, id)
	return id, amount, nil
}

// announcePayout re-saves a payout the engine wrote with raw SQL, so record hooks and realtime
// subscribers (the affiliate's portal, the admin page) hear of it like of any other change.
// It is best effort: the payout is already committed; a failure here is only logged.
func announcePayout(app core.App, id string) {
	r, err := app.FindRecordById(collections.Payouts, id)
	if err == nil {
		err = app.Save(r)
	}
	if err != nil {
		app.Logger().Warn("announce payout", "payout", id, "error", err)
	}
}

// errNothingToPay rolls back a payout whose commissions vanished or netted to nothing.
var errNothingToPay = errors.New("nothing to pay")

// registerPayoutRecords keeps payouts consistent when admins change them in the dashboard:
// marking a payout paid pays its commissions (manual payouts need a reference); canceling
// or failing returns them to the pool; a paid payout and its amount never change again, and
// only a payout holding no commissions can be deleted.
func registerPayoutRecords(app core.App) {
	// A payout is deleted only once it holds no commissions (canceled or failed): PocketBase
	// would otherwise detach them, freeing a pending payout's commissions to be paid twice and
	// leaving paid ones without their payment.
	app.OnRecordDelete(collections.Payouts).BindFunc(func(e *core.RecordEvent) error {
		switch e.Record.GetString(collections.FieldStatus) {
		case collections.PayoutCanceled, collections.PayoutFailed:
			return e.Next()
		}
		return fieldError(collections.FieldStatus, "not_deletable", "Only a canceled or failed payout can be deleted: "+
			"cancel a pending one (its commissions return to the pool); a paid one is part of the ledger.")
	})
	app.OnRecordUpdate(collections.Payouts).BindFunc(func(e *core.RecordEvent) error {
		before, err := e.App.FindRecordById(collections.Payouts, e.Record.Id)
		if err != nil {
			return err
		}
		from, to := before.GetString(collections.FieldStatus), e.Record.GetString(collections.FieldStatus)
		for _, f := range []string{collections.FieldAmount, collections.FieldCurrency, collections.FieldAffiliate} {
			if fmt.Sprint(before.Get(f)) != fmt.Sprint(e.Record.Get(f)) {
				return fieldError(f, "immutable", "A payout's affiliate, amount and currency are fixed when it is created.")
			}
		}
		if from == to {
			return e.Next()
		}
		// A failed payout has already returned its commissions to the pool (settleCommissions), so
		// paying or reopening it would pay out money no commission backs: the next run pays them.
		if from == collections.PayoutPaid || from == collections.PayoutCanceled || from == collections.PayoutFailed {
			return fieldError(collections.FieldStatus, "final", "A "+from+" payout cannot change status.")
		}
		if from == collections.PayoutProcessing && e.Record.GetString(collections.PayoutMethod) == collections.MethodStripe {
			return fieldError(collections.FieldStatus, "in_flight", "Its Stripe transfer may be under way; wait for it to settle.")
		}
		if to == collections.PayoutPaid && e.Record.GetString(collections.PayoutMethod) == collections.MethodManual &&
			e.Record.GetString("reference") == "" {
			return fieldError("reference", "required", "Give the bank or PayPal reference of the payment.")
		}
		return e.App.RunInTransaction(func(tx core.App) error {
			e.App = tx
			if to == collections.PayoutPaid && e.Record.GetDateTime(collections.PayoutPaidAt).IsZero() {
				e.Record.Set(collections.PayoutPaidAt, time.Now().UTC())
			}
			if err := e.Next(); err != nil {
				return err
			}
			return settleCommissions(tx, e.Record.Id, to)
		})
	})
}

// settleCommissions follows a payout's status change onto its commissions.
func settleCommissions(tx core.App, payoutID, status string) error {
	var q string
	switch status {
	case collections.PayoutPaid:
		q = "UPDATE commissions SET status = 'paid', updated = {:now} WHERE payout = {:id} AND status != 'void'"
	case collections.PayoutCanceled, collections.PayoutFailed:
		q = "UPDATE commissions SET payout = '', updated = {:now} WHERE payout = {:id} AND status = 'payable'"
	default:
		return nil
	}
	_, err := tx.DB().NewQuery(q).Bind(dbx.Params{"id": payoutID, "now": store.DBTime(time.Now())}).Execute()
	if err != nil {
		return fmt.Errorf("settle commissions of payout %s: %w", payoutID, err)
	}
	return nil
}

// mustJSON encodes v for a JSON column; v is a plain struct, so encoding cannot fail.
func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
