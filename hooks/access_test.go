package hooks_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"

	"github.com/pbaffiliate/pbaffiliate/collections"
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
	pbatest.RemoveTemplate()
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

// TestBatchSignupCannotSetGuardedFields: a batch request skips the write guard (PocketBase
// runs each of its requests without the router's middlewares), so the rules must refuse on
// their own what the guard refuses. With batch requests enabled in the settings, a signup
// that sets its webhook secret (or its verified flag) is refused.
func TestBatchSignupCannotSetGuardedFields(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	app.Settings().Batch.Enabled = true
	if err := app.Save(app.Settings()); err != nil {
		t.Fatal(err)
	}
	if err := pbatest.FastPasswords(app, collections.Affiliates); err != nil {
		t.Fatal(err)
	}
	h := pbatest.Serve(t, app)
	for field, value := range map[string]string{"": "", "webhook_secret": `"chosen-by-me"`, "verified": `true`} {
		email := "batch-" + strings.ReplaceAll(field, "_", "-") + "@fixture.test"
		extra := ""
		if field != "" {
			extra = fmt.Sprintf(",%q:%s", field, value)
		}
		body := fmt.Sprintf(`{"requests":[{"method":"POST","url":"/api/collections/affiliates/records","body":`+
			`{"name":"Batch","email":%q,"password":"batch-password-1","passwordConfirm":"batch-password-1"%s}}]}`, email, extra)
		res := pbatest.Request(h, http.MethodPost, "/api/batch", "", body)
		r, err := app.FindAuthRecordByEmail(collections.Affiliates, email)
		switch {
		case field == "" && err != nil: // the control: batch signups do go through
			t.Fatalf("plain batch signup: %d %s", res.Code, res.Body)
		case field != "" && err == nil:
			t.Errorf("batch signup with %s: %d, stored %s = %v", field, res.Code, field, r.Get(field))
		}
	}
}
