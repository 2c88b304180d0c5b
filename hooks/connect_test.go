package hooks

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// connectEnv is an app with only the Connect route registered, served in-process.
type connectEnv struct {
	t       *testing.T
	app     core.App
	fake    *FakeStripe
	handler http.Handler
	program string
}

// newConnectEnv registers the route with cfg (its Stripe client pointed at a fake) and serves it.
func newConnectEnv(t *testing.T, cfg Config) *connectEnv {
	t.Helper()
	app := pbatest.TempApp(t)
	fake := NewFakeStripe(t)
	if cfg.StripeSecretKey != "" {
		cfg.StripeAPIBase = fake.URL
	}
	// The real route table, with only the onboarding capability behind it.
	onboarding := routes{connect: newConnectOnboarding(cfg)}
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		onboarding.bind(se.Router)
		return se.Next()
	})
	handler := pbatest.Serve(t, app)
	p, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	return &connectEnv{t: t, app: app, fake: fake, handler: handler, program: p.Id}
}

// affiliate creates an affiliate with the status and returns its auth token.
func (c *connectEnv) affiliate(code, status string) (*core.Record, string) {
	c.t.Helper()
	col, err := c.app.FindCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		c.t.Fatal(err)
	}
	r := core.NewRecord(col)
	r.Load(map[string]any{"email": code + "@example.test", "name": code, "code": code, "status": status,
		"program": c.program, "payout_method": collections.MethodManual})
	r.SetPassword("connect-password-1")
	if err := c.app.Save(r); err != nil {
		c.t.Fatal(err)
	}
	token, err := r.NewAuthToken()
	if err != nil {
		c.t.Fatal(err)
	}
	return r, token
}

// onboard calls the route with the token (none: a guest) and decodes the answer.
func (c *connectEnv) onboard(token string) (int, map[string]any) {
	res := pbatest.Request(c.handler, http.MethodPost, "/api/pba/connect/onboard", token, "")
	return res.Code, res.JSON
}

// TestConnectOnboard: the first call creates the Express account (stored on the affiliate,
// payout method switched to Stripe) and returns an onboarding link back to the portal; a
// second call reuses the account and returns a fresh link.
func TestConnectOnboard(t *testing.T) {
	c := newConnectEnv(t, Config{StripeSecretKey: FakeStripeKey, PublicURL: "https://partners.example"})
	aff, token := c.affiliate("ada-connect", collections.AffiliateApproved)

	code, out := c.onboard(token)
	accounts := c.fake.Accounts()
	if code != http.StatusOK || len(accounts) != 1 || out["account"] != accounts[0] ||
		!strings.HasPrefix(out["url"].(string), c.fake.URL+"/setup/"+accounts[0]) {
		t.Fatalf("onboard: %d %v (accounts %v)", code, out, accounts)
	}
	stored, err := c.app.FindRecordById(collections.Affiliates, aff.Id)
	if err != nil || stored.GetString(collections.AffiliateStripeAccountID) != accounts[0] ||
		stored.GetString(collections.AffiliatePayoutMethod) != collections.MethodStripe {
		t.Fatalf("affiliate after onboarding: %v %v", stored, err)
	}

	code, again := c.onboard(token)
	if code != http.StatusOK || again["account"] != accounts[0] || again["url"] == out["url"] {
		t.Fatalf("second onboard: %d %v", code, again)
	}
	if n := len(c.fake.Accounts()); n != 1 || c.fake.AccountLinks() != 2 {
		t.Fatalf("%d accounts, %d links; want 1 and 2", n, c.fake.AccountLinks())
	}
}

// TestConnectOnboardConcurrent: double clicks create one account (one idempotency key per
// affiliate), and the affiliate ends with that account.
func TestConnectOnboardConcurrent(t *testing.T) {
	c := newConnectEnv(t, Config{StripeSecretKey: FakeStripeKey, PublicURL: "https://partners.example"})
	aff, token := c.affiliate("bob-connect", collections.AffiliateApproved)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, out := c.onboard(token); code != http.StatusOK {
				t.Errorf("onboard: %d %v", code, out)
			}
		}()
	}
	wg.Wait()
	accounts := c.fake.Accounts()
	stored, _ := c.app.FindRecordById(collections.Affiliates, aff.Id)
	if len(accounts) != 1 || stored.GetString(collections.AffiliateStripeAccountID) != accounts[0] {
		t.Fatalf("accounts %v, stored %q", accounts, stored.GetString(collections.AffiliateStripeAccountID))
	}
}

// TestConnectOnboardRefusals: guests, unapproved affiliates and servers without Stripe or a
// public URL get no account.
func TestConnectOnboardRefusals(t *testing.T) {
	c := newConnectEnv(t, Config{StripeSecretKey: FakeStripeKey, PublicURL: "https://partners.example"})
	_, pending := c.affiliate("pending-connect", collections.AffiliatePending)
	if code, _ := c.onboard(""); code != http.StatusUnauthorized {
		t.Errorf("guest: %d", code)
	}
	if code, _ := c.onboard(pending); code != http.StatusForbidden {
		t.Errorf("pending affiliate: %d", code)
	}
	c.fake.SetFailing(true)
	_, approved := c.affiliate("down-connect", collections.AffiliateApproved)
	if code, _ := c.onboard(approved); code != http.StatusBadGateway {
		t.Errorf("Stripe down: %d", code)
	}
	c.fake.SetFailing(false)
	if n := len(c.fake.Accounts()); n != 0 {
		t.Errorf("%d accounts created", n)
	}

	for name, cfg := range map[string]Config{
		"no Stripe":     {PublicURL: "https://partners.example"},
		"no public URL": {StripeSecretKey: FakeStripeKey},
	} {
		c := newConnectEnv(t, cfg)
		_, token := c.affiliate("x-connect", collections.AffiliateApproved)
		if code, _ := c.onboard(token); code != http.StatusServiceUnavailable || c.fake.Calls() != 0 {
			t.Errorf("%s: %d, %d Stripe calls", name, code, c.fake.Calls())
		}
	}
}
