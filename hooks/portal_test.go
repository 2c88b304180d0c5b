package hooks_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestApplyRoute: a program's public terms by its slug for the apply page, nothing internal,
// and the same 404 for unknown and paused programs.
func TestApplyRoute(t *testing.T) {
	env := newEngineEnv(t)
	res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/apply/default", "", "")
	if res.Code != 200 {
		t.Fatalf("apply: %d %s", res.Code, res.Body)
	}
	p := res.JSON["program"].(map[string]any)
	if p["slug"] != "default" || p["currency"] != "usd" || p["commission_type"] != "percent" || p["commission_value"].(float64) != 2000 ||
		p["min_payout"].(float64) != 5000 || p["payout_schedule"] == "" {
		t.Errorf("program terms: %v", p)
	}
	if q, ok := res.JSON["questions"].([]any); !ok || len(q) != 0 {
		t.Errorf("questions: %#v, want [] (the program has none)", res.JSON["questions"])
	}
	for _, hidden := range []string{fx.SecretP, "postback_secret", "allowed_domains", "destination"} {
		if strings.Contains(res.Body.String(), hidden) {
			t.Errorf("the public terms show %q: %s", hidden, res.Body)
		}
	}

	if res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/apply/nope", "", ""); res.Code != 404 || !strings.Contains(res.Body.String(), `"slug"`) {
		t.Errorf("unknown program: %d %s", res.Code, res.Body)
	}
	env.patch("/api/collections/programs/records/"+fx.ProgramQ, `{"active":false}`, 200)
	if res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/apply/q", "", ""); res.Code != 404 {
		t.Errorf("paused program: %d %s, want 404", res.Code, res.Body)
	}
}

// TestTermsRoute: each affiliate's rate as the engine applies it (program, override, tier) and
// its next payout equal to the payout preview's line for it, whatever its status.
func TestTermsRoute(t *testing.T) {
	env := newEngineEnv(t)
	past := time.Now().AddDate(0, 0, -40)
	env.pastSale("affiliate-a", 30000, past)  // 6000 payable: above P's 5000 minimum
	env.pastSale("affiliate-b", 1000, past)   // 200 payable: below it
	env.sale("affiliate-a", 5000, time.Now()) // 1000 pending
	env.run()

	terms := func(token string) map[string]any {
		t.Helper()
		res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/terms", token, "")
		if res.Code != 200 {
			t.Fatalf("terms: %d %s", res.Code, res.Body)
		}
		return res.JSON
	}
	preview := func() map[string]map[string]any {
		t.Helper()
		res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/payouts/preview?program="+fx.ProgramP, fx.Superuser.Token, "")
		if res.Code != 200 {
			t.Fatalf("preview: %d %s", res.Code, res.Body)
		}
		return payoutLines(res.JSON)
	}
	// samePayout checks the terms' next payout against the preview's line for the affiliate.
	samePayout := func(who string, id string, got map[string]any, eligible bool, reason string) {
		t.Helper()
		np := got["next_payout"].(map[string]any)
		line := preview()[id]
		if line == nil {
			t.Fatalf("%s: no preview line", who)
		}
		if np["amount"] != line["amount"] || np["currency"] != "usd" || np["eligible"] != eligible || np["reason"] != reason {
			t.Errorf("%s: next payout %v, preview line %v; want eligible %v reason %q", who, np, line, eligible, reason)
		}
		at, err := time.Parse(time.RFC3339, np["at"].(string))
		next := got["schedule"].(map[string]any)["next"].([]any)
		if err != nil || !at.After(time.Now()) || len(next) != 3 || next[0] != np["at"] {
			t.Errorf("%s: next payout at %v (%v), schedule %v", who, np["at"], err, next)
		}
	}

	a := terms(fx.A.Token)
	if r := a["rate"].(map[string]any); r["type"] != "percent" || r["value"].(float64) != 2000 || r["source"] != "program" || r["tier"] != "" {
		t.Errorf("A's rate: %v", r)
	}
	if a["cookie_days"] == nil || a["hold_days"] == nil || a["min_payout"].(float64) != 5000 || a["stripe_enabled"] != false {
		t.Errorf("A's terms: %v", a)
	}
	samePayout("A", fx.A.ID, a, true, "")
	if np := a["next_payout"].(map[string]any); np["amount"].(float64) != 6000 {
		t.Errorf("A's next payout: %v, want 6000", np)
	}
	b := terms(fx.B.Token)
	samePayout("B", fx.B.ID, b, false, "below_minimum")
	if strings.Contains(pbatest.Request(env.handler, http.MethodGet, "/api/pba/terms", fx.A.Token, "").Body.String(), fx.B.ID) {
		t.Error("A's terms name B")
	}

	// An override wins over the program; a tier sets the rate with its name.
	env.patch("/api/collections/affiliates/records/"+fx.A.ID, `{"commission_override":1250}`, 200)
	env.patch("/api/collections/affiliates/records/"+fx.B.ID, `{"tier":"`+fx.TierP+`"}`, 200)
	if r := terms(fx.A.Token)["rate"].(map[string]any); r["value"].(float64) != 1250 || r["source"] != "override" {
		t.Errorf("A's rate with an override: %v", r)
	}
	if r := terms(fx.B.Token)["rate"].(map[string]any); r["value"].(float64) != 3000 || r["source"] != "tier" || r["tier"] != "Gold" {
		t.Errorf("B's rate in the tier: %v", r)
	}

	// Suspended: the preview skips it, and the terms say why.
	env.patch("/api/collections/affiliates/records/"+fx.B.ID, `{"status":"suspended"}`, 200)
	samePayout("suspended B", fx.B.ID, terms(fx.B.Token), false, "not_approved")
	// Pending: nothing payable, the program's terms all the same.
	if np := terms(fx.Pending.Token)["next_payout"].(map[string]any); np["amount"].(float64) != 0 || np["eligible"] != false || np["reason"] != "nothing_payable" {
		t.Errorf("pending affiliate's next payout: %v", np)
	}

	for who, token := range map[string]string{"guest": "", "superuser": fx.Superuser.Token} {
		if res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/terms", token, ""); res.Code != 401 && res.Code != 403 {
			t.Errorf("%s: %d, want 401/403", who, res.Code)
		}
	}
}

