package hooks_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
	"github.com/pocketbase/pocketbase/tools/subscriptions"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

const linkA = "affiliate-a-main" // the fixture's link of affiliate A (program P, example.com)

// clickEnv is one served test app and helpers to click through it.
type clickEnv struct {
	t       *testing.T
	app     *tests.TestApp
	handler http.Handler
}

func newClickEnv(t *testing.T, cfg hooks.Config) *clickEnv {
	t.Helper()
	app := fx.AppWith(t, cfg)
	env := &clickEnv{t: t, app: app, handler: pbatest.Serve(t, app)}
	t.Cleanup(app.Cleanup)
	return env
}

// get is a click: a desktop browser's GET from a public address, changed by mutate.
func (c *clickEnv) get(path string, mutate ...func(*http.Request)) *http.Response {
	browser := func(req *http.Request) {
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36")
		req.RemoteAddr = "203.0.113.7:5555"
	}
	return pbatest.Request(c.handler, http.MethodGet, path, "", "", append([]func(*http.Request){browser}, mutate...)...).Result()
}

func (c *clickEnv) clicks(filter string) []*core.Record {
	c.t.Helper()
	rows, err := c.app.FindRecordsByFilter(collections.Clicks, filter, "created", 0, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return rows
}

func (c *clickEnv) save(collection, id string, data map[string]any) {
	c.t.Helper()
	r, err := c.app.FindRecordById(collection, id)
	if err != nil {
		c.t.Fatal(err)
	}
	r.Load(data)
	if err := c.app.Save(r); err != nil {
		c.t.Fatal(err)
	}
}

func (c *clickEnv) linkID(code string) string {
	c.t.Helper()
	r, err := c.app.FindFirstRecordByData(collections.Links, collections.FieldCode, code)
	if err != nil {
		c.t.Fatal(err)
	}
	return r.Id
}

func cookie(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestRedirectDestination(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	env.save(collections.Links, env.linkID(linkA), map[string]any{"destination": "https://example.com/landing?utm_source=aff&x=a%20b#pricing"})

	cases := []struct {
		name, path, wantPrefix, wantSuffix string
	}{
		{"query merged, fragment kept", "/r/" + linkA, "https://example.com/landing?utm_source=aff&x=a%20b&pba_click=", "#pricing"},
		{"code is case-insensitive", "/r/AFFILIATE-A-MAIN", "https://example.com/landing?utm_source=aff&x=a%20b&pba_click=", "#pricing"},
		{"deep link on the allowed domain", "/r/" + linkA + "?to=" + url.QueryEscape("https://example.com/p/42?c=1"), "https://example.com/p/42?c=1&pba_click=", ""},
		{"deep link on a subdomain", "/r/" + linkA + "?to=" + url.QueryEscape("https://blog.example.com/"), "https://blog.example.com/?pba_click=", ""},
		{"affiliate code goes to the program destination", "/r/affiliate-a", "https://example.com/?pba_click=", ""},
	}
	for _, attack := range []string{
		"https://evil.test/", "//evil.test/", "/\\evil.test", "javascript:alert(1)", "JaVaScRiPt:alert(1)",
		"data:text/html,x", "https:%2F%2Fevil.test", "%68ttps://evil.test", "https://example.com@evil.test/",
		"https://evil.test#@example.com", "https://evil.test?@example.com", "https://example.com.evil.test/",
		"https://evil.test\\@example.com", "https://exаmple.com/", "http://[::1]/", "ftp://example.com/",
	} {
		cases = append(cases, struct{ name, path, wantPrefix, wantSuffix string }{
			"open redirect " + attack, "/r/" + linkA + "?to=" + url.QueryEscape(attack),
			"https://example.com/landing?utm_source=aff&x=a%20b&pba_click=", "#pricing",
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := env.get(tc.path)
			loc := res.Header.Get("Location")
			if res.StatusCode != http.StatusFound || !strings.HasPrefix(loc, tc.wantPrefix) || !strings.HasSuffix(loc, tc.wantSuffix) {
				t.Fatalf("got %d %q, want 302 to %q…%q", res.StatusCode, loc, tc.wantPrefix, tc.wantSuffix)
			}
			clickID := strings.TrimSuffix(strings.TrimPrefix(loc, tc.wantPrefix), tc.wantSuffix)
			if _, err := env.app.FindRecordById(collections.Clicks, clickID); err != nil {
				t.Fatalf("the click id %q in the redirect was not stored: %v", clickID, err)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Fatal("a redirect must not be cached: each visit is a click")
			}
		})
	}
}

func TestRedirectUnknownOrInactive(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	for _, path := range []string{"/r/no-such-code", "/r/x", "/r/" + strings.Repeat("a", 40), "/r/%00%0a"} {
		res := env.get(path)
		if res.StatusCode != http.StatusNotFound || !strings.Contains(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: got %d %s, want the 404 page", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	// Suspending A (cache invalidated by the record hook) stops crediting its links at once:
	// the visitor goes to the program's destination without a click (redirect_doors_test.go).
	uncredited := func(res *http.Response) bool {
		return res.StatusCode == http.StatusFound && res.Header.Get("Location") == "https://example.com/" && cookie(res, hooks.ClickCookie) == nil
	}
	if res := env.get("/r/" + linkA); res.StatusCode != http.StatusFound || uncredited(res) {
		t.Fatalf("before suspension: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	env.save(collections.Affiliates, fx.A.ID, map[string]any{"status": collections.AffiliateSuspended})
	if res := env.get("/r/" + linkA); !uncredited(res) {
		t.Fatalf("suspended affiliate's link: %d %q, want an uncredited 302", res.StatusCode, res.Header.Get("Location"))
	}
	env.save(collections.Affiliates, fx.A.ID, map[string]any{"status": collections.AffiliateApproved})
	env.save(collections.Programs, fx.ProgramP, map[string]any{"active": false})
	if res := env.get("/r/affiliate-b"); !uncredited(res) {
		t.Fatalf("inactive program: %d %q, want an uncredited 302", res.StatusCode, res.Header.Get("Location"))
	}
	if n := len(env.clicks("")); n != 3 {
		t.Fatalf("clicks stored = %d, want the fixture's 2 plus the 1 credited redirect", n)
	}
}

func TestRedirectCacheFollowsLinkChanges(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	if loc := env.get("/r/" + linkA).Header.Get("Location"); !strings.HasPrefix(loc, "https://example.com/?") {
		t.Fatalf("first: %q", loc)
	}
	env.save(collections.Links, env.linkID(linkA), map[string]any{"destination": "https://shop.example.com/new"})
	if loc := env.get("/r/" + linkA).Header.Get("Location"); !strings.HasPrefix(loc, "https://shop.example.com/new?") {
		t.Fatalf("after the link changed: %q", loc)
	}
}

func TestClickCookies(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	res := env.get("/r/" + linkA)
	c := cookie(res, hooks.ClickCookie)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 60*86400 || c.Secure || c.Path != "/" {
		t.Fatalf("pba_click over plain HTTP: %+v", c)
	}
	if !strings.Contains(res.Header.Get("Location"), "pba_click="+c.Value) {
		t.Fatal("the cookie and the redirect must carry the same click id")
	}
	res = env.get("/r/"+linkA, func(r *http.Request) { r.TLS = &tls.ConnectionState{} })
	if c := cookie(res, hooks.ClickCookie); c == nil || !c.Secure {
		t.Fatalf("pba_click over TLS must be Secure: %+v", c)
	}
	// TLS ending at a proxy: its X-Forwarded-Proto counts only once the settings trust a proxy
	// (anyone could send the header to a server reached directly).
	forwarded := func(proto string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("X-Forwarded-Proto", proto)
			r.Header.Set("X-Forwarded-For", "198.51.100.9")
		}
	}
	newVisitor := func(r *http.Request) { r.Header.Del("Cookie") }
	if c := cookie(env.get("/r/"+linkA, forwarded("https")), hooks.ClickCookie); c == nil || c.Secure {
		t.Fatalf("pba_click with an untrusted X-Forwarded-Proto: %+v", c)
	}
	settings := env.app.Settings()
	settings.TrustedProxy.Headers = []string{"X-Forwarded-For"}
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	res = env.get("/r/"+linkA, forwarded("https"), newVisitor)
	for _, name := range []string{hooks.ClickCookie, hooks.VisitorCookie} {
		if c := cookie(res, name); c == nil || !c.Secure {
			t.Fatalf("%s over HTTPS behind a trusted proxy must be Secure: %+v", name, c)
		}
	}
	if c := cookie(env.get("/r/"+linkA, forwarded("http")), hooks.ClickCookie); c == nil || c.Secure {
		t.Fatalf("pba_click over HTTP behind a trusted proxy: %+v", c)
	}
	settings.TrustedProxy.Headers = nil
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	// Program Q sets its own cookie length.
	env.save(collections.Programs, fx.ProgramP, map[string]any{"cookie_days": 7})
	if c := cookie(env.get("/r/"+linkA), hooks.ClickCookie); c == nil || c.MaxAge != 7*86400 {
		t.Fatalf("cookie_days 7: %+v", c)
	}
}

func TestClickAttributesUniqueAndFlags(t *testing.T) {
	env := newClickEnv(t, hooks.Config{IPSalt: "test-salt", ClickRateLimit: 3, CountryHeader: "CF-IPCountry", BotUserAgents: []string{"acmeprobe"}})
	link := env.linkID(linkA)

	// Each click carries its position in sub (the first also a real sub) to read them back in order.
	n := 0
	click := func(mutate ...func(*http.Request)) *http.Response {
		n++
		path := "/r/" + linkA + "?sub=" + map[bool]string{true: "spring", false: strconv.Itoa(n)}[n == 1]
		return env.get(path, mutate...)
	}
	first := click(func(r *http.Request) {
		r.Header.Set("Referer", "https://blog.test/post")
		r.Header.Set("CF-IPCountry", "de")
	})
	vid := cookie(first, hooks.VisitorCookie)
	if vid == nil {
		t.Fatal("a new visitor gets a pba_vid cookie")
	}
	withVisitor := func(r *http.Request) { r.AddCookie(&http.Cookie{Name: hooks.VisitorCookie, Value: vid.Value}) }
	click(withVisitor) // same visitor again: not unique
	click(func(r *http.Request) { r.Header.Set("User-Agent", "curl/8.0") })
	click(func(r *http.Request) { r.Header.Set("User-Agent", "Mozilla/5.0 AcmeProbe/1") })
	click(func(r *http.Request) { r.Header.Set("Authorization", fx.A.Token) })
	click(func(r *http.Request) { r.AddCookie(&http.Cookie{Name: hooks.SelfCookie, Value: fx.A.ID}) })
	// Bot and self clicks are flagged before the rate check; the third human click from this
	// IP within the minute is still fine, the fourth and fifth are over the limit of 3.
	click(withVisitor)
	click(withVisitor)
	click(withVisitor)

	rows := env.clicks("link = '" + link + "' && visitor != 'v-" + fx.A.ID + "'")
	if len(rows) != 9 {
		t.Fatalf("stored %d clicks, want 9 (one per answered redirect)", len(rows))
	}
	sort.Slice(rows, func(i, j int) bool { return position(rows[i]) < position(rows[j]) })
	got := func(i int) string {
		r := rows[i]
		return r.GetString("flag") + "/" + map[bool]string{true: "unique", false: "repeat"}[r.GetBool("unique")]
	}
	want := []string{"/unique", "/repeat", "bot/repeat", "bot/repeat", "self/repeat", "self/repeat", "/repeat", "rate/repeat", "rate/repeat"}
	for i := range want {
		if got(i) != want[i] {
			t.Errorf("click %d: %s, want %s", i, got(i), want[i])
		}
	}
	r0 := rows[0]
	if r0.GetString("sub_id") != "spring" || r0.GetString("referrer") != "https://blog.test/post" || r0.GetString("country") != "DE" {
		t.Errorf("attributes not stored: sub=%q ref=%q country=%q", r0.GetString("sub_id"), r0.GetString("referrer"), r0.GetString("country"))
	}
	if h := r0.GetString("ip_hash"); len(h) != 32 || strings.Contains(h, "203.0.113.7") {
		t.Errorf("ip_hash %q must be a 32-character HMAC, never the IP", h)
	}
	for _, r := range rows {
		for _, field := range []string{"ip_hash", "user_agent", "referrer", "visitor"} {
			if strings.Contains(r.GetString(field), "203.0.113.7") {
				t.Fatalf("the raw IP leaked into %s", field)
			}
		}
	}
	// stats_daily counts exactly the unflagged clicks.
	assertStatsMatchClicks(t, env.app)
}

func position(r *core.Record) int {
	if r.GetString("sub_id") == "spring" {
		return 1
	}
	n, _ := strconv.Atoi(r.GetString("sub_id"))
	return n
}

// assertStatsMatchClicks checks the rollup invariant: per (day, affiliate, program, link),
// stats_daily.clicks/unique_clicks equal the unflagged raw clicks written by the writer.
func assertStatsMatchClicks(t *testing.T, app core.App) {
	t.Helper()
	var mismatches []struct {
		Day, Link string
		Stats     int `db:"s"`
		Raw       int `db:"r"`
		SU        int `db:"su"`
		RU        int `db:"ru"`
	}
	err := app.DB().NewQuery(`
		SELECT s.day AS day, s.link AS link, s.clicks AS s, IFNULL(c.n, 0) AS r, s.unique_clicks AS su, IFNULL(c.u, 0) AS ru
		FROM stats_daily s LEFT JOIN (
			SELECT substr(created, 1, 10) AS day, affiliate, program, link, COUNT(*) AS n, SUM([[unique]]) AS u
			FROM clicks WHERE flag = '' AND visitor NOT LIKE 'v-%' GROUP BY 1, 2, 3, 4
		) c ON c.day = s.day AND c.affiliate = s.affiliate AND c.program = s.program AND c.link = s.link
		WHERE s.id NOT IN ({:a}, {:b}) AND (s.clicks != IFNULL(c.n, 0) OR s.unique_clicks != IFNULL(c.u, 0))`).
		Bind(map[string]any{"a": fx.RowsA.Stats, "b": fx.RowsB.Stats}).All(&mismatches)
	if err != nil {
		t.Fatal(err)
	}
	if len(mismatches) > 0 {
		t.Fatalf("stats_daily differs from the raw clicks: %+v", mismatches)
	}
}

func TestTrackClickAPI(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	post := func(body string) *pbatest.Response {
		return pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", body,
			pbatest.Header("Origin", "https://shop.example.com"), pbatest.Header("User-Agent", "Mozilla/5.0 Chrome/120"))
	}
	rec := post(`{"code":"affiliate-a","sub":"nl","referrer":"https://news.test/"}`)
	var out struct {
		ClickID    string `json:"click_id"`
		Visitor    string `json:"visitor"`
		CookieDays int    `json:"cookie_days"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || out.ClickID == "" || out.CookieDays != 60 {
		t.Fatalf("track: %d %s", rec.Code, rec.Body)
	}
	click, err := env.app.FindRecordById(collections.Clicks, out.ClickID)
	if err != nil || click.GetString("affiliate") != fx.A.ID || click.GetString("sub_id") != "nl" || click.GetString("link") != "" {
		t.Fatalf("stored click: %v %v", click, err)
	}
	// The returned visitor id keeps the next click of this browser from counting as unique.
	rec = post(`{"code":"affiliate-a","visitor":"` + out.Visitor + `"}`)
	json.Unmarshal(rec.Body.Bytes(), &out)
	if c, _ := env.app.FindRecordById(collections.Clicks, out.ClickID); c == nil || c.GetBool("unique") {
		t.Fatalf("repeat visitor counted unique: %v", c)
	}
	// An inactive code answers 200 without a click id (redirect_doors_test.go).
	for body, want := range map[string]int{`{"code":"nope-nope"}`: 404, `not json`: 400} {
		if rec := post(body); rec.Code != want || !strings.Contains(rec.Body.String(), `"message"`) {
			t.Fatalf("%s: %d %s, want %d with a JSON message", body, rec.Code, rec.Body, want)
		}
	}
}

// TestLiveCountersReachOnlyEntitledSubscribers: pba/live has no rule of its own; the hub
// sends a superuser everything, an affiliate only its own deltas, a guest nothing.
func TestLiveCountersReachOnlyEntitledSubscribers(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	subscribers := map[string]subscriptions.Client{}
	for name, auth := range map[string]*core.Record{
		"A": mustFind(t, env.app, collections.Affiliates, fx.A.ID), "B": mustFind(t, env.app, collections.Affiliates, fx.B.ID),
		"superuser": mustFindEmail(t, env.app, core.CollectionNameSuperusers, fx.Superuser.Email), "guest": nil,
	} {
		c := subscriptions.NewDefaultClient()
		if auth != nil {
			c.Set(apis.RealtimeClientAuthKey, auth)
		}
		c.Subscribe(hooks.LiveTopic)
		env.app.SubscriptionsBroker().Register(c)
		subscribers[name] = c
	}
	for i := 0; i < 3; i++ {
		env.get("/r/" + linkA)
	}
	want := map[string]bool{"A": true, "superuser": true, "B": false, "guest": false}
	deadline := time.After(2 * time.Second)
	var mu sync.Mutex
	got := map[string]string{}
	for name, c := range subscribers {
		go func() {
			for msg := range c.Channel() {
				mu.Lock()
				got[name] += string(msg.Data)
				mu.Unlock()
			}
		}()
	}
	<-deadline
	mu.Lock()
	defer mu.Unlock()
	for name, should := range want {
		// The clicks may fall in more than one flush (250 ms each): sum A's over the messages.
		clicksOfA := 0
		for dec := json.NewDecoder(strings.NewReader(got[name])); dec.More(); {
			var msg struct {
				Affiliates map[string]struct{ Clicks int } `json:"affiliates"`
			}
			if err := dec.Decode(&msg); err != nil {
				t.Fatalf("%s: %v in %q", name, err, got[name])
			}
			clicksOfA += msg.Affiliates[fx.A.ID].Clicks
		}
		if should && clicksOfA != 3 {
			t.Errorf("%s should have received A's 3 clicks, got %q", name, got[name])
		}
		if !should && got[name] != "" {
			t.Errorf("%s must receive nothing, got %q", name, got[name])
		}
	}
	if strings.Contains(got["A"], fx.B.ID) {
		t.Error("A received B's counters")
	}
}

// TestLiveCountersPerCurrency: a dollar sale and a euro sale reach a superuser's pba/live as
// money per currency (each affiliate's program's), never summed into one amount; the counts
// add up across currencies.
func TestLiveCountersPerCurrency(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	euro, err := pbatest.Save(env.app, collections.Affiliates, map[string]any{"name": "Euro E", "email": "euro@fixture.test",
		"password": pbatest.Password, "program": fx.ProgramQ, "status": collections.AffiliateApproved})
	if err != nil {
		t.Fatal(err)
	}
	su := subscriptions.NewDefaultClient()
	su.Set(apis.RealtimeClientAuthKey, mustFindEmail(t, env.app, core.CollectionNameSuperusers, fx.Superuser.Email))
	su.Subscribe(hooks.LiveTopic)
	env.app.SubscriptionsBroker().Register(su)
	for _, sale := range []string{
		`{"affiliate_code":"` + mustFind(t, env.app, collections.Affiliates, fx.A.ID).GetString(collections.FieldCode) + `","external_id":"live-usd","amount":1000,"currency":"usd"}`,
		`{"affiliate_code":"` + euro.GetString(collections.FieldCode) + `","external_id":"live-eur","amount":4200,"currency":"eur"}`,
	} {
		if res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/conversions", fx.Superuser.Token, sale); res.Code != http.StatusCreated {
			t.Fatalf("sale %s: %d %s", sale, res.Code, res.Body)
		}
	}
	type counters struct{ Clicks, Conversions, Revenue int64 }
	currencies, conversions := map[string]counters{}, int64(0)
	deadline := time.After(5 * time.Second)
	for currencies["usd"].Revenue != 1000 || currencies["eur"].Revenue != 4200 || conversions != 2 {
		select {
		case msg := <-su.Channel():
			var m struct {
				Currencies map[string]counters `json:"currencies"`
				Totals     map[string]int64    `json:"totals"`
			}
			if err := json.Unmarshal(msg.Data, &m); err != nil {
				t.Fatal(err)
			}
			if _, ok := m.Totals["revenue"]; ok {
				t.Fatalf("totals sum money across currencies: %s", msg.Data)
			}
			for c, d := range m.Currencies {
				sum := currencies[c]
				sum.Conversions += d.Conversions
				sum.Revenue += d.Revenue
				currencies[c] = sum
			}
			conversions += m.Totals["conversions"]
		case <-deadline:
			t.Fatalf("pba/live per currency %+v, %d sales in the totals; want usd 1000 and eur 4200 in 2 sales", currencies, conversions)
		}
	}
	if currencies["usd"].Conversions != 1 || currencies["eur"].Conversions != 1 || len(currencies) != 2 {
		t.Fatalf("pba/live per currency %+v", currencies)
	}
}

func mustFind(t *testing.T, app core.App, collection, id string) *core.Record {
	t.Helper()
	r, err := app.FindRecordById(collection, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustFindEmail(t *testing.T, app core.App, collection, email string) *core.Record {
	t.Helper()
	r, err := app.FindAuthRecordByEmail(collection, email)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestUniqueSurvivesRestartAndOutsideWrites: the unique window is loaded from the last 24 h
// of clicks when the server starts, and follows clicks created, changed or deleted outside
// the click writer, so "unique" means the same as a database lookup would.
func TestUniqueSurvivesRestartAndOutsideWrites(t *testing.T) {
	app := fx.AppWith(t, hooks.Config{IPSalt: "test-salt", ClickRateLimit: 1000})
	t.Cleanup(app.Cleanup)
	link, err := app.FindFirstRecordByData(collections.Links, collections.FieldCode, linkA)
	if err != nil {
		t.Fatal(err)
	}
	// Clicks stored before the server starts (raw rows, as the click writer leaves them).
	insert := func(visitor string, created time.Time, flag string) {
		t.Helper()
		_, err := app.DB().NewQuery(`INSERT INTO clicks (id, link, affiliate, program, visitor, flag, created)
			VALUES ({:id}, {:link}, {:aff}, {:prog}, {:visitor}, {:flag}, {:created})`).Bind(map[string]any{
			"id": "c" + visitor[1:], "link": link.Id, "aff": fx.A.ID, "prog": link.GetString("program"), "visitor": visitor,
			"flag": flag, "created": created.UTC().Format("2006-01-02 15:04:05.000Z"),
		}).Execute()
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	insert("recentvisitor01", now.Add(-23*time.Hour), "")
	insert("stalevisitor001", now.Add(-25*time.Hour), "")
	insert("flaggedvisitor1", now.Add(-time.Hour), "bot")
	env := &clickEnv{t: t, app: app, handler: pbatest.Serve(t, app)}

	clickAs := func(visitor string) bool {
		t.Helper()
		res := env.get("/r/"+linkA, func(r *http.Request) { r.AddCookie(&http.Cookie{Name: hooks.VisitorCookie, Value: visitor}) })
		id := cookie(res, hooks.ClickCookie)
		if res.StatusCode != http.StatusFound || id == nil {
			t.Fatalf("click as %s: %d", visitor, res.StatusCode)
		}
		r, err := app.FindRecordById(collections.Clicks, id.Value)
		if err != nil {
			t.Fatal(err)
		}
		return r.GetBool("unique")
	}
	for visitor, want := range map[string]bool{"recentvisitor01": false, "stalevisitor001": true, "flaggedvisitor1": true} {
		if got := clickAs(visitor); got != want {
			t.Errorf("after restart, %s: unique=%v, want %v", visitor, got, want)
		}
	}

	// A click created through the records API counts for the next one.
	col, err := app.FindCollectionByNameOrId(collections.Clicks)
	if err != nil {
		t.Fatal(err)
	}
	saved := core.NewRecord(col)
	saved.Load(map[string]any{"link": link.Id, "affiliate": fx.A.ID, "program": link.GetString("program"), "visitor": "apivisitor00001"})
	if err := app.Save(saved); err != nil {
		t.Fatal(err)
	}
	if clickAs("apivisitor00001") {
		t.Error("a click saved through the API must make the next one a repeat")
	}
	// Deleting or flagging a visitor's clicks makes its next click unique again.
	for _, r := range env.clicks("visitor = 'apivisitor00001'") {
		if err := app.Delete(r); err != nil {
			t.Fatal(err)
		}
	}
	if !clickAs("apivisitor00001") {
		t.Error("after its clicks were deleted, the visitor's click is unique")
	}
	for _, r := range env.clicks("visitor = 'apivisitor00001'") {
		r.Set("flag", "bot")
		if err := app.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	if !clickAs("apivisitor00001") {
		t.Error("after its clicks were flagged, the visitor's click is unique")
	}
	if clickAs("apivisitor00001") {
		t.Error("the click right after is a repeat")
	}
}

// TestRedirectServedAheadOfRouter covers the direct /r/ path: plain link clicks skip the
// router (no router-only headers), while a request with an auth token, a request an admin's
// rate-limit rule covers, and a path that is not /r/{code} still go through it.
func TestRedirectServedAheadOfRouter(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	viaRouter := func(res *http.Response) bool { return res.Header.Get("X-Xss-Protection") != "" }

	res := env.get("/r/" + linkA)
	if res.StatusCode != http.StatusFound || viaRouter(res) {
		t.Fatalf("plain click: %d, via router %v; want a 302 from the direct path", res.StatusCode, viaRouter(res))
	}
	if res := env.get("/r/no-such-code"); res.StatusCode != http.StatusNotFound || res.Header.Get("X-Frame-Options") == "" {
		t.Fatalf("unknown code: %d %v; want the 404 page with its security headers", res.StatusCode, res.Header)
	}
	if res := env.get("/r/"+linkA, func(r *http.Request) { r.Header.Set("Authorization", fx.A.Token) }); res.StatusCode != http.StatusFound || !viaRouter(res) {
		t.Fatalf("click with an auth token: %d, via router %v; want the router (its auth flags self clicks)", res.StatusCode, viaRouter(res))
	}
	if res := env.get("/r/" + linkA + "/extra"); res.StatusCode != http.StatusNotFound || !strings.Contains(res.Header.Get("Content-Type"), "json") {
		t.Fatalf("/r/{code}/extra: %d %s; want the router's JSON 404", res.StatusCode, res.Header.Get("Content-Type"))
	}

	// An admin's rate-limit rule on /r/ is enforced: such requests go through the router.
	settings := env.app.Settings()
	settings.RateLimits.Enabled = true
	settings.RateLimits.Rules = []core.RateLimitRule{{Label: "/r/", MaxRequests: 2, Duration: 60}}
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	before := len(env.clicks(""))
	var statuses []int
	for range 3 {
		statuses = append(statuses, env.get("/r/"+linkA).StatusCode)
	}
	if statuses[0] != http.StatusFound || statuses[1] != http.StatusFound || statuses[2] != http.StatusTooManyRequests {
		t.Fatalf("with a rule of 2 per minute: %v, want 302 302 429", statuses)
	}
	if got := len(env.clicks("")) - before; got != 2 {
		t.Fatalf("%d clicks stored, want the 2 answered", got)
	}
}

// TestRedirectBackPressure: while the writer cannot commit, clicks wait in a bounded queue;
// past it a visitor waits at most the enqueue timeout and gets a 503 to retry, with no cookie
// and no redirect, and nothing is stored for it. The waiting clicks are answered once the
// writer gets the database back.
func TestRedirectBackPressure(t *testing.T) {
	env := newClickEnv(t, hooks.Config{ClickQueueSize: 1, ClickBatchSize: 1, ClickEnqueueTimeout: 50 * time.Millisecond})
	before := len(env.clicks(""))
	// Hold the app's only writer connection: the writer blocks on its first click.
	hold, err := env.app.NonconcurrentDB().(*dbx.DB).Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hold.Rollback() }) // before the app's cleanup drains the writer
	answered := make(chan int, 2)
	for range 2 { // the first is taken by the blocked writer, the second fills the queue
		go func() { answered <- env.get("/r/" + linkA).StatusCode }()
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	res := env.get("/r/" + linkA)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("click past a full queue: %d (Retry-After %q), want 503 to retry", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if waited := time.Since(start); waited < 40*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("refused after %v, want about the 50ms enqueue timeout", waited)
	}
	if res.Header.Get("Location") != "" || len(res.Header.Values("Set-Cookie")) != 0 {
		t.Fatalf("a refused click must not redirect or set cookies: %v", res.Header)
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if code := <-answered; code != http.StatusFound {
			t.Fatalf("queued click answered %d, want 302 once the writer could commit", code)
		}
	}
	if got := len(env.clicks("")) - before; got != 2 {
		t.Fatalf("%d clicks stored, want the 2 answered ones", got)
	}
}
