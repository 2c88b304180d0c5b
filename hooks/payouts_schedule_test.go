package hooks

import (
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestPayoutScheduleClaimsEachRunOnce: a schedule's time is claimed once, even by engines
// racing in parallel (as two processes would), and missed times collapse into one run.
func TestPayoutScheduleClaimsEachRunOnce(t *testing.T) {
	app := pbatest.TempApp(t)
	p, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	p.Set(collections.ProgramPayoutSchedule, "CRON_TZ=Europe/Berlin 0 9 1 * *")
	if err := app.Save(p); err != nil {
		t.Fatal(err)
	}
	created := p.GetDateTime(collections.FieldCreated).Time()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	firstOfNext := time.Date(created.In(berlin).Year(), created.In(berlin).Month()+1, 1, 9, 0, 0, 0, berlin)

	engine := func(now time.Time) *payoutEngine {
		return &payoutEngine{app: app, now: func() time.Time { return now }}
	}
	if reports, err := engine(firstOfNext.Add(-time.Minute)).runDue(); err != nil || len(reports) != 0 {
		t.Fatalf("before the scheduled time: %v %v", reports, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	runs := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports, err := engine(firstOfNext.Add(time.Minute)).runDue()
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			runs += len(reports)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if runs != 1 {
		t.Fatalf("%d runs for one scheduled time, want 1", runs)
	}
	var at string
	if err := app.DB().NewQuery("SELECT scheduled_for FROM payout_runs").Row(&at); err != nil || at != store.DBTime(firstOfNext) {
		t.Fatalf("claimed %q (%v), want %s (09:00 Berlin)", at, err, store.DBTime(firstOfNext))
	}
	// Three months later (the server was down): one run, for the latest missed time.
	later := firstOfNext.AddDate(0, 3, 0)
	reports, err := engine(later.Add(time.Hour)).runDue()
	if err != nil || len(reports) != 1 {
		t.Fatalf("after downtime: %v %v", reports, err)
	}
	if n, _ := app.CountRecords("payout_runs"); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
}

// TestInterruptedRunIsResumed: a process that died right after claiming a run (before any
// payout row) leaves it "running"; the next pass after the lease finishes it.
func TestInterruptedRunIsResumed(t *testing.T) {
	app := pbatest.TempApp(t)
	p, _ := collections.FindDefaultProgram(app)
	col, _ := app.FindCollectionByNameOrId(collections.Affiliates)
	a := core.NewRecord(col)
	a.Load(map[string]any{"name": "A", "code": "resume-a", "status": "approved", "program": p.Id, "payout_method": "manual"})
	a.SetEmail("resume@x.test")
	a.SetRandomPassword()
	if err := app.Save(a); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	_, err := app.DB().NewQuery(`INSERT INTO commissions (id, affiliate, program, conversion, kind, amount, currency, status, payable_at,
		payout, rule, ref, note, created, updated) VALUES ('c00000000000001', {:a}, {:p}, '', 'bonus', 7000, 'usd', 'payable', {:now},
		'', '{}', 'x', '', {:now}, {:now})`).Bind(dbx.Params{"a": a.Id, "p": p.Id, "now": store.DBTime(now)}).Execute()
	if err != nil {
		t.Fatal(err)
	}
	e := &payoutEngine{app: app, now: func() time.Time { return now }}
	runID, claimed, err := e.claim(p.Id, now.Add(-time.Hour), triggerSchedule) // the crash happens here
	if err != nil || !claimed {
		t.Fatal(claimed, err)
	}
	if reports, _ := e.runDue(); len(reports) != 0 {
		t.Fatalf("resumed inside the lease: %v", reports)
	}
	e.now = func() time.Time { return now.Add(runLease + time.Minute) }
	reports, err := e.runDue()
	if err != nil || len(reports) == 0 || reports[0].Run != runID || reports[0].Payouts != 1 || reports[0].Total != 7000 {
		t.Fatalf("resume: %+v %v", reports, err)
	}
	if reports, _ := e.runDue(); len(reports) != 0 {
		t.Fatalf("a done run ran again: %+v", reports)
	}
	rep, err := checkLedger(app, "")
	if err != nil || !rep.OK {
		t.Fatalf("ledger: %+v %v", rep, err)
	}
}
