//go:build unix

package hooks

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// engineBenchApp is an app with the default program, 100 approved affiliates and the engine.
func engineBenchApp(b *testing.B) (*tests.TestApp, *commissionEngine, []string) {
	b.Helper()
	app := pbatest.TempApp(b)
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		b.Fatal(err)
	}
	col, _ := app.FindCollectionByNameOrId(collections.Affiliates)
	var ids []string
	for i := 0; i < 100; i++ {
		a := core.NewRecord(col)
		a.Load(map[string]any{"name": "A", "code": fmt.Sprintf("bench-%03d", i), "status": "approved", "program": program.Id})
		a.SetEmail(fmt.Sprintf("bench%d@x.test", i))
		a.SetRandomPassword()
		if err := app.Save(a); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, a.Id)
	}
	return app, newCommissionEngine(app, nil), ids
}

// benchConversionInsert writes an approved, not yet commissioned conversion the way recording
// does; arguments: id, affiliate, program, external_id, amount, occurred_at, created, updated.
const benchConversionInsert = `INSERT INTO conversions (id, affiliate, program, click, link, source, external_id, customer, amount,
	currency, status, reason, occurred_at, subscription_id, metadata, created, updated, refunded_amount, payment_number,
	stripe_payment_intent, stripe_charge, commissioned, refund_applied)
	VALUES (?, ?, ?, '', '', 'api', ?, '', ?, 'usd', 'approved', '', ?, '', '{}', ?, ?, 0, 1, '', '', FALSE, 0)`