// TestAuthMailsLinkToPortal: PocketBase's verification, password reset and email change mails
// of affiliates lead to the portal's pages (migrations 1795480900 and 1795482300), never to the
// dashboard; the email change link's token confirms the new address.
func TestAuthMailsLinkToPortal(t *testing.T) {
	env := newEngineEnv(t)
	// PocketBase's mailer (the test app's captures what it sends) is the sender only with SMTP
	// on; without it, mail goes to the log (chooseMailProvider).
	env.app.Settings().SMTP.Enabled = true
	env.app.Settings().SMTP.Host = "127.0.0.1"
	for _, c := range []struct{ path, email, want string }{
		{"request-password-reset", fx.A.Email, "/portal/#/reset/"},
		{"request-verification", "fresh@fixture.test", "/portal/#/verify/"},
		{"request-email-change", "a.moved@fixture.test", "/portal/#/email-change/"}, // the mail goes to the new address
	} {
		if c.path == "request-verification" { // a new, unverified affiliate
			if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/affiliates/records", "",
				`{"name":"Fresh","email":"fresh@fixture.test","password":"a-long-password","passwordConfirm":"a-long-password"}`); res.Code != 200 {
				t.Fatalf("signup: %d %s", res.Code, res.Body)
			}
		}
		token, body := "", `{"email":"`+c.email+`"}`
		if c.path == "request-email-change" { // asked by the signed-in affiliate
			token, body = fx.A.Token, `{"newEmail":"`+c.email+`"}`
		}
		if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/affiliates/"+c.path, token, body); res.Code != 204 {
			t.Fatalf("%s: %d %s", c.path, res.Code, res.Body)
		}
		// Other mails (the fixture's approvals) may be sent meanwhile: find this address's auth mail.
		var html string
		for deadline := time.Now().Add(5 * time.Second); html == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, m := range env.app.TestMailer.Messages() {
				if len(m.To) == 1 && m.To[0].Address == c.email && strings.Contains(m.HTML, "#/") { // an auth mail's action link
					html = m.HTML
				}
			}
		}
		if !strings.Contains(html, c.want) || strings.Contains(html, "/_/#/auth/") {
			t.Errorf("%s mail to %s: want a link to %s, got %q", c.path, c.email, c.want, html)
		}
		if c.path != "request-email-change" {
			continue
		}
		// The portal's page posts the link's token with the password: the address changes.
		link := regexp.MustCompile(`/portal/#/email-change/([\w.-]+)`).FindStringSubmatch(html)
		if link == nil {
			t.Fatalf("no token in the email change mail: %q", html)
		}
		if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/affiliates/confirm-email-change", "",
			`{"token":"`+link[1]+`","password":"`+pbatest.Password+`"}`); res.Code != 204 {
			t.Fatalf("confirm the email change: %d %s", res.Code, res.Body)
		}
		if a := mustFind(t, env.app, collections.Affiliates, fx.A.ID); a.Email() != c.email {
			t.Fatalf("email after the change: %s", a.Email())
		}
	}
}

