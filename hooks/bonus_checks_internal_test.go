package hooks

import (
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestMilestoneBonusSurvivesACrashBeforeEvaluation: a pass that commits a month's commissions
// and dies before evaluating the month's bonuses leaves the month queued in bonus_checks (in
// the batch's transaction); the next pass, a restarted process's first, pays the bonus once
// and empties the queue. Before the queue, the month waited for another commission in it. A
// program without an active bonus queues nothing.
func TestMilestoneBonusSurvivesACrashBeforeEvaluation(t *testing.T) {
	app := pbatest.TempApp(t)
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	a := createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)
	sale := func(id string) {
		t.Helper()
		at := store.DBTime(time.Now().UTC().Add(-time.Minute))
		if _, err := app.DB().NewQuery(`INSERT INTO conversions (id, affiliate, program, source, external_id, amount, currency, status,
			occurred_at, created, updated, refunded_amount, commissioned, refund_applied)
			VALUES ({:id}, {:a}, {:p}, 'api', {:id}, 10000, 'usd', 'approved', {:at}, {:at}, {:at}, 0, FALSE, 0)`).
			Bind(dbx.Params{"id": id, "a": a.Id, "p": program.Id, "at": at}).Execute(); err != nil {
			t.Fatal(err)
		}
	}
	queued := func() int64 {
		t.Helper()
		var n int64
		if err := app.DB().Select("COUNT(*)").From(collections.BonusChecks).Row(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	bonuses := func() []*core.Record {
		t.Helper()
		r, err := app.FindAllRecords(collections.Commissions, dbx.HashExp{"kind": "bonus"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// No active bonus: nothing queued.
	sale("conv00000000001")
	var st engineStats
	if _, err := newCommissionEngine(app, nil).createBatch(&st); err != nil || st.Created != 1 || queued() != 0 {
		t.Fatalf("batch without a bonus: %+v %v, %d queued", st, err, queued())
	}

	if _, err := pbatest.Save(app, collections.Bonuses, map[string]any{"program": program.Id, "name": "first sales",
		"min_conversions": 1, "amount": 700, "active": true}); err != nil {
		t.Fatal(err)
	}
	sale("conv00000000002")
	st = engineStats{}
	if _, err := newCommissionEngine(app, nil).createBatch(&st); err != nil || st.Created != 1 {
		t.Fatalf("batch: %+v %v", st, err)
	}
	// The process dies here, between the batch's commit and the bonus evaluation.
	if queued() != 1 || len(bonuses()) != 0 {
		t.Fatalf("after the batch: %d months queued, %d bonuses", queued(), len(bonuses()))
	}
	restarted := newCommissionEngine(app, nil)
	for range 2 {
		if _, err := restarted.runNow(); err != nil {
			t.Fatal(err)
		}
	}
	if b := bonuses(); len(b) != 1 || b[0].GetInt("amount") != 700 || b[0].GetString("affiliate") != a.Id || queued() != 0 {
		t.Fatalf("after the next passes: bonuses %v, %d months queued", b, queued())
	}
	if rep, err := checkLedger(app, ""); err != nil || !rep.OK {
		t.Fatalf("ledger: %+v %v", rep, err)
	}
}
