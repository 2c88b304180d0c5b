package hooks_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// seedStats adds stats_daily rows in January 2026 (far from the fixture's rows of today):
// A in P on Mon 5th and Tue 6th (week of the 5th) and Mon 12th; B in P on the 6th; an
// affiliate of Q (eur) on the 6th.
func seedStats(t testing.TB, app core.App) {
	t.Helper()
	q, err := app.FindRecordById(collections.Programs, fx.ProgramQ)
	if err != nil {
		t.Fatal(err)
	}
	affs, _ := app.FindCachedCollectionByNameOrId(collections.Affiliates)
	eu := core.NewRecord(affs)
	eu.Load(map[string]any{"name": "=HYPERLINK(\"x\")", "code": "eu-one", "status": "approved", "program": q.Id})
	eu.SetEmail("eu@fixture.test")
	eu.SetRandomPassword()
	if err := app.Save(eu); err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		day, affiliate, program                          string
		clicks, unique, conversions, revenue, commission int
	}{
		{"2026-01-05", fx.A.ID, fx.ProgramP, 10, 8, 1, 5000, 1000},
		{"2026-01-06", fx.A.ID, fx.ProgramP, 20, 12, 1, 7001, 1401},
		{"2026-01-12", fx.A.ID, fx.ProgramP, 5, 5, 0, 0, 0},
		{"2026-01-06", fx.B.ID, fx.ProgramP, 100, 90, 10, 90000, 18000},
		{"2026-01-06", eu.Id, fx.ProgramQ, 7, 7, 2, 3000, 1000},
	}
	// Through the writers' function, so every rollup (hourly, board) has them too.
	err = app.RunInTransaction(func(tx core.App) error {
		deltas := map[store.StatsKey]store.StatsDelta{}
		for _, r := range rows {
			deltas[store.StatsKeyAt(r.day+" 12:00:00.000Z", r.affiliate, r.program, "")] = store.StatsDelta{Clicks: int64(r.clicks),
				UniqueClicks: int64(r.unique), Conversions: int64(r.conversions), Revenue: int64(r.revenue), Commission: int64(r.commission)}
		}
		return store.AddStats(tx, deltas)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStatsRoute(t *testing.T) {
	seed := func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) { seedStats(t, app) }
	scenarios := []tests.ApiScenario{
		{
			Name:           "affiliate: own figures by week, CR/EPC/AOV derived, B's day absent",
			URL:            "/api/pba/stats?from=2026-01-01&to=2026-01-31&interval=week",
			Headers:        pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus: 200,
			ExpectedContent: []string{
				`"affiliate":"` + fx.A.ID + `"`,
				// Week of Mon 5 Jan: 30 clicks, 20 unique, 2 sales, 12001 revenue, 2401 commission.
				`{"metrics":{"currency":"usd","clicks":30,"unique_clicks":20,"conversions":2,"revenue":12001,"commission":2401,"cr":6.67,"unique_rate":66.67,"epc":80,"aov":6000,"commission_formatted":"24.01 USD"},"period":"2026-01-05"}`,
				`"period":"2026-01-12"`,
				`"totals":[{"currency":"usd","clicks":35,"unique_clicks":25,"conversions":2,"revenue":12001,"commission":2401`,
			},
			NotExpectedContent: []string{`"clicks":100`, `"clicks":7,`},
		},
		{
			Name: "affiliate asking for another affiliate: 403 naming the field",
			URL:  "/api/pba/stats?affiliate=" + fx.B.ID, Headers: pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus: 403, ExpectedContent: []string{`"affiliate"`},
		},
		{Name: "guest: 401", URL: "/api/pba/stats", ExpectedStatus: 401, ExpectedContent: []string{`"status":401`}},
		{
			Name: "bad interval", URL: "/api/pba/stats?interval=hour", Headers: pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"interval":{"code":"invalid_interval"`},
		},
		{
			Name: "from after to", URL: "/api/pba/stats?from=2026-02-01&to=2026-01-01", Headers: pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"from":{"code":"after_to"`},
		},
		{
			Name: "bad date", URL: "/api/pba/stats?to=yesterday", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"to":{"code":"invalid_date"`},
		},
		{
			Name: "superuser: everything by month, one total per currency",
			URL:  "/api/pba/stats?from=2026-01-01&to=2026-01-31&interval=month", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 200,
			ExpectedContent: []string{
				`"totals":[{"currency":"eur","clicks":7,`,
				`{"currency":"usd","clicks":135,"unique_clicks":115,"conversions":12,"revenue":102001,"commission":20401`,
				`"period":"2026-01"`,
			},
		},
		{
			Name: "superuser: one program", URL: "/api/pba/stats?from=2026-01-01&to=2026-01-31&program=" + fx.ProgramQ,
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{`"totals":[{"currency":"eur","clicks":7,`}, NotExpectedContent: []string{`"usd"`},
		},
		{
			Name: "unknown program", URL: "/api/pba/stats?program=nope", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"program":{"code":"unknown_program"`},
		},
	}
	for _, s := range scenarios {
		s.Method = http.MethodGet
		s.TestAppFactory = fx.Factory()
		s.BeforeTestFunc = seed
		s.Test(t)
	}
}

func TestLeaderboardRoute(t *testing.T) {
	seed := func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) { seedStats(t, app) }
	scenarios := []tests.ApiScenario{
		{
			Name: "by commission in P: B first, A second", URL: "/api/pba/leaderboard?from=2026-01-01&to=2026-01-31&program=" + fx.ProgramP,
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{`"affiliates":[{"affiliate":"` + fx.B.ID + `","code":`, `"clicks":100,"unique_clicks":90,"conversions":10,"revenue":90000,"commission":18000`, `"rank":2`, `"by":"commission"`},
		},
		{
			Name: "money across currencies needs a program", URL: "/api/pba/leaderboard?from=2026-01-01&to=2026-01-31",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 400,
			ExpectedContent: []string{`"program":{"code":"required"`},
		},
		{
			Name: "money within one currency: its programs", URL: "/api/pba/leaderboard?from=2026-01-01&to=2026-01-31&currency=usd",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent:    []string{`"affiliates":[{"affiliate":"` + fx.B.ID + `","code":`, `"clicks":100,"unique_clicks":90,"conversions":10,"revenue":90000,"commission":18000`, `"rank":2`},
			NotExpectedContent: []string{`"currency":"eur"`},
		},
		{
			Name: "bad currency", URL: "/api/pba/leaderboard?currency=USD", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"currency":{"code":"invalid_currency"`},
		},
		{
			Name: "clicks across currencies, limit 1", URL: "/api/pba/leaderboard?from=2026-01-01&to=2026-01-31&by=clicks&limit=1",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{`"affiliate":"` + fx.B.ID + `"`}, NotExpectedContent: []string{`"rank":2`},
		},
		{
			Name: "bad metric", URL: "/api/pba/leaderboard?by=ctr", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"by":{"code":"invalid_metric"`},
		},
		{
			Name: "bad limit", URL: "/api/pba/leaderboard?by=clicks&limit=1000", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"limit":{"code":"invalid_limit"`},
		},
		{Name: "affiliate: 403", URL: "/api/pba/leaderboard", Headers: pbatest.AuthHeaders(fx.A.Token), ExpectedStatus: 403, ExpectedContent: []string{`"status":403`}},
		{Name: "guest: 401", URL: "/api/pba/leaderboard", ExpectedStatus: 401, ExpectedContent: []string{`"status":401`}},
	}
	for _, s := range scenarios {
		s.Method = http.MethodGet
		s.TestAppFactory = fx.Factory()
		s.BeforeTestFunc = seed
		s.Test(t)
	}
}

func TestExportRoutes(t *testing.T) {
	scenarios := []tests.ApiScenario{
		{
			Name: "commissions: every row, decimal amount, affiliate code", URL: "/api/pba/export/commissions.csv",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{"id,affiliate,affiliate_code,program,conversion,kind,amount_minor,currency,status,payable_at,payout,note,created,amount\n",
				fx.RowsA.Commission + "," + fx.A.ID + ",", ",sale,1000,usd,paid,", ",10.00\n", fx.RowsB.Commission + ","},
		},
		{
			Name: "conversions filtered by status", URL: "/api/pba/export/conversions.csv?status=refunded",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{"id,affiliate,affiliate_code"}, NotExpectedContent: []string{fx.RowsA.Conversion},
		},
		{
			Name: "affiliates: names typed by affiliates cannot become formulas",
			URL:  "/api/pba/export/affiliates.csv?program=" + fx.ProgramQ, Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			BeforeTestFunc: func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) { seedStats(t, app) },
			ExpectedStatus: 200, ExpectedContent: []string{`"'=HYPERLINK(""x"")"`, "eu@fixture.test"},
			NotExpectedContent: []string{"a@fixture.test", "password", "tokenKey"},
		},
		{
			Name: "bad date", URL: "/api/pba/export/conversions.csv?from=01/01/2026", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"from":{"code":"invalid_date"`},
		},
		{Name: "affiliate: 403", URL: "/api/pba/export/commissions.csv", Headers: pbatest.AuthHeaders(fx.A.Token), ExpectedStatus: 403, ExpectedContent: []string{`"status":403`}},
		{Name: "guest: 401", URL: "/api/pba/export/affiliates.csv", ExpectedStatus: 401, ExpectedContent: []string{`"status":401`}},
	}
	for _, s := range scenarios {
		s.Method = http.MethodGet
		s.TestAppFactory = fx.Factory()
		s.Test(t)
	}
}

// An export larger than one page streams every row exactly once.
func TestExportPages(t *testing.T) {
	const n = 2500
	(&tests.ApiScenario{
		Method: http.MethodGet, URL: "/api/pba/export/commissions.csv?from=2026-01-01&to=2026-01-31",
		Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
		ExpectedContent: []string{"id,affiliate"},
		TestAppFactory:  fx.Factory(),
		BeforeTestFunc: func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) {
			err := app.RunInTransaction(func(tx core.App) error {
				for i := 0; i < n; i++ {
					_, err := tx.DB().NewQuery(`INSERT INTO commissions (id, affiliate, program, conversion, kind, amount, currency, status, payout, created, updated)
						VALUES ({:id}, {:a}, {:p}, '', 'adjustment', 1, 'usd', 'pending', '', '2026-01-15 10:00:00.000Z', '')`).
						Bind(dbx.Params{"id": fmt.Sprintf("exp%012d", i), "a": fx.A.ID, "p": fx.ProgramP}).Execute()
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		AfterTestFunc: func(t testing.TB, app *tests.TestApp, res *http.Response) {
			raw, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			seen := map[string]bool{}
			for _, l := range lines[1:] {
				seen[strings.SplitN(l, ",", 2)[0]] = true
			}
			if len(lines) != n+1 || len(seen) != n {
				t.Fatalf("%d lines, %d distinct ids; want %d rows", len(lines), len(seen), n)
			}
		},
	}).Test(t)
}

func TestBalanceRoute(t *testing.T) {
	scenarios := []tests.ApiScenario{
		{
			Name: "affiliate: own paid commission", URL: "/api/pba/balance", Headers: pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus: 200, ExpectedContent: []string{`"balances":[{"currency":"usd","pending":0,"payable":0,"paid":1000}]`},
		},
		{
			Name: "affiliate naming another: 403", URL: "/api/pba/balance?affiliate=" + fx.B.ID, Headers: pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus: 403, ExpectedContent: []string{`"affiliate"`},
		},
		{
			Name: "superuser names one", URL: "/api/pba/balance?affiliate=" + fx.B.ID, Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 200, ExpectedContent: []string{`"paid":2000`},
		},
		{
			Name: "superuser without affiliate: 400", URL: "/api/pba/balance", Headers: pbatest.AuthHeaders(fx.Superuser.Token),
			ExpectedStatus: 400, ExpectedContent: []string{`"affiliate":{"code":"required"`},
		},
		{Name: "guest: 401", URL: "/api/pba/balance", ExpectedStatus: 401, ExpectedContent: []string{`"status":401`}},
	}
	for _, s := range scenarios {
		s.Method = http.MethodGet
		s.TestAppFactory = fx.Factory()
		s.Test(t)
	}
}
