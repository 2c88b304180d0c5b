package hooks_test

import (
	"database/sql"
	"fmt"
	"math/rand"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// The scale of issue #16's measurements: a program with 10,000 approved affiliates, 3,000
// links and 120 days of history (1.56 M stats_daily rows) and ~238 k commissions.
const (
	scaleAffiliates = 10_000
	scaleLinks      = 3_000
	scaleDays       = 120
	scaleSales      = 238_000
)

// scaleDB fills app with the scale's rollup rows by direct SQL (deterministic: seeded), the
// way the writers would have left them: stats_daily per affiliate code and link, the program's
// hours summing to its days, clicks by country and referrer, by sub for one affiliate in ten,
// and the commissions (a quarter pending, a sixth payable, the rest paid). It returns the
// program and the last day.
func scaleDB(b *testing.B, app *tests.TestApp) (program, lastDay string) {
	b.Helper()
	start := time.Now()
	p, err := collections.FindDefaultProgram(app)
	if err != nil {
		b.Fatal(err)
	}
	program = p.Id
	rng := rand.New(rand.NewSource(16))
	first := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -(scaleDays - 1))
	err = app.RunInTransaction(func(tx core.App) error {
		sqlTx, err := store.SQLTx(tx)
		if err != nil {
			return err
		}
		prep := func(q string) *sql.Stmt {
			s, err := sqlTx.Prepare(q)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
		aff := prep(`INSERT INTO affiliates (id, email, tokenKey, password, name, code, status, program) VALUES (?, ?, ?, 'x', ?, ?, 'approved', ?)`)
		link := prep(`INSERT INTO links (id, affiliate, program, code, destination) VALUES (?, ?, ?, ?, 'https://example.com/')`)
		daily := prep(`INSERT INTO stats_daily (id, day, affiliate, program, link, clicks, unique_clicks, conversions, revenue, commission, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')`)
		hourly := prep(`INSERT INTO stats_program_hourly (id, hour, program, currency, clicks, unique_clicks, conversions, revenue, commission)
			VALUES (?, ?, ?, 'usd', ?, ?, ?, ?, ?) ON CONFLICT (program, hour) DO UPDATE SET clicks = clicks + excluded.clicks,
			unique_clicks = unique_clicks + excluded.unique_clicks, conversions = conversions + excluded.conversions,
			revenue = revenue + excluded.revenue, commission = commission + excluded.commission`)
		dims := prep(`INSERT INTO stats_dims_daily (id, dim, program, affiliate, day, value, clicks, unique_clicks) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		comm := prep(`INSERT INTO commissions (id, affiliate, program, conversion, kind, amount, currency, status, payable_at, created, updated)
			VALUES (?, ?, ?, ?, 'sale', ?, 'usd', ?, '', '', '')`)
		// Bulk loads build their indexes once at the end (a sort) instead of row by row.
		var indexes []string
		if err := tx.DB().NewQuery(`SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
			AND tbl_name IN ('stats_daily', 'stats_dims_daily', 'commissions')`).Column(&indexes); err != nil {
			return err
		}
		for _, ix := range indexes {
			name := strings.Fields(ix[:strings.Index(ix, " ON ")])
			if _, err := sqlTx.Exec("DROP INDEX " + name[len(name)-1]); err != nil {
				return err
			}
		}
		var ids store.OrderedIDs
		affs := make([]string, scaleAffiliates)
		for i := range affs {
			affs[i] = ids.Next(time.Now())
			if _, err := aff.Exec(affs[i], fmt.Sprintf("scale%d@bench.test", i), store.NewID()+store.NewID(), fmt.Sprintf("Affiliate %d", i),
				fmt.Sprintf("scale-%05d", i), program); err != nil {
				return err
			}
		}
		type linkOf struct{ id, affiliate string }
		links := make([]linkOf, scaleLinks)
		for i := range links {
			links[i] = linkOf{store.NewID(), affs[rng.Intn(len(affs))]}
			if _, err := link.Exec(links[i].id, links[i].affiliate, program, fmt.Sprintf("scale-link-%05d", i)); err != nil {
				return err
			}
		}
		for d := 0; d < scaleDays; d++ {
			day := first.AddDate(0, 0, d).Format(time.DateOnly)
			var dayTotal [5]int64
			row := func(affiliate, link string) error {
				clicks := int64(rng.Intn(20))
				unique := clicks * 7 / 10
				conv := int64(0)
				if rng.Intn(50) == 0 {
					conv = 1 + int64(rng.Intn(2))
				}
				rev := conv * int64(1000+rng.Intn(20000))
				com := rev / 5
				dayTotal = [5]int64{dayTotal[0] + clicks, dayTotal[1] + unique, dayTotal[2] + conv, dayTotal[3] + rev, dayTotal[4] + com}
				_, err := daily.Exec(ids.Next(time.Now()), day, affiliate, program, link, clicks, unique, conv, rev, com)
				return err
			}
			for _, a := range affs {
				if err := row(a, ""); err != nil {
					return err
				}
			}
			for _, l := range links {
				if err := row(l.affiliate, l.id); err != nil {
					return err
				}
			}
			var left [5]int64 = dayTotal
			for h := 0; h < 24; h++ {
				part := dayTotal
				for i := range part {
					part[i] /= 24
					if h == 23 {
						part[i] = left[i]
					}
					left[i] -= part[i]
				}
				if _, err := hourly.Exec(store.NewID(), fmt.Sprintf("%s %02d", day, h), program, part[0], part[1], part[2], part[3], part[4]); err != nil {
					return err
				}
			}
			for c := 0; c < 40; c++ {
				if _, err := dims.Exec(ids.Next(time.Now()), collections.DimCountry, program, "", day, fmt.Sprintf("c%d", c), 1000+c, 700); err != nil {
					return err
				}
			}
			for r := 0; r < 50; r++ {
				if _, err := dims.Exec(ids.Next(time.Now()), collections.DimReferrer, program, "", day, fmt.Sprintf("site%d.example", r), 500+r, 300); err != nil {
					return err
				}
			}
			for i := 0; i < len(affs); i += 10 {
				for s := 0; s < 3; s++ {
					if _, err := dims.Exec(ids.Next(time.Now()), collections.DimSub, program, affs[i], day, fmt.Sprintf("sub%d", s), 3, 2); err != nil {
						return err
					}
				}
			}
		}
		for i := 0; i < scaleSales; i++ {
			status := collections.CommissionPaid
			switch i % 12 {
			case 0, 1, 2:
				status = collections.CommissionPending
			case 3, 4:
				status = collections.CommissionPayable
			}
			if _, err := comm.Exec(ids.Next(time.Now()), affs[i%len(affs)], program, ids.Next(time.Now()), 200+i%5000, status); err != nil {
				return err
			}
		}
		// The engine counts its sale commissions in commission_totals (no trigger does).
		if _, err := sqlTx.Exec(`INSERT INTO commission_totals (id, program, currency, status, amount, count)
			SELECT substr(lower(hex(randomblob(8))), 1, 15), program, currency, status, SUM(amount), COUNT(*) FROM commissions
			WHERE kind = 'sale' GROUP BY program, currency, status
			ON CONFLICT (program, currency, status) DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count`); err != nil {
			return err
		}
		for _, s := range []*sql.Stmt{aff, link, daily, hourly, dims, comm} {
			s.Close()
		}
		for _, ix := range indexes {
			if _, err := sqlTx.Exec(ix); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := app.DB().NewQuery("ANALYZE").Execute(); err != nil {
		b.Fatal(err)
	}
	var rows int
	_ = app.DB().NewQuery("SELECT COUNT(*) FROM stats_daily").Row(&rows)
	b.Logf("scale data: %d stats_daily rows in %v", rows, time.Since(start).Round(time.Millisecond))
	return program, first.AddDate(0, 0, scaleDays-1).Format(time.DateOnly)
}

// BenchmarkReportsAtScale answers the overview's requests at issue #16's scale through the
// HTTP routes, as the back office calls them, and reports each kind's p50 and p95 latency
// (ms) over its b.N requests. The stats and leaderboard goal is p95 ≤ 20 ms; per-affiliate
// figures ≤ 5 ms; the overview (all of its requests) ≤ 100 ms.
func BenchmarkReportsAtScale(b *testing.B) {
	app := fx.App(b)
	program, last := scaleDB(b, app)
	h := pbatest.Serve(b, app)
	token := fx.Superuser.Token
	var someAffiliate string
	_ = app.DB().NewQuery("SELECT id FROM affiliates WHERE code = 'scale-00010'").Row(&someAffiliate)
	lastDay, _ := time.Parse(time.DateOnly, last)
	rangeOf := func(days int) string {
		return "from=" + lastDay.AddDate(0, 0, -(days-1)).Format(time.DateOnly) + "&to=" + last
	}
	get := func(b *testing.B, path string) {
		if r := pbatest.Request(h, http.MethodGet, path, token, ""); r.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, r.Code, r.Body.String())
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	get(b, "/api/pba/leaderboard?program="+program+"&"+rangeOf(7))
	built := time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Logf("leaderboard board built on first use in %v; heap +%d MB", built.Round(time.Millisecond),
		(int64(after.HeapAlloc)-int64(before.HeapAlloc))>>20)

	measure := func(name string, paths ...string) {
		b.Run(name, func(b *testing.B) {
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				t := time.Now()
				for _, p := range paths {
					get(b, p)
				}
				lat = append(lat, time.Since(t))
			}
			slices.Sort(lat)
			ms := func(q float64) float64 {
				return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.95), "p95-ms")
		})
	}
	for _, interval := range []string{"day", "week", "month"} {
		for _, days := range []int{7, 30, 90, 365} {
			measure(fmt.Sprintf("stats/%s/%dd", interval, days),
				"/api/pba/stats?program="+program+"&interval="+interval+"&tz=America/New_York&compare=previous&"+rangeOf(days))
		}
	}
	for _, by := range []string{"commission", "revenue", "conversions", "clicks", "cr", "epc"} {
		for _, limit := range []int{10, 50} {
			measure(fmt.Sprintf("leaderboard/%s/top%d/90d", by, limit),
				fmt.Sprintf("/api/pba/leaderboard?program=%s&by=%s&limit=%d&%s", program, by, limit, rangeOf(90)))
		}
	}
	measure("leaderboard/commission/top10/365d", "/api/pba/leaderboard?program="+program+"&by=commission&limit=10&"+rangeOf(365))
	measure("affiliate/stats/90d", "/api/pba/stats?affiliate="+someAffiliate+"&"+rangeOf(90))
	measure("affiliate/balance", "/api/pba/balance?affiliate="+someAffiliate)
	measure("affiliate/breakdown-link/90d", "/api/pba/breakdown?dim=link&affiliate="+someAffiliate+"&"+rangeOf(90))
	measure("affiliate/breakdown-sub/90d", "/api/pba/breakdown?dim=sub&affiliate="+someAffiliate+"&"+rangeOf(90))
	measure("program/breakdown-country/90d", "/api/pba/breakdown?dim=country&program="+program+"&"+rangeOf(90))
	measure("program/breakdown-referrer/90d", "/api/pba/breakdown?dim=referrer&program="+program+"&"+rangeOf(90))
	measure("program/owed", "/api/pba/owed?program="+program)
	// The portal's terms run the program's payout preview for the next payout's amount: against
	// the preview itself and the affiliate's balance.
	measure("payouts/preview", "/api/pba/payouts/preview?program="+program)
	affRecord, err := app.FindRecordById(collections.Affiliates, someAffiliate)
	if err != nil {
		b.Fatal(err)
	}
	affToken, err := affRecord.NewAuthToken()
	if err != nil {
		b.Fatal(err)
	}
	token = affToken // get's token from here on
	measure("affiliate/terms", "/api/pba/terms")
	measure("affiliate/balance-own", "/api/pba/balance")
	token = fx.Superuser.Token
	// The back office's overview for 30 days: KPIs with the previous period, the daily chart,
	// the top affiliates, what is owed, and the country and referrer panels.
	measure("overview/30d",
		"/api/pba/stats?program="+program+"&interval=day&tz=America/New_York&compare=previous&"+rangeOf(30),
		"/api/pba/leaderboard?program="+program+"&by=commission&limit=10&"+rangeOf(30),
		"/api/pba/owed?program="+program,
		"/api/pba/breakdown?dim=country&limit=10&program="+program+"&"+rangeOf(30),
		"/api/pba/breakdown?dim=referrer&limit=10&program="+program+"&"+rangeOf(30))
}
