package hooks_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// convEnv serves one test app and posts conversions to it.
type convEnv struct {
	*clickEnv
}

func newConvEnv(t *testing.T) *convEnv {
	return &convEnv{newClickEnv(t, fx.Config)}
}

// The conversion API (POST, JSON, an API key or a superuser) and the postback (GET, key in the query).
const (
	conversionsAPI = "/api/pba/conversions"
	postbackAPI    = "/api/pba/postback?"
)

func (c *convEnv) conversions() []*core.Record {
	c.t.Helper()
	rows, err := c.app.FindRecordsByFilter(collections.Conversions, "id != {:a} && id != {:b}", "created", 0, 0,
		map[string]any{"a": fx.RowsA.Conversion, "b": fx.RowsB.Conversion})
	if err != nil {
		c.t.Fatal(err)
	}
	return rows
}

// freshClick makes a real click on A's link and returns its id.
func (c *convEnv) freshClick(mutate ...func(*http.Request)) string {
	c.t.Helper()
	loc := c.get("/r/"+linkA, mutate...).Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil || u.Query().Get("pba_click") == "" {
		c.t.Fatalf("no click id in %q", loc)
	}
	return u.Query().Get("pba_click")
}

func bearer() string { return "Bearer " + fx.SecretP }

func TestConversionAPI(t *testing.T) {
	env := newConvEnv(t)
	click := env.freshClick()
	body := fmt.Sprintf(`{"click_id":%q,"external_id":"order-1","amount":4999,"currency":"usd","customer":"cus_1","metadata":{"plan":"pro"}}`, click)

	rec := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var created map[string]any
	json.Unmarshal(rec.Body.Bytes(), &created)
	if created["affiliate"] != fx.A.ID || created["click"] != click || created["status"] != "approved" || created["source"] != "api" {
		t.Fatalf("stored %v", created)
	}
	if meta, _ := created["metadata"].(map[string]any); meta["plan"] != "pro" || meta["attribution"].(map[string]any)["path"] != "click" {
		t.Fatalf("metadata must keep the sender's fields and the attribution path: %v", created["metadata"])
	}

	if rec := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), body); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), created["id"].(string)) {
		t.Fatalf("duplicate: %d %s, want 200 with the same record", rec.Code, rec.Body)
	}
	conflict := strings.Replace(body, "4999", "5000", 1)
	if rec := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), conflict); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `"external_id"`) {
		t.Fatalf("conflicting duplicate: %d %s", rec.Code, rec.Body)
	}
	if n := len(env.conversions()); n != 1 {
		t.Fatalf("%d conversions, want 1", n)
	}

	// The rollup counts the sale on the click's link.
	stats, err := env.app.FindFirstRecordByFilter(collections.StatsDaily, "affiliate = {:a} && link = {:l} && day = {:d}",
		map[string]any{"a": fx.A.ID, "l": env.linkID(linkA), "d": time.Now().UTC().Format(time.DateOnly)})
	if err != nil || stats.GetInt("conversions") != 2 || stats.GetInt("revenue") != 4999+10000 {
		// the fixture's row for A (1 conversion, 10000 revenue) shares today's key
		t.Fatalf("stats_daily: %v %v", stats, err)
	}
}

