package migrations

import (
	"database/sql"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
)

// rollupsApp is a test app without the rollups (migrated down), ready for facts.
func rollupsApp(t testing.TB) (*tests.TestApp, string) {
	t.Helper()
	app, err := tests.NewTestApp(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Cleanup)
	if err := rollupsDown(app); err != nil {
		t.Fatal(err)
	}
	var program string
	if err := app.DB().NewQuery("SELECT id FROM programs LIMIT 1").Row(&program); err != nil {
		t.Fatal(err)
	}
	return app, program
}

// Migration 1795480100 on an install with history: days whose click rows are kept get their
// clicks in their hours and by their country, referrer domain and sub; a day retention pruned
// keeps its figures, at 12:00 UTC and under "" in the dims; sales and commission go to their
// sale's hour; every (program, day) sums to stats_daily.
func TestRollupsBackfill(t *testing.T) {
	app, p := rollupsApp(t)
	ins := func(table string, row dbx.Params) {
		t.Helper()
		if _, err := app.DB().Insert(table, row).Execute(); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
	}
	n := 0
	id := func() string { n++; return fmt.Sprintf("r%014d", n) }
	// 2026-01-05: two clicks of A (09:xx DE via www.google.com, sub yt; 17:xx unknown, unique
	// once), a flagged click (not counted), a sale at 10:xx of 5,000 with 1,000 commission.
	ins("clicks", dbx.Params{"id": id(), "affiliate": "a", "program": p, "country": "DE", "referrer": "https://www.google.com/x",
		"sub_id": "yt", "unique": true, "flag": "", "created": "2026-01-05 09:10:00.000Z"})
	ins("clicks", dbx.Params{"id": id(), "affiliate": "a", "program": p, "unique": false, "flag": "", "created": "2026-01-05 17:00:00.000Z"})
	ins("clicks", dbx.Params{"id": id(), "affiliate": "a", "program": p, "country": "US", "flag": "bot", "created": "2026-01-05 18:00:00.000Z"})
	ins("conversions", dbx.Params{"id": "sale00000000001", "affiliate": "a", "program": p, "source": "api", "external_id": "s1",
		"amount": 5000, "currency": "usd", "status": "approved", "occurred_at": "2026-01-05 10:30:00.000Z"})
	ins("commissions", dbx.Params{"id": id(), "affiliate": "a", "program": p, "conversion": "sale00000000001", "kind": "sale",
		"amount": 1000, "currency": "usd", "status": "pending"})
	ins("stats_daily", dbx.Params{"id": id(), "day": "2026-01-05", "affiliate": "a", "program": p, "clicks": 2, "unique_clicks": 1,
		"conversions": 1, "revenue": 5000, "commission": 1000})
	// 2025-01-05: 7 clicks, their rows pruned.
	ins("stats_daily", dbx.Params{"id": id(), "day": "2025-01-05", "affiliate": "a", "program": p, "clicks": 7, "unique_clicks": 6})
	if err := app.RunInTransaction(func(tx core.App) error { return rollupsUp(tx) }); err != nil {
		t.Fatal(err)
	}
	var hours []struct {
		Hour        string `db:"hour"`
		Currency    string `db:"currency"`
		Clicks      int    `db:"clicks"`
		Unique      int    `db:"unique_clicks"`
		Conversions int    `db:"conversions"`
		Revenue     int    `db:"revenue"`
		Commission  int    `db:"commission"`
	}
	if err := app.DB().NewQuery("SELECT hour, currency, clicks, unique_clicks, conversions, revenue, commission FROM stats_program_hourly ORDER BY hour").All(&hours); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(hours)
	want := "[{2025-01-05 12 usd 7 6 0 0 0} {2026-01-05 09 usd 1 1 0 0 0} {2026-01-05 10 usd 0 0 1 5000 1000} {2026-01-05 17 usd 1 0 0 0 0}]"
	if got != want {
		t.Fatalf("hours\n got %s\nwant %s", got, want)
	}
	var dims []struct {
		Dim       string `db:"dim"`
		Affiliate string `db:"affiliate"`
		Day       string `db:"day"`
		Value     string `db:"value"`
		Clicks    int    `db:"clicks"`
		Unique    int    `db:"unique_clicks"`
	}
	if err := app.DB().NewQuery("SELECT dim, affiliate, day, value, clicks, unique_clicks FROM stats_dims_daily ORDER BY dim, day, value").All(&dims); err != nil {
		t.Fatal(err)
	}
	var owed struct {
		Status string `db:"status"`
		Amount int    `db:"amount"`
		Count  int    `db:"count"`
	}
	if err := app.DB().NewQuery("SELECT status, amount, count FROM commission_totals").One(&owed); err != nil || owed.Status != "pending" || owed.Amount != 1000 || owed.Count != 1 {
		t.Fatalf("commission_totals: %+v %v, want the pending 1,000", owed, err)
	}
	// The triggers follow every later change: a payout run marks it paid, a refund voids it.
	if _, err := app.DB().NewQuery("UPDATE commissions SET status = 'paid' WHERE conversion = 'sale00000000001'").Execute(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.DB().NewQuery("DELETE FROM commissions").Execute(); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := app.DB().NewQuery("SELECT COUNT(*) FROM commission_totals WHERE amount != 0 OR count != 0").Row(&left); err != nil || left != 0 {
		t.Fatalf("commission_totals after the commission went: %d rows left (%v)", left, err)
	}
	got = fmt.Sprint(dims)
	want = "[{country  2025-01-05  7 6} {country  2026-01-05  1 0} {country  2026-01-05 DE 1 1} " +
		"{referrer  2025-01-05  7 6} {referrer  2026-01-05  1 0} {referrer  2026-01-05 google.com 1 1} " +
		"{sub a 2025-01-05  7 6} {sub a 2026-01-05  1 0} {sub a 2026-01-05 yt 1 1}]"
	if got != want {
		t.Fatalf("dims\n got %s\nwant %s", got, want)
	}
}

// BenchmarkRollupsMigration times migration 1795480100 on issue #16's database: 1.56 M
// stats_daily rows (10,000 affiliates and 3,000 links over 120 days), 238 k sales with their
// commissions and PBA_BENCH_CLICKS stored clicks (default 1,000,000; the database had
// 11.9 M: the click histograms are three GROUP BY scans, linear in the clicks). Run with
// -benchtime=1x.
func BenchmarkRollupsMigration(b *testing.B) {
	clicks := 1_000_000
	if v := os.Getenv("PBA_BENCH_CLICKS"); v != "" {
		clicks, _ = strconv.Atoi(v)
	}
	app, p := rollupsApp(b)
	start := time.Now()
	rng := rand.New(rand.NewSource(16))
	first := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	seq := 0
	id := func() string { seq++; return fmt.Sprintf("b%014d", seq) }
	err := app.RunInTransaction(func(tx core.App) error {
		sqlTx := tx.NonconcurrentDB().(*dbx.Tx).Builder.(interface{ Executor() dbx.Executor }).Executor().(*sql.Tx)
		exec := func(q string, rows int, args func(i int) []any) error {
			st, err := sqlTx.Prepare(q)
			if err != nil {
				return err
			}
			defer st.Close()
			for i := 0; i < rows; i++ {
				if _, err := st.Exec(args(i)...); err != nil {
					return err
				}
			}
			return nil
		}
		affs := 10_000
		perDay := affs + 3_000
		if err := exec(`INSERT INTO stats_daily (id, day, affiliate, program, link, clicks, unique_clicks, conversions, revenue, commission)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, perDay*120, func(i int) []any {
			day := first.AddDate(0, 0, i/perDay).Format(time.DateOnly)
			k := i % perDay
			aff, link := fmt.Sprintf("a%05d", k%affs), ""
			if k >= affs {
				link = fmt.Sprintf("l%05d", k-affs)
			}
			return []any{id(), day, aff, p, link, rng.Intn(20), rng.Intn(10), 0, 0, 0}
		}); err != nil {
			return err
		}
		if err := exec(`INSERT INTO clicks (id, affiliate, program, country, referrer, sub_id, "unique", flag, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, '', ?)`, clicks, func(i int) []any {
			at := first.Add(time.Duration(rng.Int63n(int64(120 * 24 * time.Hour))))
			return []any{id(), fmt.Sprintf("a%05d", rng.Intn(affs)), p, fmt.Sprintf("C%d", rng.Intn(40)),
				fmt.Sprintf("https://site%d.example/p", rng.Intn(50)), fmt.Sprintf("s%d", rng.Intn(3)), rng.Intn(2) == 0,
				at.Format("2006-01-02 15:04:05.000Z")}
		}); err != nil {
			return err
		}
		return exec(`INSERT INTO conversions (id, affiliate, program, source, external_id, amount, currency, status, occurred_at)
			VALUES (?, ?, ?, 'api', ?, ?, 'usd', 'approved', ?)`, 238_000, func(i int) []any {
			at := first.Add(time.Duration(rng.Int63n(int64(120 * 24 * time.Hour))))
			return []any{fmt.Sprintf("c%014d", i), fmt.Sprintf("a%05d", rng.Intn(affs)), p, strconv.Itoa(i), 1000 + rng.Intn(9000),
				at.Format("2006-01-02 15:04:05.000Z")}
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("history built in %v (%d clicks)", time.Since(start).Round(time.Second), clicks)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := app.RunInTransaction(func(tx core.App) error { return rollupsUp(tx) }); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s/migration")
		b.StopTimer()
		if err := rollupsDown(app); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
