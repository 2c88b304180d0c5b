package hooks_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// rateRule returns the shipped rate-limit rule with label; the migration enables the limiter.
func rateRule(t *testing.T, app core.App, label string) core.RateLimitRule {
	t.Helper()
	limits := app.Settings().RateLimits
	if !limits.Enabled {
		t.Fatal("rate limits are off; the migration turns them on")
	}
	for _, r := range limits.Rules {
		if r.Label == label {
			return r
		}
	}
	t.Fatalf("no rate-limit rule %q in %v", label, limits.Rules)
	return core.RateLimitRule{}
}

// fromIP is a Request option: the client address the rate limiter keys on.
func fromIP(ip string) func(*http.Request) {
	return func(r *http.Request) { r.RemoteAddr = ip + ":40000" }
}

// signIn is a password sign-in to an auth collection from an IP: a guess, or the right
// password. The limiter counts requests before it reads them, so the guesses are sent without
// a password: refused as fast, they cost the test no password hash (seconds under -race).
func signIn(collection, email string, right bool) func(h http.Handler, i int, ip string) *pbatest.Response {
	return func(h http.Handler, _ int, ip string) *pbatest.Response {
		password := ""
		if right {
			password = pbatest.Password
		}
		return pbatest.Request(h, http.MethodPost, "/api/collections/"+collection+"/auth-with-password", "",
			fmt.Sprintf(`{"identity":%q,"password":%q}`, email, password), fromIP(ip))
	}
}