// insertConversions adds n approved, not yet commissioned conversions with raw inserts.
func insertConversions(b *testing.B, app core.App, affiliates []string, n int, tag string) {
	b.Helper()
	program, _ := collections.FindDefaultProgram(app)
	err := app.RunInTransaction(func(tx core.App) error {
		t, err := store.SQLTx(tx)
		if err != nil {
			return err
		}
		stmt, err := t.Prepare(benchConversionInsert)
		if err != nil {
			return err
		}
		defer stmt.Close()
		at := store.DBTime(time.Now().Add(-time.Hour))
		for i := 0; i < n; i++ {
			if _, err := stmt.Exec(store.NewOrderedID(time.Now()), affiliates[i%len(affiliates)], program.Id,
				fmt.Sprintf("%s-%d", tag, i), 1000+i%9000, at, at, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCommissionEngine turns conversions into commissions: the bar is 1,000,000
// in at most 20 s (≥ 50k/s). PBA_BENCH_CONVERSIONS sets the count per iteration (default 100k).
func BenchmarkCommissionEngine(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(DefaultGCPercent)) // as the binary runs (main.tuneGC)
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("PBA_BENCH_CONVERSIONS")); err == nil && v > 0 {
		n = v
	}
	app, engine, affiliates := engineBenchApp(b)
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		insertConversions(b, app, affiliates, n, strconv.Itoa(i))
		cpu += timedEngineRun(b, engine, n)
	}
	reportEngineRate(b, n, cpu)
}

// timedEngineRun is one timed engine run over n new conversions; it returns the CPU it used.
func timedEngineRun(b *testing.B, engine *commissionEngine, n int) time.Duration {
	before := processCPU()
	b.StartTimer()
	st, err := engine.run()
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := processCPU() - before
	b.StartTimer()
	if st.Created != n {
		b.Fatalf("created %d commissions, want %d", st.Created, n)
	}
	return cpu
}

// reportEngineRate reports conversions per second and CPU time per conversion: CPU time (user +
// system, all threads) is steadier than wall time on a shared machine, so compare versions by
// it when others are running builds.
func reportEngineRate(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "conversions/s")
	b.ReportMetric(float64(cpu.Microseconds())*1000/float64(n*b.N), "cpu-ns/conversion")
}

// processCPU is the CPU time the process has used so far (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cloneAffiliates adds n approved affiliates copied from the first one with raw inserts (a
// password hash per affiliate through app.Save would take minutes).
func cloneAffiliates(b *testing.B, app core.App, template string, n int) []string {
	b.Helper()
	var cols []string
	if err := app.DB().NewQuery("SELECT name FROM pragma_table_info('affiliates')").Column(&cols); err != nil {
		b.Fatal(err)
	}
	sel := make([]string, len(cols))
	for i, c := range cols {
		switch c {
		case "id":
			sel[i] = "{:id}"
		case "email":
			sel[i] = "{:id} || '@clone.test'"
		case "code":
			sel[i] = "'clone-' || {:id}"
		case "tokenKey":
			sel[i] = "'tk' || {:id}"
		default:
			sel[i] = "[[" + c + "]]"
		}
	}
	q := "INSERT INTO affiliates ([[" + strings.Join(cols, "]], [[") + "]]) SELECT " + strings.Join(sel, ", ") + " FROM affiliates WHERE id = {:t}"
	ids := make([]string, n)
	err := app.RunInTransaction(func(tx core.App) error {
		for i := range ids {
			ids[i] = store.NewID()
			if _, err := tx.DB().NewQuery(q).Bind(dbx.Params{"id": ids[i], "t": template}).Execute(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkCommissionEngineSpread is the engine on data shaped like production rather than
// like a load generator: 5,000 affiliates, conversion ids as recording makes them (time-ordered,
// strictly increasing), sales spread over 30 days (a stats_daily row
// per affiliate and day, which recording the sale created). PBA_BENCH_CONVERSIONS sets the count
// (default 100k).
func BenchmarkCommissionEngineSpread(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(DefaultGCPercent))
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("PBA_BENCH_CONVERSIONS")); err == nil && v > 0 {
		n = v
	}
	app, engine, seed := engineBenchApp(b)
	affiliates := append(seed, cloneAffiliates(b, app, seed[0], 4900)...)
	program, _ := collections.FindDefaultProgram(app)
	rng := rand.New(rand.NewSource(1))
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		err := app.RunInTransaction(func(tx core.App) error {
			t, err := store.SQLTx(tx)
			if err != nil {
				return err
			}
			stmt, err := t.Prepare(benchConversionInsert)
			if err != nil {
				return err
			}
			defer stmt.Close()
			// Recording a conversion upserts its stats_daily row; the engine then adds to it.
			stats, err := t.Prepare(`INSERT INTO stats_daily (id, day, affiliate, program, link, clicks, unique_clicks, conversions,
				revenue, commission, updated) VALUES (?, ?, ?, ?, '', 0, 0, 1, ?, 0, ?)
				ON CONFLICT (day, affiliate, program, link) DO UPDATE SET conversions = conversions + 1, revenue = revenue + excluded.revenue`)
			if err != nil {
				return err
			}
			defer stats.Close()
			now := time.Now()
			var ids store.OrderedIDs // as conversionService hands them out
			for j := 0; j < n; j++ {
				at := store.DBTime(now.Add(-time.Duration(rng.Int63n(int64(30 * 24 * time.Hour)))))
				affiliate, amount := affiliates[rng.Intn(len(affiliates))], 1000+rng.Intn(9000)
				if _, err := stmt.Exec(ids.Next(time.Now()), affiliate, program.Id, fmt.Sprintf("spread-%d-%d", i, j), amount, at, at, at); err != nil {
					return err
				}
				if _, err := stats.Exec(store.NewID(), at[:10], affiliate, program.Id, amount, at); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		cpu += timedEngineRun(b, engine, n)
	}
	reportEngineRate(b, n, cpu)
}

// BenchmarkCommissionEngineIdle is the per-minute run with no new work (bar: ≤ 5 ms).
func BenchmarkCommissionEngineIdle(b *testing.B) {
	app, engine, affiliates := engineBenchApp(b)
	insertConversions(b, app, affiliates, 20_000, "idle")
	if _, err := engine.run(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st, err := engine.run(); err != nil || st.Created != 0 {
			b.Fatalf("idle run did work: %+v %v", st, err)
		}
	}
}

// TestRuleSnapshotIsJSON: the engine's hand-written rule snapshot is exactly encoding/json's.
func TestRuleSnapshotIsJSON(t *testing.T) {
	ctx := newRuleContext(nil)
	for _, e := range []rules.Explanation{
		{Source: rules.SourceProgram, Type: rules.TypePercent, Value: 2000, Base: 12345, Recurring: rules.RecurringFirst, Payment: 1},
		{Source: rules.SourceTier, Type: rules.TypeFlat, Value: -5, TierID: "t1", TierName: `Gold <"&"> ünï \ \n`, Base: 0,
			Recurring: rules.RecurringMonths, Payment: 7, Note: rules.NoteRecurringEnded},
		{Source: rules.SourceOverride, Type: "percent", Value: 10000, TierName: "only name", Base: 100_000_000_000, Recurring: "lifetime",
			Payment: 2, Note: "\u2028 line\tsep"},
		{Source: rules.SourceProgram, Type: rules.TypePercent, Value: 2000, Base: 10000, Recurring: rules.RecurringFirst, Payment: 1, Boost: 500,
			Multiplier: 1500, Incentives: []rules.AppliedIncentive{{ID: "i1", Name: `Spring "boost" <b>`, Kind: rules.IncentiveRateBoost, Value: 500},
				{ID: "i2", Name: "×1.5", Kind: rules.IncentiveMultiplier, Value: 1500}}},
		{Source: rules.SourceTier, Type: rules.TypeFlat, Value: 500, Multiplier: 2000,
			Incentives: []rules.AppliedIncentive{{ID: "i3", Kind: rules.IncentiveMultiplier, Value: 2000}}},
		{},
	} {
		for _, amount := range []int64{0, 1, -3, 20_000_000_000} {
			want, err := json.Marshal(commissionRule{Explanation: e, Amount: amount})
			if err != nil {
				t.Fatal(err)
			}
			if got := ctx.appendRule(nil, e, amount); string(got) != string(want) {
				t.Errorf("rule snapshot\n got %s\nwant %s", got, want)
			}
		}
	}
}

// BenchmarkCommissionEngineWithWebhook is BenchmarkCommissionEngine with one active endpoint
// subscribed to commission.created: each new commission also writes its event to the outbox in
// the batch's transaction (read back, encoded, inserted). Compare it with
// BenchmarkCommissionEngine in the same run.
func BenchmarkCommissionEngineWithWebhook(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(DefaultGCPercent))
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("PBA_BENCH_CONVERSIONS")); err == nil && v > 0 {
		n = v
	}
	app, engine, affiliates := engineBenchApp(b)
	col, err := app.FindCollectionByNameOrId(collections.Webhooks)
	if err != nil {
		b.Fatal(err)
	}
	ep := core.NewRecord(col)
	ep.Load(map[string]any{collections.WebhookURL: "https://hooks.example.com/bench", collections.WebhookActive: true,
		collections.WebhookEvents: []string{eventCommissionCreated}})
	if err := app.Save(ep); err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		insertConversions(b, app, affiliates, n, strconv.Itoa(i))
		cpu += timedEngineRun(b, engine, n)
	}
	reportEngineRate(b, n, cpu)
	var events int
	if err := app.DB().NewQuery("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook != ''").Row(&events); err != nil || events != n*b.N {
		b.Fatalf("%d events for %d commissions: %v", events, n*b.N, err)
	}
}
