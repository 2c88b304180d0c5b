package hooks_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// namesField reports whether a 400 names field in its data, as PocketBase's errors do.
func namesField(res *pbatest.Response, field string) bool {
	data, _ := res.JSON["data"].(map[string]any)
	_, ok := data[field]
	return res.Code == http.StatusBadRequest && ok
}

// The conversions API takes exactly one JSON object of the documented fields, integers as
// JSON integers, and text without control or bidirectional formatting characters; each refusal
// is a 400 naming the field, and nothing is stored.
func TestConversionAPIStrictInput(t *testing.T) {
	env := newConvEnv(t)
	const good = `{"affiliate_code":"affiliate-a","external_id":"strict-1","amount":1999,"currency":"usd"}`
	with := func(field, raw string) string { // good with field set to the raw JSON value
		return strings.TrimSuffix(good, "}") + `,"` + field + `":` + raw + "}"
	}
	for _, c := range []struct{ name, body, field string }{
		{"a second object after the body", good + `{"amount":1}`, "body"},
		{"garbage after the body", good + ` garbage`, "body"},
		{"amount as a string", strings.Replace(good, `1999`, `"1999"`, 1), "amount"},
		{"amount as a decimal", strings.Replace(good, `1999`, `19.99`, 1), "amount"},
		{"amount in exponent form", strings.Replace(good, `1999`, `2e3`, 1), "amount"},
		{"external_id as a number", strings.Replace(good, `"strict-1"`, `5`, 1), "external_id"},
		{"unknown field", with("ammount", "1"), "ammount"},
		{"not JSON", `amount=1999`, "body"},
		{"NUL in external_id", strings.Replace(good, `strict-1`, `strict\u00001`, 1), "external_id"},
		{"right-to-left override in customer", with("customer", `"cus\u202Eexe.jpg"`), "customer"},
		{"bidi isolate in customer_email", with("customer_email", `"a\u2066@b.test"`), "customer_email"},
		{"line break in affiliate_code", strings.Replace(good, `affiliate-a`, `affiliate\n-a`, 1), "affiliate_code"},
		{"escape in coupon", with("coupon", `"x\u001b[31m"`), "coupon"},
		{"control character in click_id", with("click_id", `"c\u0007"`), "click_id"},
		{"control character in subscription_id", with("subscription_id", `"sub\u0000"`), "subscription_id"},
	} {
		if res := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), c.body); !namesField(res, c.field) {
			t.Errorf("%s: %d %s, want 400 naming %q", c.name, res.Code, res.Body, c.field)
		}
	}
	if n := len(env.conversions()); n != 0 {
		t.Fatalf("refused bodies stored %d conversions", n)
	}
	// Whitespace after the object is no data; letters of any script are text.
	ok := with("customer", `"Zoë 李 عربي"`) + "\n"
	if res := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), ok); res.Code != http.StatusCreated {
		t.Fatalf("a good body with a trailing newline: %d %s", res.Code, res.Body)
	}

	// The update form: one object too, and a reason without control characters.
	for _, c := range []struct{ name, body, field string }{
		{"a second object", `{"status":"rejected"}{"status":"approved"}`, "body"},
		{"refund as a string", `{"refunded_amount":"100"}`, "refunded_amount"},
		{"right-to-left override in reason", `{"status":"rejected","reason":"fraud\u202E"}`, "reason"},
	} {
		if res := pbatest.Request(env.handler, http.MethodPost, updatesAPI("api", "strict-1"), bearer(), c.body); !namesField(res, c.field) {
			t.Errorf("update form, %s: %d %s, want 400 naming %q", c.name, res.Code, res.Body, c.field)
		}
	}
}

// The clicks API is as strict; a /r/ visitor whose link carries an unsafe sub is still sent
// on and counted, with the link's own sub id instead.
func TestClicksStrictInput(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	for _, c := range []struct{ name, body, field string }{
		{"a second object", `{"code":"` + linkA + `"}{"code":"x"}`, "body"},
		{"sub with a right-to-left override", `{"code":"` + linkA + `","sub":"spring\u202Eelas"}`, "sub"},
		{"sub with NUL", `{"code":"` + linkA + `","sub":"a\u0000"}`, "sub"},
		{"code as a number", `{"code":5}`, "code"},
	} {
		if res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", c.body); !namesField(res, c.field) {
			t.Errorf("%s: %d %s, want 400 naming %q", c.name, res.Code, res.Body, c.field)
		}
	}
	before := len(env.clicks(""))
	res := env.get("/r/" + linkA + "?sub=" + url.QueryEscape("spring\u202Eelas"))
	if res.StatusCode != http.StatusFound {
		t.Fatalf("/r/ with an unsafe sub: %d, want the visitor sent on", res.StatusCode)
	}
	clicks := env.clicks("")
	if len(clicks) != before+1 || strings.Contains(clicks[len(clicks)-1].GetString("sub_id"), "\u202E") {
		t.Fatalf("click stored %d, sub_id %q", len(clicks)-before, clicks[len(clicks)-1].GetString("sub_id"))
	}
}