// TestTermsWithIncentive: during a rate boost for all and a multiplier for A alone, A's terms
// show the engine's boosted rate (source incentive, the campaigns named, the base rate kept)
// and B's only the boost; each equals the commission the engine then writes for a sale.
func TestTermsWithIncentive(t *testing.T) {
	env := newEngineEnv(t)
	now := time.Now().UTC()
	start, end := now.Add(-time.Hour), now.Add(time.Hour)
	env.incentive(map[string]any{"name": "Spring push", "kind": "rate_boost", "value": 500, "starts_at": start, "ends_at": end})
	env.incentive(map[string]any{"name": "A times 1.5", "kind": "multiplier", "value": 1500, "eligibility": "affiliates",
		"affiliates": []string{fx.A.ID}, "starts_at": start, "ends_at": end})
	env.incentive(map[string]any{"name": "Later", "kind": "rate_boost", "value": 4000, "starts_at": end, "ends_at": end.Add(time.Hour)})

	rate := func(token string) map[string]any {
		t.Helper()
		res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/terms", token, "")
		if res.Code != 200 {
			t.Fatalf("terms: %d %s", res.Code, res.Body)
		}
		return res.JSON["rate"].(map[string]any)
	}
	a, b := rate(fx.A.Token), rate(fx.B.Token)
	// A: (20 + 5)% × 1.5 = 37.5%; B: 20 + 5 = 25%, without A's multiplier.
	if a["value"].(float64) != 3750 || a["source"] != "incentive" || a["base_value"].(float64) != 2000 || a["base_source"] != "program" ||
		a["boost"].(float64) != 500 || a["multiplier"].(float64) != 1500 || len(a["incentives"].([]any)) != 2 {
		t.Errorf("A's rate: %v", a)
	}
	if b["value"].(float64) != 2500 || b["source"] != "incentive" || b["multiplier"].(float64) != 1000 ||
		fmt.Sprint(b["incentives"]) != "[Spring push]" {
		t.Errorf("B's rate: %v", b)
	}

	// The engine writes exactly those rates for sales at this moment.
	sa := env.sale("affiliate-a", 12345, now.Add(-time.Second))
	sb := env.sale("affiliate-b", 12345, now.Add(-time.Second))
	env.run()
	for who, c := range map[string]struct {
		conv string
		rate map[string]any
	}{"A": {sa, a}, "B": {sb, b}} {
		want := money.MulDivHalfEven(12345, int64(c.rate["value"].(float64)), rules.MaxPercentBP)
		if got := env.commissionOf(c.conv).GetInt("amount"); int64(got) != want {
			t.Errorf("%s: commission %d, terms' rate %v gives %d", who, got, c.rate["value"], want)
		}
	}
}
