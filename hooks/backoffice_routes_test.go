package hooks_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pocketbase/pocketbase/tests"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestConfigRoute: the setup checklist's view of the configuration says whether each secret
// is set and never shows one; superusers only.
func TestConfigRoute(t *testing.T) {
	secrets := hooks.Config{
		IPSalt: "salt-value-1", PublicURL: "https://partners.acme.io", MailFrom: "Acme <p@acme.io>",
		StripeSecretKey: "sk_test_secret_value", StripeWebhookSecret: "whsec_value_1", ResendAPIKey: "re_secret_value",
	}
	factory := func(t testing.TB) *tests.TestApp { return fx.AppWith(t, secrets) }
	scenarios := []tests.ApiScenario{
		{
			Name: "superuser: what is set, no secret's value", URL: "/api/pba/config",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{
				`"public_url":"https://partners.acme.io"`, `"sender":"resend"`, `"secret_key":true`, `"webhook_secret":true`,
				`"connect_webhook_secret":false`, `"webhook_url":"https://partners.acme.io/api/pba/stripe/webhook"`,
				`"placeholder_domains":true`, `"ip_salt":true`, `"rate_limits":{`, `"backups":{`,
			},
			NotExpectedContent: []string{"salt-value-1", "sk_test_secret_value", "whsec_value_1", "re_secret_value"},
		},
		{Name: "affiliate: 403", URL: "/api/pba/config", Headers: pbatest.AuthHeaders(fx.A.Token), ExpectedStatus: 403, ExpectedContent: []string{`"status":403`}},
		{Name: "guest: 401", URL: "/api/pba/config", ExpectedStatus: 401, ExpectedContent: []string{`"status":401`}},
	}
	for _, s := range scenarios {
		s.Method = http.MethodGet
		s.TestAppFactory = factory
		s.Test(t)
	}
}

// TestScheduleRoute: the next three runs of a payout schedule in its own zone, and the
// program validation's error for a bad one.
func TestScheduleRoute(t *testing.T) {
	scenarios := []tests.ApiScenario{
		{
			Name: "monthly on the 1st at 09:00 Berlin time", URL: "/api/pba/programs/schedule?spec=" + strings.ReplaceAll("CRON_TZ=Europe/Berlin 0 9 1 * *", " ", "%20"),
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{`"timezone":"Europe/Berlin"`, `"next":["`, `-01T09:00:00+0`},
		},
		{
			Name: "twice a month", URL: "/api/pba/programs/schedule?spec=0%209%201,15%20*%20*",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{`-15T09:00:00`, `-01T09:00:00`},
		},
		{
			Name: "a bad spec names spec", URL: "/api/pba/programs/schedule?spec=every%20monday",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 400,
			ExpectedContent: []string{`"spec":{"code":"invalid_cron"`},
		},
		{
			Name: "a spec that never runs", URL: "/api/pba/programs/schedule?spec=0%209%2030%202%20*",
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 400,
			ExpectedContent: []string{`"spec":{"code":"never"`},
		},
		{Name: "affiliate: 403", URL: "/api/pba/programs/schedule?spec=0%209%201%20*%20*", Headers: pbatest.AuthHeaders(fx.A.Token), ExpectedStatus: 403, ExpectedContent: []string{`"status":403`}},
	}
	for _, s := range scenarios {
		s.Method = http.MethodGet
		s.TestAppFactory = fx.Factory()
		s.Test(t)
	}
}

// TestMailPreviewRoute: a broadcast and a template rendered for a real affiliate, and the
// validation's errors naming the part that does not render.
func TestMailPreviewRoute(t *testing.T) {
	scenarios := []tests.ApiScenario{
		{
			Name: "broadcast for affiliate A", URL: "/api/pba/messages/preview",
			Body:    strings.NewReader(`{"subject":"Hi {{.Name}}","body":"Your link: {{.Link}}\n\nPending: {{.Balance.Pending}}","affiliate":"` + fx.A.ID + `"}`),
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent:    []string{`"subject":"Hi Affiliate A"`, `/r/affiliate-a`, `Unsubscribe`},
			NotExpectedContent: []string{"Ada Lovelace"},
		},
		{
			Name: "template with sample data", URL: "/api/pba/messages/preview",
			Body:    strings.NewReader(`{"template":true,"subject":"Paid {{.Amount}}","html":"<p>{{.Reference}}</p>","text":"{{.Name}}"}`),
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 200,
			ExpectedContent: []string{`"subject":"Paid 60.00 USD"`, `tr_123`, `"text":"Ada Lovelace"`},
		},
		{
			Name: "unknown variable names the part", URL: "/api/pba/messages/preview",
			Body:    strings.NewReader(`{"template":true,"subject":"ok","html":"<p>{{.Nope}}</p>","text":"{{.Missing}}"}`),
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 400,
			ExpectedContent: []string{`"text":{"code":"invalid_template"`, `"html":{"code":"invalid_template"`},
		},
		{
			Name: "broadcast subject that does not parse", URL: "/api/pba/messages/preview",
			Body:    strings.NewReader(`{"subject":"Hi {{.Name","body":"x"}`),
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), ExpectedStatus: 400,
			ExpectedContent: []string{`"subject":{"code":"invalid_template"`},
		},
		{
			Name: "affiliate: 403", URL: "/api/pba/messages/preview", Body: strings.NewReader(`{}`),
			Headers: pbatest.AuthHeaders(fx.A.Token), ExpectedStatus: 403, ExpectedContent: []string{`"status":403`},
		},
	}
	for _, s := range scenarios {
		s.Method = http.MethodPost
		s.TestAppFactory = fx.Factory()
		s.Test(t)
	}
}
