package hooks_test

import (
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// referrerDomainOf is the breakdown's grouping of a referrer, written out for the test.
func referrerDomainOf(ref string) string {
	u, err := url.Parse(ref)
	if ref == "" || err != nil || u.Host == "" {
		return ""
	}
	return strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
}

// TestRollupsFollowRandomClicks drives random visitors through /r/ (countries, referrers,
// subs, repeat visitors, bots, one busy IP), links created and deleted by the affiliate and
// the admin in between, and checks after each round that the click dims equal the stored
// clicks grouped the same way, that every rollup equals stats_daily, and that the reporting
// routes answer the same figures.
func TestRollupsFollowRandomClicks(t *testing.T) {
	cfg := fx.Config
	cfg.CountryHeader = "CF-IPCountry"
	env := newClickEnv(t, cfg)
	rng := rand.New(rand.NewSource(16))
	countries := []string{"", "DE", "US", "FR"}
	referrers := []string{"", "https://www.Google.com/search?q=x", "https://news.ycombinator.com/item", "not a url", "android-app://com.slack/"}
	subs := []string{"", "yt", "blog-1"}
	agents := []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", "Googlebot/2.1"}
	codes := []string{"affiliate-a", "affiliate-b", linkA}
	var visitors []*http.Cookie
	var links []string // links A made in this test (deletable)
	deleted := map[string]bool{}
	for round := 0; round < 4; round++ {
		for i := 0; i < 40; i++ {
			code := codes[rng.Intn(len(codes))]
			path := "/r/" + code
			if s := subs[rng.Intn(len(subs))]; s != "" {
				path += "?sub=" + s
			}
			res := env.get(path, func(r *http.Request) {
				r.Header.Set("CF-IPCountry", countries[rng.Intn(len(countries))])
				if ref := referrers[rng.Intn(len(referrers))]; ref != "" {
					r.Header.Set("Referer", ref)
				}
				if rng.Intn(5) == 0 {
					r.Header.Set("User-Agent", agents[1]) // a bot: stored, flagged, never counted
				} else {
					r.Header.Set("User-Agent", agents[0])
				}
				r.RemoteAddr = fmt.Sprintf("198.51.100.%d:4000", rng.Intn(6))
				if len(visitors) > 0 && rng.Intn(3) == 0 {
					r.AddCookie(visitors[rng.Intn(len(visitors))])
				}
			})
			if res.StatusCode != http.StatusFound && (res.StatusCode != http.StatusNotFound || !deleted[code]) {
				t.Fatalf("GET %s: %d", path, res.StatusCode)
			}
			visitors = append(visitors, res.Cookies()...)
		}
		// The affiliate makes a link and sends traffic to it; the admin deletes an older one.
		rec := pbatest.Request(env.handler, http.MethodPost, "/api/collections/links/records", fx.A.Token,
			fmt.Sprintf(`{"label":"round %d","sub_id":"promo"}`, round))
		if rec.Code != 200 {
			t.Fatalf("create link: %d %s", rec.Code, rec.Body)
		}
		links = append(links, rec.JSON["id"].(string))
		codes = append(codes, rec.JSON["code"].(string))
		if round > 0 {
			i := rng.Intn(len(links) - 1)
			victim := links[i]
			deleted[codes[3+i]] = true
			if rec := pbatest.Request(env.handler, http.MethodDelete, "/api/collections/links/records/"+victim, fx.Superuser.Token, ""); rec.Code != 204 && rec.Code != 404 {
				t.Fatalf("delete link: %d %s", rec.Code, rec.Body)
			}
		}
		when := fmt.Sprintf("round %d", round)
		dimsEqualClicks(t, env.app, when)
		derivedRollupsConsistent(t, env.app, rng, when)
		routesEqualClicks(t, env, when)
	}
}

// dimsEqualClicks fails when a dim row differs from the stored unflagged clicks grouped by
// its value (no click is pruned in these tests).
func dimsEqualClicks(t *testing.T, app core.App, when string) {
	t.Helper()
	var clicks []struct {
		Program   string `db:"program"`
		Affiliate string `db:"affiliate"`
		Day       string `db:"day"`
		Country   string `db:"country"`
		Referrer  string `db:"referrer"`
		Sub       string `db:"sub_id"`
		Unique    bool   `db:"unique"`
	}
	err := app.DB().NewQuery(`SELECT program, affiliate, substr(created, 1, 10) AS day, country, referrer, sub_id, [[unique]]
		FROM clicks WHERE flag = ''`).All(&clicks)
	if err != nil {
		t.Fatal(err)
	}
	want := map[store.DimKey]store.DimDelta{}
	add := func(k store.DimKey, unique bool) {
		d := want[k]
		d.Clicks++
		if unique {
			d.UniqueClicks++
		}
		want[k] = d
	}
	for _, c := range clicks {
		add(store.DimKey{Dim: collections.DimCountry, Program: c.Program, Day: c.Day, Value: c.Country}, c.Unique)
		add(store.DimKey{Dim: collections.DimReferrer, Program: c.Program, Day: c.Day, Value: referrerDomainOf(c.Referrer)}, c.Unique)
		add(store.DimKey{Dim: collections.DimSub, Program: c.Program, Affiliate: c.Affiliate, Day: c.Day, Value: c.Sub}, c.Unique)
	}
	var rows []struct {
		Dim       string `db:"dim"`
		Program   string `db:"program"`
		Affiliate string `db:"affiliate"`
		Day       string `db:"day"`
		Value     string `db:"value"`
		Clicks    int64  `db:"clicks"`
		Unique    int64  `db:"unique_clicks"`
	}
	if err := app.DB().NewQuery("SELECT dim, program, affiliate, day, value, clicks, unique_clicks FROM stats_dims_daily").All(&rows); err != nil {
		t.Fatal(err)
	}
	got := map[store.DimKey]store.DimDelta{}
	for _, r := range rows {
		if r.Clicks != 0 || r.Unique != 0 {
			got[store.DimKey{Dim: r.Dim, Program: r.Program, Affiliate: r.Affiliate, Day: r.Day, Value: r.Value}] = store.DimDelta{Clicks: r.Clicks, UniqueClicks: r.Unique}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d dim rows, the clicks make %d:\ngot  %v\nwant %v", when, len(got), len(want), got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("%s: dim %+v = %+v, the clicks say %+v", when, k, got[k], w)
		}
	}
}

// routesEqualClicks fails when today's program-wide stats, A's sub breakdown or the
// program's country breakdown, as the pages fetch them, differ from the stored clicks.
func routesEqualClicks(t *testing.T, env *clickEnv, when string) {
	t.Helper()
	today := time.Now().UTC().Format(time.DateOnly)
	count := func(where string, args dbx.Params) int64 {
		var n int64
		if err := env.app.DB().NewQuery("SELECT COUNT(*) FROM clicks WHERE flag = '' AND substr(created, 1, 10) = {:today} AND " + where).
			Bind(args).Row(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	q := "&from=" + today + "&to=" + today
	rec := pbatest.Request(env.handler, http.MethodGet, "/api/pba/stats?program="+fx.ProgramP+q, fx.Superuser.Token, "")
	totals, _ := rec.JSON["totals"].([]any)
	if rec.Code != 200 || len(totals) != 1 {
		t.Fatalf("%s: stats %d %s", when, rec.Code, rec.Body)
	}
	if got, want := int64(totals[0].(map[string]any)["clicks"].(float64)), count("program = {:p}", dbx.Params{"today": today, "p": fx.ProgramP}); got != want {
		t.Fatalf("%s: program stats count %d clicks today, the clicks table %d", when, got, want)
	}
	rec = pbatest.Request(env.handler, http.MethodGet, "/api/pba/breakdown?dim=sub"+q, fx.A.Token, "")
	if rec.Code != 200 {
		t.Fatalf("%s: sub breakdown %d %s", when, rec.Code, rec.Body)
	}
	for _, r := range rec.JSON["rows"].([]any) {
		row := r.(map[string]any)
		sub := row["value"].(string)
		if got, want := int64(row["clicks"].(float64)), count("affiliate = {:a} AND sub_id = {:s}", dbx.Params{"today": today, "a": fx.A.ID, "s": sub}); got != want {
			t.Fatalf("%s: sub %q shows %d clicks, the clicks table %d", when, sub, got, want)
		}
	}
	rec = pbatest.Request(env.handler, http.MethodGet, "/api/pba/breakdown?dim=country&program="+fx.ProgramP+q, fx.Superuser.Token, "")
	if rec.Code != 200 || len(rec.JSON["rows"].([]any)) == 0 {
		t.Fatalf("%s: country breakdown %d %s", when, rec.Code, rec.Body)
	}
	for _, r := range rec.JSON["rows"].([]any) {
		row := r.(map[string]any)
		country := row["value"].(string)
		if got, want := int64(row["clicks"].(float64)), count("program = {:p} AND country = {:c}", dbx.Params{"today": today, "p": fx.ProgramP, "c": country}); got != want {
			t.Fatalf("%s: country %q shows %d clicks, the clicks table %d", when, country, got, want)
		}
	}
}

// TestReportRoutesRules: who may ask what of /breakdown, /owed, /leaderboard and /stats, and
// the answers' shape (time zones, the previous period, rate rankings).
func TestReportRoutesRules(t *testing.T) {
	app := fx.App(t)
	t.Cleanup(app.Cleanup)
	seedStats(t, app)
	// 02:00 UTC on Tue 6 Jan is still Mon 5 Jan in New York.
	err := app.RunInTransaction(func(tx core.App) error {
		return store.AddStats(tx, map[store.StatsKey]store.StatsDelta{
			store.StatsKeyAt("2026-01-06 02:00:00.000Z", fx.B.ID, fx.ProgramP, ""): {Clicks: 3, UniqueClicks: 3},
			// Around New York's switch to summer time (07:00 UTC on Sun 8 Mar 2026): 04:00 UTC
			// is 23:00 on Fri 6 Mar (UTC-5) and 00:00 on Mon 9 Mar (UTC-4).
			store.StatsKeyAt("2026-03-07 04:00:00.000Z", fx.B.ID, fx.ProgramP, ""): {Clicks: 1},
			store.StatsKeyAt("2026-03-09 04:00:00.000Z", fx.B.ID, fx.ProgramP, ""): {Clicks: 2},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	h := pbatest.Serve(t, app)
	jan := "&from=2026-01-01&to=2026-01-31"
	for _, c := range []struct {
		name, path, token string
		status            int
		has, hasNot       []string
	}{
		{"guest breakdown", "/api/pba/breakdown?dim=link" + jan, "", 401, nil, nil},
		{"affiliate: own links", "/api/pba/breakdown?dim=link" + jan, fx.A.Token, 200, []string{`"affiliate":"` + fx.A.ID + `"`, `"clicks":35`}, []string{fx.B.ID}},
		{"affiliate: another's subs", "/api/pba/breakdown?dim=sub&affiliate=" + fx.B.ID + jan, fx.A.Token, 403, []string{`"affiliate"`}, nil},
		{"affiliate: countries are the admins'", "/api/pba/breakdown?dim=country" + jan, fx.A.Token, 403, []string{`"dim"`}, nil},
		{"superuser: links need an affiliate", "/api/pba/breakdown?dim=link" + jan, fx.Superuser.Token, 400, []string{`"affiliate"`}, nil},
		{"bad dim", "/api/pba/breakdown?dim=city" + jan, fx.Superuser.Token, 400, []string{`"dim"`}, nil},
		{"bad limit", "/api/pba/breakdown?dim=country&limit=0" + jan, fx.Superuser.Token, 400, []string{`"limit"`}, nil},
		{"superuser: B's links", "/api/pba/breakdown?dim=link&affiliate=" + fx.B.ID + jan, fx.Superuser.Token, 200, []string{`"clicks":103`}, nil},
		{"owed: affiliates may not", "/api/pba/owed", fx.A.Token, 403, nil, nil},
		{"owed: superuser", "/api/pba/owed?program=" + fx.ProgramP, fx.Superuser.Token, 200, []string{`"balances":[`}, nil},
		{"leaderboard by cr", "/api/pba/leaderboard?by=cr&program=" + fx.ProgramP + jan, fx.Superuser.Token, 200, []string{`"by":"cr"`, `"rank":1`}, nil},
		{"leaderboard: bad metric", "/api/pba/leaderboard?by=ctr" + jan, fx.Superuser.Token, 400, []string{`"by"`}, nil},
		{"leaderboard: EPC across currencies", "/api/pba/leaderboard?by=epc" + jan, fx.Superuser.Token, 400, []string{`"program"`}, nil},
		{"stats: bad tz", "/api/pba/stats?tz=Mars/Olympus" + jan, fx.Superuser.Token, 400, []string{`"tz"`}, nil},
		{"stats: bad compare", "/api/pba/stats?compare=next" + jan, fx.Superuser.Token, 400, []string{`"compare"`}, nil},
		{"stats: New York days and the previous period", "/api/pba/stats?program=" + fx.ProgramP + "&from=2026-01-05&to=2026-01-05&tz=America/New_York&compare=previous",
			fx.Superuser.Token, 200, []string{`"tz":"America/New_York"`, `"previous":{"from":"2026-01-04","to":"2026-01-04"`, `"period":"2026-01-05"`}, nil},
	} {
		rec := pbatest.Request(h, http.MethodGet, c.path, c.token, "")
		body := rec.Body.String()
		if rec.Code != c.status {
			t.Fatalf("%s: %d %s, want %d", c.name, rec.Code, body, c.status)
		}
		for _, s := range c.has {
			if !strings.Contains(body, s) {
				t.Fatalf("%s: %s lacks %s", c.name, body, s)
			}
		}
		for _, s := range c.hasNot {
			if strings.Contains(body, s) {
				t.Fatalf("%s: %s has %s", c.name, body, s)
			}
		}
	}
	// The hour at 02:00 UTC on the 6th is the 5th in New York: A's 10 clicks of the 5th (noon
	// UTC) plus B's 3; in UTC the 5th has A's 10 only.
	clicksOn := func(tz string) float64 {
		rec := pbatest.Request(h, http.MethodGet, "/api/pba/stats?program="+fx.ProgramP+"&from=2026-01-05&to=2026-01-05&tz="+tz, fx.Superuser.Token, "")
		return rec.JSON["totals"].([]any)[0].(map[string]any)["clicks"].(float64)
	}
	if ny, utc := clicksOn("America/New_York"), clicksOn("UTC"); ny != 13 || utc != 10 {
		t.Fatalf("clicks on the 5th: New York %v, UTC %v; want 13 and 10", ny, utc)
	}
	rec := pbatest.Request(h, http.MethodGet, "/api/pba/stats?program="+fx.ProgramP+"&from=2026-03-06&to=2026-03-09&tz=America/New_York", fx.Superuser.Token, "")
	var days []string
	for _, e := range rec.JSON["series"].([]any) {
		m := e.(map[string]any)
		days = append(days, fmt.Sprintf("%s:%v", m["period"], m["metrics"].(map[string]any)["clicks"]))
	}
	if got := strings.Join(days, " "); got != "2026-03-06:1 2026-03-07:0 2026-03-08:0 2026-03-09:2" {
		t.Fatalf("New York days across the switch to summer time: %s", got)
	}
	// The leaderboard by commission over January: B (18,000) before A (2,401); by CR A first
	// needs at least as many clicks as min_clicks asks.
	rec = pbatest.Request(h, http.MethodGet, "/api/pba/leaderboard?program="+fx.ProgramP+jan, fx.Superuser.Token, "")
	top := rec.JSON["affiliates"].([]any)
	if len(top) < 2 || top[0].(map[string]any)["affiliate"] != fx.B.ID || top[1].(map[string]any)["affiliate"] != fx.A.ID {
		t.Fatalf("leaderboard: %s", rec.Body)
	}
	rec = pbatest.Request(h, http.MethodGet, "/api/pba/leaderboard?by=cr&min_clicks=104&program="+fx.ProgramP+jan, fx.Superuser.Token, "")
	if top := rec.JSON["affiliates"].([]any); len(top) != 0 {
		t.Fatalf("min_clicks=104 keeps nobody (B has 103 clicks): %s", rec.Body)
	}
}

// TestRollupGuards: figures cannot be edited by hand, and an affiliate with figures cannot be
// deleted (one without can).
func TestRollupGuards(t *testing.T) {
	app := fx.App(t)
	t.Cleanup(app.Cleanup)
	h := pbatest.Serve(t, app)
	var hourID string
	if err := app.DB().NewQuery("SELECT id FROM stats_program_hourly LIMIT 1").Row(&hourID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPatch, "/api/collections/stats_program_hourly/records/" + hourID, `{"clicks":1000}`},
		{http.MethodDelete, "/api/collections/stats_program_hourly/records/" + hourID, ""},
		{http.MethodPost, "/api/collections/stats_dims_daily/records", `{"dim":"country","program":"` + fx.ProgramP + `","day":"2026-01-01","clicks":5}`},
	} {
		if rec := pbatest.Request(h, c.method, c.path, fx.Superuser.Token, c.body); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"derived"`) {
			t.Fatalf("%s %s: %d %s, want 400 derived", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if rec := pbatest.Request(h, http.MethodDelete, "/api/collections/affiliates/records/"+fx.A.ID, fx.Superuser.Token, ""); rec.Code != 400 {
		t.Fatalf("delete an affiliate with figures: %d %s, want 400", rec.Code, rec.Body)
	}
	if _, err := app.FindRecordById(collections.Affiliates, fx.A.ID); err != nil {
		t.Fatalf("affiliate A is gone: %v", err)
	}
	rec := pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/records", "",
		`{"name":"Spam","email":"spam@fixture.test","password":"spam-password-1","passwordConfirm":"spam-password-1","program":"`+fx.ProgramP+`"}`)
	if rec.Code != 200 {
		t.Fatalf("sign-up: %d %s", rec.Code, rec.Body)
	}
	if rec := pbatest.Request(h, http.MethodDelete, "/api/collections/affiliates/records/"+rec.JSON["id"].(string), fx.Superuser.Token, ""); rec.Code != 204 {
		t.Fatalf("delete an affiliate without figures: %d %s, want 204", rec.Code, rec.Body)
	}
}