func TestConversionAPIValidation(t *testing.T) {
	env := newConvEnv(t)
	base := map[string]any{"affiliate_code": "affiliate-a", "external_id": "o-1", "amount": 100, "currency": "usd"}
	with := func(k string, v any) string {
		m := map[string]any{}
		for key, val := range base {
			m[key] = val
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := []struct {
		name, auth, body string
		status           int
		field            string
	}{
		{"no auth", "", with("amount", 100), 401, ""},
		{"wrong secret", "Bearer nope", with("amount", 100), 401, ""},
		{"affiliate token is not a sender", fx.A.Token, with("amount", 100), 401, ""},
		{"decimal amount", bearer(), with("amount", 19.99), 400, "amount"},
		{"zero amount", bearer(), with("amount", 0), 400, "amount"},
		{"negative amount", bearer(), with("amount", -5), 400, "amount"},
		{"absurd amount", bearer(), with("amount", int64(1e15)), 400, "amount"},
		{"missing amount", bearer(), with("amount", nil), 400, "amount"},
		{"unknown currency", bearer(), with("currency", "xyz"), 400, "currency"},
		{"another currency than the program's", bearer(), with("currency", "eur"), 400, "currency"},
		{"future sale", bearer(), with("occurred_at", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)), 400, "occurred_at"},
		{"malformed time", bearer(), with("occurred_at", "yesterday"), 400, "occurred_at"},
		{"missing external id", bearer(), with("external_id", nil), 400, "external_id"},
		{"metadata too large", bearer(), with("metadata", map[string]string{"x": strings.Repeat("a", 17<<10)}), 400, "metadata"},
		{"metadata not an object", bearer(), with("metadata", []int{1}), 400, "metadata"},
		{"bad status", bearer(), with("status", "paid"), 400, "status"},
		{"unknown field", bearer(), `{"ammount":1}`, 400, ""},
		{"nobody to credit", bearer(), with("affiliate_code", "nobody-here"), 422, "click_id"},
		{"pending affiliate", bearer(), with("affiliate_code", "pending-p"), 422, "click_id"},
		{"no attribution fields", bearer(), with("affiliate_code", nil), 400, "click_id"},
		{"a program secret cannot pick another program", bearer(), with("program", fx.ProgramQ), 400, "program"},
	}
	for _, tc := range cases {
		rec := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, tc.auth, tc.body)
		if rec.Code != tc.status || (tc.field != "" && !strings.Contains(rec.Body.String(), `"`+tc.field+`":{`)) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, rec.Code, rec.Body, tc.status, tc.field)
		}
	}
	if n := len(env.conversions()); n != 0 {
		t.Fatalf("refused requests stored %d conversions", n)
	}
	// A superuser may record for any program, chosen by slug.
	rec := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, fx.Superuser.Token, `{"program":"q","affiliate_code":"affiliate-a","external_id":"s-1","amount":100,"currency":"eur"}`)
	if rec.Code != 422 { // A belongs to P, not Q: nobody in Q to credit
		t.Fatalf("superuser into Q with P's affiliate: %d %s", rec.Code, rec.Body)
	}
	rec = pbatest.Request(env.handler, http.MethodPost, conversionsAPI, fx.Superuser.Token, `{"program":"default","affiliate_code":"affiliate-b","external_id":"s-1","amount":100,"currency":"usd"}`)
	if rec.Code != 201 || !strings.Contains(rec.Body.String(), fx.B.ID) {
		t.Fatalf("superuser: %d %s", rec.Code, rec.Body)
	}
}

func TestAttributionRules(t *testing.T) {
	env := newConvEnv(t)
	n := 0
	send := func(fields string) map[string]any {
		t.Helper()
		n++
		rec := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), fmt.Sprintf(`{"external_id":"attr-%d","amount":1000,"currency":"usd"%s}`, n, fields))
		var out map[string]any
		json.Unmarshal(rec.Body.Bytes(), &out)
		out["_code"] = rec.Code
		return out
	}

	// A flagged (bot) click is never credited: the affiliate code given alongside wins.
	bot := env.freshClick(func(r *http.Request) { r.Header.Set("User-Agent", "curl/8") })
	if out := send(fmt.Sprintf(`,"click_id":%q,"affiliate_code":"affiliate-b"`, bot)); out["affiliate"] != fx.B.ID {
		t.Fatalf("flagged click credited: %v", out)
	}
	if out := send(fmt.Sprintf(`,"click_id":%q`, bot)); out["_code"] != 422 {
		t.Fatalf("flagged click alone must be 422: %v", out)
	}
	// A click older than cookie_days does not count.
	old := env.freshClick()
	if _, err := env.app.DB().NewQuery("UPDATE clicks SET created = {:c} WHERE id = {:id}").
		Bind(map[string]any{"c": time.Now().AddDate(0, 0, -61).UTC().Format("2006-01-02 15:04:05.000Z"), "id": old}).Execute(); err != nil {
		t.Fatal(err)
	}
	if out := send(fmt.Sprintf(`,"click_id":%q`, old)); out["_code"] != 422 {
		t.Fatalf("expired click credited: %v", out)
	}
	// Coupons credit their affiliate.
	saveRecord(t, env.app, collections.Coupons, map[string]any{"code": "ada10", "affiliate": fx.A.ID, "program": fx.ProgramP, "active": true})
	if out := send(`,"coupon":"ADA10"`); out["affiliate"] != fx.A.ID || out["_code"] != 201 {
		t.Fatalf("coupon: %v", out)
	}
	// Self-referral: the customer is the affiliate.
	if out := send(`,"affiliate_code":"affiliate-a","customer_email":"A@Fixture.test"`); out["status"] != "rejected" || out["reason"] != "self_referral" {
		t.Fatalf("self referral: %v", out)
	}
	// First-click programs keep the visitor's first affiliate.
	env.save(collections.Programs, fx.ProgramP, map[string]any{"attribution": "first_click", "recurring": "lifetime"})
	first := env.freshClick(func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "pba_vid", Value: "visitor00000001"}) })
	resB := env.get("/r/affiliate-b-main", func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: "pba_vid", Value: "visitor00000001"})
		r.RemoteAddr = "198.51.100.9:1"
	})
	lastClick, _ := url.Parse(resB.Header.Get("Location"))
	out := send(fmt.Sprintf(`,"click_id":%q,"customer":"cus_sticky"`, lastClick.Query().Get("pba_click")))
	if out["affiliate"] != fx.A.ID || out["click"] != first {
		t.Fatalf("first_click: %v (first click %s)", out, first)
	}
	// Lifetime programs keep a returning customer with its first affiliate.
	if out := send(`,"customer":"cus_sticky"`); out["affiliate"] != fx.A.ID || out["_code"] != 201 {
		t.Fatalf("returning customer: %v", out)
	}
}