// TestRateLimitRulesBite: each shipped rule lets its MaxRequests through in its window and
// answers the next request 429, also a request that would have succeeded (the right password,
// the right key): guessing stops working, it does not just get slower. Other clients are not
// affected, superusers are never limited.
func TestRateLimitRulesBite(t *testing.T) {
	const attacker, other = "198.51.100.66", "198.51.100.77"
	signup := func(i int) string {
		return fmt.Sprintf(`{"email":"signup-%d@abuse.test","password":"long-password-1","passwordConfirm":"long-password-1","name":"S %d"}`, i, i)
	}
	for _, c := range []struct {
		name, label string
		// try is a request that counts against the rule; real is one that would succeed.
		try, real func(h http.Handler, i int, ip string) *pbatest.Response
		tryCode   int // what try answers while under the limit
		realCode  int
		// mailsTo: the other client's real request mails this address after answering
		// (PocketBase sends in a goroutine of its own): the test waits for it to be recorded, so
		// the app's cleanup does not close the database under the send.
		mailsTo string
	}{
		{
			name: "affiliate sign-in", label: "*:auth", try: signIn("affiliates", fx.A.Email, false), real: signIn("affiliates", fx.A.Email, true),
			tryCode: http.StatusBadRequest, realCode: http.StatusOK,
		},
		{
			name: "superuser sign-in", label: "*:auth", try: signIn("_superusers", fx.Superuser.Email, false), real: signIn("_superusers", fx.Superuser.Email, true),
			tryCode: http.StatusBadRequest, realCode: http.StatusOK,
		},
		{
			name: "signup", label: "affiliates:create",
			try: func(h http.Handler, i int, ip string) *pbatest.Response { // no password: refused, still counted
				return pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/records", "",
					fmt.Sprintf(`{"email":"bad-%d@abuse.test","name":"S"}`, i), fromIP(ip))
			},
			real: func(h http.Handler, i int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/records", "", signup(i), fromIP(ip))
			},
			tryCode: http.StatusBadRequest, realCode: http.StatusOK,
		},
		{
			name: "password reset", label: "*:requestPasswordReset",
			try: func(h http.Handler, _ int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/request-password-reset", "",
					`{"email":"nobody@abuse.test"}`, fromIP(ip))
			},
			real: func(h http.Handler, _ int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/request-password-reset", "",
					fmt.Sprintf(`{"email":%q}`, fx.B.Email), fromIP(ip))
			},
			tryCode: http.StatusNoContent, realCode: http.StatusNoContent, mailsTo: fx.B.Email,
		},
		{
			name: "postback", label: "GET /api/pba/postback",
			try: func(h http.Handler, i int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodGet, fmt.Sprintf("/api/pba/postback?key=guess-%d&txid=t", i), "", "", fromIP(ip))
			},
			real: func(h http.Handler, _ int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodGet, "/api/pba/postback?key="+fx.SecretP+"&txid=t&amount=10.00&currency=usd&affiliate_code=affiliate-a", "", "", fromIP(ip))
			},
			tryCode: http.StatusUnauthorized, realCode: http.StatusCreated,
		},
		{
			name: "conversions API and update form", label: "/api/pba/conversions/",
			try: func(h http.Handler, i int, ip string) *pbatest.Response {
				path := "/api/pba/conversions"
				if i%2 == 1 {
					path += "/api/order-1" // the update form shares the bucket
				}
				return pbatest.Request(h, http.MethodPost, path, fmt.Sprintf("Bearer guess-%d", i), `{}`, fromIP(ip))
			},
			real: func(h http.Handler, _ int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodPost, "/api/pba/conversions", bearer(),
					`{"external_id":"rl-1","amount":1000,"currency":"usd","affiliate_code":"affiliate-a"}`, fromIP(ip))
			},
			tryCode: http.StatusUnauthorized, realCode: http.StatusCreated,
		},
		{
			// API keys are guests to the limiter: a key's requests count per client address.
			name: "merchant API with API keys", label: "GET /api/pba/sales",
			try: func(h http.Handler, i int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodGet, "/api/pba/sales", fmt.Sprintf("Bearer pba_guess%035d", i), "", fromIP(ip))
			},
			real: func(h http.Handler, i int, ip string) *pbatest.Response {
				key := pbatest.Request(h, http.MethodPost, "/api/pba/api-keys", fx.Superuser.Token, fmt.Sprintf(`{"name":"rl-%d","scopes":["sales:read"]}`, i))
				return pbatest.Request(h, http.MethodGet, "/api/pba/sales", "Bearer "+fmt.Sprint(key.JSON["key"]), "", fromIP(ip))
			},
			tryCode: http.StatusUnauthorized, realCode: http.StatusOK,
		},
		{
			name: "clicks API", label: "POST /api/pba/clicks",
			try: func(h http.Handler, _ int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodPost, "/api/pba/clicks", "", `{"code":"no-such-code"}`, fromIP(ip))
			},
			real: func(h http.Handler, _ int, ip string) *pbatest.Response {
				return pbatest.Request(h, http.MethodPost, "/api/pba/clicks", "", `{"code":"`+linkA+`"}`, fromIP(ip))
			},
			tryCode: http.StatusNotFound, realCode: http.StatusOK,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newClickEnv(t, fx.Config)
			rule := rateRule(t, env.app, c.label)
			if rule.MaxRequests < 1 || rule.Duration < 1 {
				t.Fatalf("rule %v", rule)
			}
			for i := range rule.MaxRequests {
				if res := c.try(env.handler, i, attacker); res.Code != c.tryCode {
					t.Fatalf("attempt %d of %d: %d %s, want %d", i+1, rule.MaxRequests, res.Code, res.Body, c.tryCode)
				}
			}
			if res := c.real(env.handler, 0, attacker); res.Code != http.StatusTooManyRequests {
				t.Fatalf("past %d attempts in %d s, the real request: %d %s, want 429", rule.MaxRequests, rule.Duration, res.Code, res.Body)
			}
			mails := func() int64 {
				n, err := env.app.CountRecords(collections.Deliveries, dbx.HashExp{"email": c.mailsTo})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			var mailed int64
			if c.mailsTo != "" {
				mailed = mails()
			}
			if res := c.real(env.handler, 1, other); res.Code != c.realCode {
				t.Fatalf("another client: %d %s, want %d (the limit is per IP)", res.Code, res.Body, c.realCode)
			}
			for deadline := time.Now().Add(10 * time.Second); c.mailsTo != "" && mails() == mailed; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the mail to %s was not recorded in 10 s", c.mailsTo)
				}
			}
		})
	}
}