// Names, labels, sub ids, notes and the other fields people type refuse control and
// bidirectional formatting characters through the records API, whoever writes them.
func TestRecordsRefuseControlCharacters(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	link := func(field, value string) string {
		return fmt.Sprintf(`{"affiliate":%q,"program":%q,"destination":"https://example.com/x",%q:%q}`, fx.A.ID, fx.ProgramP, field, value)
	}
	for _, c := range []struct {
		name, method, path, token, body, field string
	}{
		{"signup name with U+202E", http.MethodPost, "/api/collections/affiliates/records", "",
			`{"email":"rtl@abuse.test","password":"long-password-1","passwordConfirm":"long-password-1","name":"Ada\u202Enimda"}`, "name"},
		{"profile name with NUL", http.MethodPatch, "/api/collections/affiliates/records/" + fx.A.ID, fx.A.Token, `{"name":"A\u0000"}`, "name"},
		{"link label with a bidi isolate", http.MethodPost, "/api/collections/links/records", fx.A.Token, link("label", "sale\u2067"), "label"},
		{"link sub_id with a line break", http.MethodPost, "/api/collections/links/records", fx.A.Token, link("sub_id", "a\nb"), "sub_id"},
		{"link label edited with an escape", http.MethodPatch, "/api/collections/links/records/" + fx.RowsA.Link, fx.A.Token, `{"label":"\u001b[2J"}`, "label"},
		{"program name (superuser)", http.MethodPatch, "/api/collections/programs/records/" + fx.ProgramP, fx.Superuser.Token, `{"name":"P\u202E"}`, "name"},
		{"affiliate notes (superuser)", http.MethodPatch, "/api/collections/affiliates/records/" + fx.B.ID, fx.Superuser.Token, `{"notes":"ok\n\u202Ebad"}`, "notes"},
	} {
		if res := pbatest.Request(env.handler, c.method, c.path, c.token, c.body); !namesField(res, c.field) {
			t.Errorf("%s: %d %s, want 400 naming %q", c.name, res.Code, res.Body, c.field)
		}
	}
	if a, _ := env.app.FindRecordById(collections.Affiliates, fx.A.ID); a.GetString("name") != "Affiliate A" {
		t.Fatalf("a refused profile changed the name to %q", a.GetString("name"))
	}
	// Multi-line notes keep their line breaks; names of any script pass.
	for _, c := range []struct{ path, token, body string }{
		{"/api/collections/affiliates/records/" + fx.B.ID, fx.Superuser.Token, `{"notes":"line one\nline two\ttabbed"}`},
		{"/api/collections/affiliates/records/" + fx.A.ID, fx.A.Token, `{"name":"Zoë O’Brien 李"}`},
	} {
		if res := pbatest.Request(env.handler, http.MethodPatch, c.path, c.token, c.body); res.Code != http.StatusOK {
			t.Errorf("%s: %d %s, want 200", c.body, res.Code, res.Body)
		}
	}
}

// Secrets in a URL (the postback key, the unsubscribe token) never reach the request log,
// whatever the answer: a success, a 401, an error; nor through the Referer header.
func TestSecretsNotInRequestLog(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	settings := env.app.Settings()
	settings.Logs.MaxDays = 7 // the test app keeps no request log; a server does (5 days by default)
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	const wrongKey = "wrong-key-0123456789"
	requests := []func() int{
		func() int {
			return pbatest.Request(env.handler, http.MethodGet, "/api/pba/postback?txid=log-1&key="+url.QueryEscape(fx.SecretP)+"&amount=5.00&currency=usd&affiliate_code=affiliate-a", "", "").Code
		},
		func() int {
			return pbatest.Request(env.handler, http.MethodGet, "/api/pba/postback?key="+wrongKey+"&txid=log-2", "", "").Code
		},
		func() int {
			return pbatest.Request(env.handler, http.MethodGet, "/api/pba/unsubscribe?token=secret-token-value", "", "").Code
		},
		func() int {
			return pbatest.Request(env.handler, http.MethodGet, "/api/health", "", "",
				pbatest.Header("Referer", "https://partners.example.com/api/pba/unsubscribe?token=referer-token-value&x=1")).Code
		},
	}
	for i, want := range []int{http.StatusCreated, http.StatusUnauthorized, http.StatusBadRequest, http.StatusOK} {
		if got := requests[i](); got != want {
			t.Fatalf("request %d: %d, want %d", i, got, want)
		}
	}
	// PocketBase writes its request log in batches (every 3 s of quiet): wait for the four.
	var logs []string
	for deadline := time.Now().Add(30 * time.Second); len(logs) < len(requests); {
		if time.Now().After(deadline) {
			t.Fatalf("%d request log rows after 30 s: %v", len(logs), logs)
		}
		time.Sleep(100 * time.Millisecond)
		logs = nil
		err := env.app.AuxDB().Select("data").From("_logs").Where(dbx.Like("data", "/api/")).Column(&logs)
		if err != nil {
			t.Fatal(err)
		}
	}
	all := strings.Join(logs, "\n")
	for _, secret := range []string{fx.SecretP, wrongKey, "secret-token-value", "referer-token-value"} {
		if strings.Contains(all, secret) {
			t.Errorf("the request log holds %q:\n%s", secret, all)
		}
	}
	for _, want := range []string{"key=REDACTED", "token=REDACTED", "txid=log-1", "x=1"} {
		if !strings.Contains(all, want) {
			t.Errorf("the request log lacks %q (the rest of the request stays):\n%s", want, all)
		}
	}
}

// PocketBase's default users collection, used by nothing, takes no signups and no sign-ins.
func TestUsersCollectionLocked(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	body := `{"email":"u@abuse.test","password":"long-password-1","passwordConfirm":"long-password-1"}`
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/users/records", "", body); res.Code != http.StatusForbidden {
		t.Fatalf("guest signup to users: %d %s, want 403", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/users/records", fx.Superuser.Token, body); res.Code != http.StatusOK {
		t.Fatalf("a superuser still manages users: %d %s", res.Code, res.Body)
	}
	login := `{"identity":"u@abuse.test","password":"long-password-1"}`
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/users/auth-with-password", "", login); res.Code == http.StatusOK {
		t.Fatalf("sign-in to users: %d %s, want a refusal", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodGet, "/api/collections/users/records", fx.A.Token, ""); res.Code != http.StatusForbidden {
		t.Fatalf("an affiliate lists users: %d %s, want 403", res.Code, res.Body)
	}
}
