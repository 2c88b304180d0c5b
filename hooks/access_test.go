package hooks_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// fx is the world every test in this package clones (built once: bcrypt under -race is slow).
var fx *pbatest.Fixture[hooks.Config]

// registerWithoutCLI is hooks.Register for an app without a command line.
func registerWithoutCLI(app core.App, cfg hooks.Config) error { return hooks.Register(app, nil, cfg) }

func TestMain(m *testing.M) {
	var err error
	fx, err = pbatest.NewFixture(registerWithoutCLI, hooks.Config{IPSalt: "test-salt", WebhookAllowPrivateNetworks: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fixture:", err)
		os.Exit(1)
	}
	code := m.Run()
	fx.Cleanup()
	os.Exit(code)
}

// The access matrix (who may do what, and that nobody sees another's data) is
// access_matrix_test.go.

// TestProgramDefaults: a program created in the dashboard with only a name and a destination
// gets a slug and the documented defaults.
func TestProgramDefaults(t *testing.T) {
	(&tests.ApiScenario{
		Name: "superuser creates a program", Method: http.MethodPost, URL: "/api/collections/programs/records",
		Headers: pbatest.AuthHeaders(fx.Superuser.Token), Body: strings.NewReader(`{"name":"X","destination":"https://x.example.com/"}`),
		ExpectedStatus:  200,
		ExpectedContent: []string{`"slug":"x"`, `"cookie_days":60`, `"hold_days":30`, `"min_payout":5000`, `"payout_schedule":"0 9 1 * *"`},
		TestAppFactory:  fx.Factory(),
	}).Test(t)
}

// TestAffiliateCannotSetItsWebhookSecret: the secret that signs an affiliate's webhooks is the
// server's to make; the write guard names the field.
func TestAffiliateCannotSetItsWebhookSecret(t *testing.T) {
	(&tests.ApiScenario{
		Name: "A sets its webhook secret", Method: http.MethodPatch,
		URL: "/api/collections/affiliates/records/" + fx.A.ID, Headers: pbatest.AuthHeaders(fx.A.Token),
		Body: strings.NewReader(`{"webhook_secret":"mine"}`), ExpectedStatus: 403,
		ExpectedContent: []string{`"webhook_secret":{"code":"forbidden_field"`}, TestAppFactory: fx.Factory(),
	}).Test(t)
}