// TestRateLimitSuperusersAndExcludedIPs: a superuser's requests are never limited, and an IP in
// the settings' excluded list (a merchant's server sending in bulk) neither.
func TestRateLimitSuperusersAndExcludedIPs(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	rule := rateRule(t, env.app, "/api/pba/conversions/")
	for i := range rule.MaxRequests + 1 {
		res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/conversions", fx.Superuser.Token, `{}`, fromIP("198.51.100.1"))
		if res.Code != http.StatusBadRequest {
			t.Fatalf("superuser request %d: %d %s, want the 400 of an empty sale, never 429", i+1, res.Code, res.Body)
		}
	}
	settings := env.app.Settings()
	settings.RateLimits.ExcludedIPs = []string{"198.51.100.0/24"}
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	for i := range rule.MaxRequests + 1 {
		if res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/conversions", "Bearer guess", `{}`, fromIP("198.51.100.2")); res.Code != http.StatusUnauthorized {
			t.Fatalf("excluded IP, request %d: %d %s, want 401, never 429", i+1, res.Code, res.Body)
		}
	}
}

// TestRateLimitFollowsTrustedProxy: behind a reverse proxy every request comes from the
// proxy's address, so without trusted-proxy headers all clients share one bucket; with the
// proxy's header trusted, each client has its own (docs/operations.md).
func TestRateLimitFollowsTrustedProxy(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	rule := rateRule(t, env.app, "*:requestPasswordReset")
	const proxy = "10.0.0.2"
	reset := func(client string) int {
		return pbatest.Request(env.handler, http.MethodPost, "/api/collections/affiliates/request-password-reset", "",
			`{"email":"nobody@abuse.test"}`, fromIP(proxy), pbatest.Header("X-Forwarded-For", client)).Code
	}
	for range rule.MaxRequests {
		reset("203.0.113.1")
	}
	if code := reset("203.0.113.2"); code != http.StatusTooManyRequests {
		t.Fatalf("untrusted proxy header: another client got %d, want 429 (one bucket: the proxy's)", code)
	}
	settings := env.app.Settings()
	settings.TrustedProxy.Headers = []string{"X-Forwarded-For"}
	if err := env.app.Save(settings); err != nil { // a settings change also resets the limiters
		t.Fatal(err)
	}
	for range rule.MaxRequests {
		reset("203.0.113.1")
	}
	if code := reset("203.0.113.1"); code != http.StatusTooManyRequests {
		t.Fatalf("trusted header, same client: %d, want 429", code)
	}
	if code := reset("203.0.113.2"); code != http.StatusNoContent {
		t.Fatalf("trusted header, another client: %d, want 204 (its own bucket)", code)
	}
}

// TestRedirectNeverRateLimited: no shipped rule covers /r/: visitors are never refused, and a
// plain click keeps the direct path ahead of the router (no router headers on it).
func TestRedirectNeverRateLimited(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	limits := env.app.Settings().RateLimits
	for _, path := range []string{"/r/" + linkA, "/r/" + linkA + "/"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if rule, found := limits.FindRateLimitRule([]string{method + " " + path, path}); found {
				t.Fatalf("%s %s is covered by %v", method, path, rule)
			}
		}
	}
	clicks := 3 * rateRule(t, env.app, "*:auth").MaxRequests // more than a visitor would ever make
	for i := range clicks {
		res := env.get("/r/" + linkA)
		if res.StatusCode != http.StatusFound || res.Header.Get("X-Xss-Protection") != "" {
			t.Fatalf("click %d: %d (router headers %v), want a 302 from the direct path", i+1, res.StatusCode, res.Header.Get("X-Xss-Protection") != "")
		}
	}
}
