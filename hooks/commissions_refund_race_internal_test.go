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

// A sale rejected between the engine listing its refund and applying it: the rejection took the
// sale's whole revenue out of stats_daily, so the refund must not take its part out again (the
// soak found stats_daily's revenue below its sales this way).
func TestRefundAppliedToTheSaleAsItIsNow(t *testing.T) {
	app := pbatest.TempApp(t)
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	a := createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)
	at := time.Now().UTC().Add(-time.Hour)
	key := store.StatsKeyOf(at, a.Id, program.Id, "")
	stamp := store.DBTime(at)
	err = app.RunInTransaction(func(tx core.App) error {
		if _, err := tx.DB().NewQuery(`INSERT INTO conversions (id, affiliate, program, source, external_id, amount, currency, status,
			occurred_at, created, updated, refunded_amount, commissioned, refund_applied)
			VALUES ('conv00000000001', {:a}, {:p}, 'api', 'o-1', 10000, 'usd', 'approved', {:at}, {:at}, {:at}, 3000, TRUE, 0)`).
			Bind(dbx.Params{"a": a.Id, "p": program.Id, "at": stamp}).Execute(); err != nil {
			return err
		}
		return store.AddStats(tx, map[store.StatsKey]store.StatsDelta{key: {Conversions: 1, Revenue: 10000}})
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newCommissionEngine(app, nil)
	e.refundsListed = func() {
		// The rejection as registerConversionEdits writes it: status and the sale's whole share.
		err := app.RunInTransaction(func(tx core.App) error {
			if _, err := tx.DB().NewQuery("UPDATE conversions SET status = 'rejected' WHERE id = 'conv00000000001'").Execute(); err != nil {
				return err
			}
			return store.AddStats(tx, map[store.StatsKey]store.StatsDelta{key: {Conversions: -1, Revenue: -10000}})
		})
		if err != nil {
			t.Error(err)
		}
	}
	var st engineStats
	if err := e.applyRefunds(&st); err != nil {
		t.Fatal(err)
	}
	var row struct {
		Conversions int64 `db:"conversions"`
		Revenue     int64 `db:"revenue"`
	}
	if err := app.DB().NewQuery("SELECT conversions, revenue FROM stats_daily WHERE day = {:d} AND affiliate = {:a}").
		Bind(dbx.Params{"d": key.Day, "a": a.Id}).One(&row); err != nil {
		t.Fatal(err)
	}
	if row.Conversions != 0 || row.Revenue != 0 {
		t.Fatalf("stats_daily after a rejected sale's refund: %+v, want nothing counted", row)
	}
	var applied int64
	if err := app.DB().NewQuery("SELECT refund_applied FROM conversions WHERE id = 'conv00000000001'").Row(&applied); err != nil || applied != 3000 {
		t.Fatalf("refund_applied %d (%v), want 3000: reinstating the sale later nets it", applied, err)
	}
}

// A pass asked for now beside the cron's pass (CI caught the route skipping while the
// minute's cron pass ran, so a sale committed before the request got no commission): runNow
// waits for the running pass and then runs its own; the cron's run still skips.
func TestRunNowWaitsForTheRunningPass(t *testing.T) {
	app := pbatest.TempApp(t)
	e := newCommissionEngine(app, nil)
	e.mu.Lock() // the cron's pass, running
	if st, err := e.run(); err != nil || !st.Skipped {
		t.Fatalf("run beside a running pass: %+v %v, want skipped", st, err)
	}
	done := make(chan engineStats, 1)
	go func() {
		st, err := e.runNow()
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	select {
	case st := <-done:
		t.Fatalf("runNow returned %+v while a pass was running", st)
	case <-time.After(50 * time.Millisecond):
	}
	e.mu.Unlock()
	select {
	case st := <-done:
		if st.Skipped {
			t.Fatalf("runNow skipped: %+v", st)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("runNow did not run after the pass ended")
	}
}