func TestPostback(t *testing.T) {
	env := newConvEnv(t)
	click := env.freshClick()
	q := func(extra string) string {
		return "key=" + url.QueryEscape(fx.SecretP) + "&click_id=" + click + "&currency=usd" + extra
	}
	if rec := pbatest.Request(env.handler, http.MethodGet, postbackAPI+q("&txid=pb-1&amount=19.99"), "", ""); rec.Code != 201 || !strings.Contains(rec.Body.String(), `"amount":1999`) ||
		!strings.Contains(rec.Body.String(), `"source":"postback"`) {
		t.Fatalf("postback: %d %s", rec.Code, rec.Body)
	}
	if rec := pbatest.Request(env.handler, http.MethodGet, postbackAPI+q("&txid=pb-1&amount=19.99"), "", ""); rec.Code != 200 {
		t.Fatalf("repeat postback: %d", rec.Code)
	}
	if rec := pbatest.Request(env.handler, http.MethodGet, postbackAPI+q("&txid=pb-2&amount=19.999"), "", ""); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"amount"`) {
		t.Fatalf("three decimals in usd: %d %s", rec.Code, rec.Body)
	}
	if rec := pbatest.Request(env.handler, http.MethodGet, postbackAPI+q("&txid=pb-3&amount=5&status=pending"), "", ""); rec.Code != 201 || !strings.Contains(rec.Body.String(), `"status":"pending"`) {
		t.Fatalf("pending postback: %d %s", rec.Code, rec.Body)
	}
	if rec := pbatest.Request(env.handler, http.MethodGet, postbackAPI+"key=wrong&click_id="+click+"&txid=pb-4&amount=1&currency=usd", "", ""); rec.Code != 401 {
		t.Fatalf("wrong key: %d", rec.Code)
	}
	if n := len(env.conversions()); n != 2 {
		t.Fatalf("%d conversions, want 2", n)
	}
	// JPY has no minor unit: "1000" is 1000 yen.
	jpy := saveRecord(t, env.app, collections.Programs, map[string]any{"name": "Yen", "destination": "https://example.jp/",
		"currency": "jpy", "commission_type": "percent", "active": true, "auto_approve": true})
	yenAffiliate := saveRecord(t, env.app, collections.Affiliates, map[string]any{"name": "Yen Seller", "email": "yen@fixture.test",
		"password": "password-123", "passwordConfirm": "password-123", "program": jpy.Id})
	saveRecord(t, env.app, collections.Coupons, map[string]any{"code": "yen", "affiliate": yenAffiliate.Id, "program": jpy.Id, "active": true})
	key := jpy.GetString("postback_secret")
	if rec := pbatest.Request(env.handler, http.MethodGet, postbackAPI+"key="+key+"&coupon=yen&txid=y-1&amount=1000&currency=jpy", "", ""); rec.Code != 201 ||
		!strings.Contains(rec.Body.String(), `"amount":1000`) || !strings.Contains(rec.Body.String(), yenAffiliate.Id) {
		t.Fatalf("yen postback: %d %s", rec.Code, rec.Body)
	}
	// A coupon can only credit an affiliate of its own program.
	col, _ := env.app.FindCollectionByNameOrId(collections.Coupons)
	bad := core.NewRecord(col)
	bad.Load(map[string]any{"code": "cross", "affiliate": fx.A.ID, "program": jpy.Id, "active": true})
	if err := env.app.Save(bad); err == nil || !strings.Contains(err.Error(), "affiliate") {
		t.Fatalf("a coupon of another program's affiliate was accepted: %v", err)
	}
	if rec := pbatest.Request(env.handler, http.MethodGet, postbackAPI+"key="+key+"&coupon=yen&txid=y-2&amount=1000.5&currency=jpy", "", ""); rec.Code != 400 {
		t.Fatalf("fractional yen: %d %s", rec.Code, rec.Body)
	}
}

// TestConcurrentDuplicates posts the same external_id 50 times at once: one conversion.
func TestConcurrentDuplicates(t *testing.T) {
	env := newConvEnv(t)
	body := `{"affiliate_code":"affiliate-a","external_id":"race-1","amount":2500,"currency":"usd"}`
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), body).Code
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[201] != 1 || count[200] != 49 {
		t.Fatalf("status counts %v, want one 201 and 49 200s", count)
	}
	if n := len(env.conversions()); n != 1 {
		t.Fatalf("%d conversions, want 1", n)
	}
}

func saveRecord(t *testing.T, app core.App, collection string, data map[string]any) *core.Record {
	t.Helper()
	col, err := app.FindCollectionByNameOrId(collection)
	if err != nil {
		t.Fatal(err)
	}
	r := core.NewRecord(col)
	r.Load(data)
	if err := app.Save(r); err != nil {
		t.Fatalf("save %s: %v", collection, err)
	}
	return r
}

// TestFirstClickAttribution follows one visitor over three clicks in a first_click program:
// the visitor id it gets is its first click's id; that click is credited while it qualifies,
// and once it does not (here: flagged), the visitor's earliest qualifying later click is.
func TestFirstClickAttribution(t *testing.T) {
	env := newConvEnv(t)
	env.save(collections.Programs, fx.ProgramP, map[string]any{"attribution": "first_click"})
	clickID := func(res *http.Response) string {
		t.Helper()
		u, err := url.Parse(res.Header.Get("Location"))
		if err != nil || u.Query().Get("pba_click") == "" {
			t.Fatalf("no click id in %q", res.Header.Get("Location"))
		}
		return u.Query().Get("pba_click")
	}
	first := env.get("/r/" + linkA)
	vid := cookie(first, "pba_vid")
	firstID := clickID(first)
	if vid == nil || vid.Value != firstID {
		t.Fatalf("new visitor's id %v, want its first click's id %s", vid, firstID)
	}
	returning := func(ip string) func(*http.Request) {
		return func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: "pba_vid", Value: vid.Value})
			r.RemoteAddr = ip + ":1"
		}
	}
	secondID := clickID(env.get("/r/"+linkA, returning("198.51.100.7")))
	lastID := clickID(env.get("/r/affiliate-b-main", returning("198.51.100.8")))

	n := 0
	credit := func() (affiliate, click string) {
		t.Helper()
		n++
		rec := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), fmt.Sprintf(`{"external_id":"first-%d","amount":1000,"currency":"usd","click_id":%q}`, n, lastID))
		var out map[string]any
		json.Unmarshal(rec.Body.Bytes(), &out)
		if rec.Code != http.StatusCreated {
			t.Fatalf("conversion: %d %s", rec.Code, rec.Body)
		}
		return fmt.Sprint(out["affiliate"]), fmt.Sprint(out["click"])
	}
	if aff, click := credit(); aff != fx.A.ID || click != firstID {
		t.Fatalf("credited %s by click %s, want A by the visitor's first click %s", aff, click, firstID)
	}
	if _, err := env.app.DB().NewQuery("UPDATE clicks SET flag = 'bot' WHERE id = {:id}").Bind(map[string]any{"id": firstID}).Execute(); err != nil {
		t.Fatal(err)
	}
	if aff, click := credit(); aff != fx.A.ID || click != secondID {
		t.Fatalf("credited %s by click %s, want A by the first unflagged click %s", aff, click, secondID)
	}
}
