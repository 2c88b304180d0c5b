package hooks_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
	"github.com/pocketbase/pocketbase/tools/subscriptions"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

func signupBody(extra string) *strings.Reader {
	body := `{"name":"New Person","email":"new@fixture.test","password":"password-123","passwordConfirm":"password-123"` + extra + `}`
	return strings.NewReader(body)
}

func countAffiliates(t testing.TB, app core.App) int {
	t.Helper()
	n, err := app.CountRecords(collections.Affiliates)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func TestSignup(t *testing.T) {
	code := regexp.MustCompile(collections.CodePattern)
	scenarios := []tests.ApiScenario{
		{
			Name: "signup without program joins the default program as pending, with a generated code",
			Body: signupBody(""), ExpectedStatus: 200,
			ExpectedContent: []string{`"status":"pending"`, `"program":"` + fx.ProgramP + `"`, `"code":"new-person"`},
			AfterTestFunc: func(t testing.TB, app *tests.TestApp, res *http.Response) {
				r, err := app.FindAuthRecordByEmail(collections.Affiliates, "new@fixture.test")
				if err != nil {
					t.Fatal(err)
				}
				if !code.MatchString(r.GetString("code")) {
					t.Fatalf("generated code %q does not match %s", r.GetString("code"), collections.CodePattern)
				}
			},
		},
		{
			Name: "signup into an auto_approve program is approved at once",
			Body: signupBody(`,"program":"` + fx.ProgramQ + `"`), ExpectedStatus: 200,
			ExpectedContent: []string{`"status":"approved"`, `"program":"` + fx.ProgramQ + `"`},
		},
		{
			Name: "a chosen free code is kept",
			Body: signupBody(`,"code":"my-code"`), ExpectedStatus: 200,
			ExpectedContent: []string{`"code":"my-code"`},
		},
		{
			Name: "a code another affiliate uses is refused",
			Body: signupBody(`,"code":"affiliate-a"`), ExpectedStatus: 400,
			ExpectedContent: []string{`"code":{"code":"code_taken"`},
		},
		{
			Name: "a code a link uses is refused (both answer /r/{code})",
			Body: signupBody(`,"code":"affiliate-a-main"`), ExpectedStatus: 400,
			ExpectedContent: []string{`"code":{"code":"code_taken"`},
		},
		{
			Name: "a malformed code is refused",
			Body: signupBody(`,"code":"No Spaces!"`), ExpectedStatus: 400,
			ExpectedContent: []string{`"code":{"code":"validation_invalid_format"`},
		},
		{
			Name: "an unknown program is refused with the field named",
			Body: signupBody(`,"program":"nosuchprogram00"`), ExpectedStatus: 400,
			ExpectedContent: []string{`"program":{"code":"program_closed"`},
		},
	}
	for _, field := range []string{`"status":"approved"`, `"tier":"` + fx.TierP + `"`, `"commission_override":5000`,
		`"stripe_account_id":"acct_1"`, `"payouts_enabled":true`, `"notes":"x"`, `"tags":["vip"]`} {
		name := strings.Trim(strings.SplitN(field, ":", 2)[0], `"`)
		scenarios = append(scenarios, tests.ApiScenario{
			Name: "signup setting " + name + " is forbidden",
			Body: signupBody("," + field), ExpectedStatus: 403,
			ExpectedContent: []string{`"` + name + `":{"code":"forbidden_field"`},
			AfterTestFunc: func(t testing.TB, app *tests.TestApp, res *http.Response) {
				if n := countAffiliates(t, app); n != 3 {
					t.Fatalf("a refused signup stored something: %d affiliates, want 3", n)
				}
			},
		})
	}
	for _, s := range scenarios {
		s.Method = http.MethodPost
		s.URL = "/api/collections/affiliates/records"
		s.TestAppFactory = fx.Factory()
		s.Test(t)
	}
}

func TestSignupIntoInactiveProgramIsRefused(t *testing.T) {
	(&tests.ApiScenario{
		Name: "inactive program", Method: http.MethodPost, URL: "/api/collections/affiliates/records",
		Body: signupBody(`,"program":"` + fx.ProgramQ + `"`), ExpectedStatus: 400,
		ExpectedContent: []string{`"program":{"code":"program_closed"`},
		TestAppFactory:  fx.Factory(),
		BeforeTestFunc: func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) {
			q, err := app.FindRecordById(collections.Programs, fx.ProgramQ)
			if err != nil {
				t.Fatal(err)
			}
			q.Set(collections.ProgramActive, false)
			if err := app.Save(q); err != nil {
				t.Fatal(err)
			}
		},
	}).Test(t)
}

// TestAffiliateProfileUpdates: an affiliate edits its profile, never its money or standing.
func TestAffiliateProfileUpdates(t *testing.T) {
	url := "/api/collections/affiliates/records/" + fx.A.ID
	snapshot := func(t testing.TB, app core.App) string {
		r, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r.FieldsData())
		return string(b)
	}
	var before string
	forbidden := map[string]string{
		"status": `"approved"`, "code": `"new-code"`, "program": `"` + fx.ProgramQ + `"`, "tier": `"` + fx.TierP + `"`,
		"commission_override": `9999`, "stripe_account_id": `"acct_x"`, "payouts_enabled": `true`,
		"notes": `"hi"`, "tags": `["vip"]`, "tags+": `"vip"`, "+tags": `"vip"`, "verified": `false`,
	}
	for field, value := range forbidden {
		name := strings.Trim(field, "+")
		(&tests.ApiScenario{
			Name:   "A may not set " + field,
			Method: http.MethodPatch, URL: url, Headers: pbatest.AuthHeaders(fx.A.Token),
			Body:            strings.NewReader(fmt.Sprintf(`{"name":"sneaky",%q:%s}`, field, value)),
			ExpectedStatus:  403,
			ExpectedContent: []string{`"` + name + `":{"code":"forbidden_field"`},
			TestAppFactory:  fx.Factory(),
			BeforeTestFunc:  func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) { before = snapshot(t, app) },
			AfterTestFunc: func(t testing.TB, app *tests.TestApp, res *http.Response) {
				if after := snapshot(t, app); after != before {
					t.Fatalf("a refused update changed the record:\nbefore %s\nafter  %s", before, after)
				}
			},
		}).Test(t)
	}

	(&tests.ApiScenario{
		Name:   "A updates its own profile",
		Method: http.MethodPatch, URL: url, Headers: pbatest.AuthHeaders(fx.A.Token),
		Body: strings.NewReader(`{"name":"Ada A","payout_email":"pay@fixture.test","preferred_channel":"none",
			"webhook_url":"https://hooks.fixture.test/pba","timezone":"Europe/Berlin","payout_method":"stripe"}`),
		ExpectedStatus:  200,
		ExpectedContent: []string{`"name":"Ada A"`, `"timezone":"Europe/Berlin"`, `"preferred_channel":"none"`, `"payout_method":"stripe"`},
		TestAppFactory:  fx.Factory(),
	}).Test(t)

	(&tests.ApiScenario{
		Name:   "A changes its password",
		Method: http.MethodPatch, URL: url, Headers: pbatest.AuthHeaders(fx.A.Token),
		Body:            strings.NewReader(`{"oldPassword":"` + pbatest.Password + `","password":"another-pass-9","passwordConfirm":"another-pass-9"}`),
		ExpectedStatus:  200,
		ExpectedContent: []string{fx.A.ID},
		TestAppFactory:  fx.Factory(),
	}).Test(t)

	(&tests.ApiScenario{
		Name:   "an unknown time zone names the field",
		Method: http.MethodPatch, URL: url, Headers: pbatest.AuthHeaders(fx.A.Token),
		Body:            strings.NewReader(`{"timezone":"Mars/Olympus"}`),
		ExpectedStatus:  400,
		ExpectedContent: []string{`"timezone":{"code":"invalid_timezone"`},
		TestAppFactory:  fx.Factory(),
	}).Test(t)

	(&tests.ApiScenario{
		Name:   "a superuser may approve, tier and annotate",
		Method: http.MethodPatch, URL: url, Headers: pbatest.AuthHeaders(fx.Superuser.Token),
		Body:            strings.NewReader(`{"status":"suspended","tier":"` + fx.TierP + `","notes":"checked","commission_override":2500}`),
		ExpectedStatus:  200,
		ExpectedContent: []string{`"status":"suspended"`, `"tier":"` + fx.TierP + `"`, `"notes":"checked"`},
		TestAppFactory:  fx.Factory(),
	}).Test(t)

	(&tests.ApiScenario{
		Name:   "a tier of another program is refused",
		Method: http.MethodPatch, URL: url, Headers: pbatest.AuthHeaders(fx.Superuser.Token),
		Body:            strings.NewReader(`{"program":"` + fx.ProgramQ + `","tier":"` + fx.TierP + `"}`),
		ExpectedStatus:  400,
		ExpectedContent: []string{`"tier":{"code":"tier_program"`},
		TestAppFactory:  fx.Factory(),
	}).Test(t)
}

// TestPendingAffiliateLogsInButGetsNoLinks covers pending and suspended accounts.
func TestPendingAffiliateLogsInButGetsNoLinks(t *testing.T) {
	(&tests.ApiScenario{
		Name: "pending affiliate logs in", Method: http.MethodPost,
		URL:             "/api/collections/affiliates/auth-with-password",
		Body:            strings.NewReader(`{"identity":"pending@fixture.test","password":"` + pbatest.Password + `"}`),
		ExpectedStatus:  200,
		ExpectedContent: []string{`"token"`, `"status":"pending"`},
		TestAppFactory:  fx.Factory(),
	}).Test(t)
	(&tests.ApiScenario{
		Name: "pending affiliate cannot create a link", Method: http.MethodPost,
		URL: "/api/collections/links/records", Headers: pbatest.AuthHeaders(fx.Pending.Token),
		Body: strings.NewReader(`{"label":"x"}`), ExpectedStatus: 400, ExpectedContent: []string{`"status":400`},
		TestAppFactory: fx.Factory(),
		AfterTestFunc: func(t testing.TB, app *tests.TestApp, res *http.Response) {
			if n, _ := app.CountRecords(collections.Links); n != 2 {
				t.Fatalf("links = %d, want the 2 fixture links", n)
			}
		},
	}).Test(t)
	(&tests.ApiScenario{
		Name: "suspended affiliate sees no links", Method: http.MethodGet,
		URL: "/api/collections/links/records", Headers: pbatest.AuthHeaders(fx.A.Token),
		ExpectedStatus: 200, ExpectedContent: []string{`"totalItems":0`},
		TestAppFactory: fx.Factory(),
		BeforeTestFunc: func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) {
			a, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
			if err != nil {
				t.Fatal(err)
			}
			a.Set(collections.FieldStatus, collections.AffiliateSuspended)
			if err := app.Save(a); err != nil {
				t.Fatal(err)
			}
		},
	}).Test(t)
}

func TestLinkRules(t *testing.T) {
	scenarios := []struct {
		Name, Body, Token string
		ExpectedStatus    int
		ExpectedContent   []string
	}{
		{Name: "destination on an allowed subdomain", Body: `{"destination":"https://shop.example.com/p?x=1"}`,
			Token: fx.A.Token, ExpectedStatus: 200, ExpectedContent: []string{`"destination":"https://shop.example.com/p?x=1"`}},
		{Name: "destination off the program's domains", Body: `{"destination":"https://evil.test/"}`,
			Token: fx.A.Token, ExpectedStatus: 400, ExpectedContent: []string{`"destination":{"code":"invalid_destination"`}},
		{Name: "lookalike domain", Body: `{"destination":"https://example.com.evil.test/"}`,
			Token: fx.A.Token, ExpectedStatus: 400, ExpectedContent: []string{`"destination":{"code":"invalid_destination"`}},
		{Name: "credentials in the destination", Body: `{"destination":"https://example.com@evil.test/"}`,
			Token: fx.A.Token, ExpectedStatus: 400, ExpectedContent: []string{`"destination"`}},
		{Name: "javascript destination", Body: `{"destination":"javascript:alert(1)"}`,
			Token: fx.A.Token, ExpectedStatus: 400, ExpectedContent: []string{`"destination"`}},
		{Name: "B cannot create a link for A", Body: `{"affiliate":"` + fx.A.ID + `"}`,
			Token: fx.B.Token, ExpectedStatus: 400, ExpectedContent: []string{`"status":400`}},
		{Name: "A cannot create a link in another program", Body: `{"program":"` + fx.ProgramQ + `"}`,
			Token: fx.A.Token, ExpectedStatus: 400, ExpectedContent: []string{`"status":400`}},
		{Name: "a link code cannot take an affiliate's code", Body: `{"code":"affiliate-b"}`,
			Token: fx.A.Token, ExpectedStatus: 400, ExpectedContent: []string{`"code":{"code":"code_taken"`}},
	}
	for _, s := range scenarios {
		(&tests.ApiScenario{
			Name: s.Name, Method: http.MethodPost, URL: "/api/collections/links/records",
			Headers: pbatest.AuthHeaders(s.Token), Body: strings.NewReader(s.Body),
			ExpectedStatus: s.ExpectedStatus, ExpectedContent: s.ExpectedContent, TestAppFactory: fx.Factory(),
		}).Test(t)
	}
	(&tests.ApiScenario{
		Name: "A may not move its link to another affiliate", Method: http.MethodPatch,
		URL: "/api/collections/links/records/" + fx.RowsA.Link, Headers: pbatest.AuthHeaders(fx.A.Token),
		Body: strings.NewReader(`{"affiliate":"` + fx.B.ID + `"}`), ExpectedStatus: 403,
		ExpectedContent: []string{`"affiliate":{"code":"forbidden_field"`}, TestAppFactory: fx.Factory(),
	}).Test(t)
}

func TestProgramValidation(t *testing.T) {
	scenarios := []struct {
		name, body string
		status     int
		has        []string
	}{
		{"invalid cron spec", `{"payout_schedule":"every monday"}`, 400, []string{`"payout_schedule":{"code":"invalid_cron"`}},
		{"cron spec with a time zone", `{"payout_schedule":"CRON_TZ=Europe/Berlin 0 9 1 * *"}`, 200, []string{`CRON_TZ=Europe/Berlin 0 9 1 * *`}},
		{"unknown time zone in the spec", `{"payout_schedule":"CRON_TZ=Mars/Base 0 9 1 * *"}`, 400, []string{`"payout_schedule"`}},
		{"destination outside allowed domains", `{"destination":"https://other.test/"}`, 400, []string{`"destination":{"code":"invalid_destination"`}},
		{"bad domain in the list", `{"allowed_domains":["exa mple.com"]}`, 400, []string{`"allowed_domains":{"code":"invalid_domains"`}},
		{"domains are normalized", `{"allowed_domains":["Example.COM.","https://shop.example.com/x"]}`, 200, []string{`"allowed_domains":["example.com","shop.example.com"]`}},
		{"percent over 100%", `{"commission_value":10001}`, 400, []string{`"commission_value":{"code":"too_high"`}},
		{"months recurring needs months", `{"recurring":"months","recurring_months":0}`, 400, []string{`"recurring_months"`}},
		{"uppercase currency is lowered", `{"currency":"EUR"}`, 200, []string{`"currency":"eur"`}},
	}
	for _, s := range scenarios {
		(&tests.ApiScenario{
			Name: s.name, Method: http.MethodPatch, URL: "/api/collections/programs/records/" + fx.ProgramP,
			Headers: pbatest.AuthHeaders(fx.Superuser.Token), Body: strings.NewReader(s.body),
			ExpectedStatus: s.status, ExpectedContent: s.has, TestAppFactory: fx.Factory(),
		}).Test(t)
	}
}

// TestRealtimeDeliversOnlyOwnRecords subscribes A, B and a superuser to conversions and saves
// a conversion of A: A and the superuser hear of it, B does not.
func TestRealtimeDeliversOnlyOwnRecords(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	if _, err := apis.NewRouter(app); err != nil { // binds the realtime record events
		t.Fatal(err)
	}
	clients := map[string]subscriptions.Client{}
	for name, id := range map[string]string{"A": fx.A.ID, "B": fx.B.ID} {
		rec, err := app.FindRecordById(collections.Affiliates, id)
		if err != nil {
			t.Fatal(err)
		}
		clients[name] = subscribe(app, rec)
	}
	su, err := app.FindAuthRecordByEmail(core.CollectionNameSuperusers, fx.Superuser.Email)
	if err != nil {
		t.Fatal(err)
	}
	clients["superuser"] = subscribe(app, su)

	col, _ := app.FindCollectionByNameOrId(collections.Conversions)
	conv := core.NewRecord(col)
	conv.Load(map[string]any{"affiliate": fx.A.ID, "program": fx.ProgramP, "source": "manual", "external_id": "rt-1",
		"amount": 4200, "currency": "usd", "status": "approved", "occurred_at": time.Now().UTC()})
	if err := app.Save(conv); err != nil {
		t.Fatal(err)
	}
	for name, wantMessage := range map[string]bool{"A": true, "superuser": true, "B": false} {
		select {
		case msg := <-clients[name].Channel():
			if !wantMessage {
				t.Fatalf("%s received another affiliate's conversion: %s", name, msg.Data)
			}
			if !strings.Contains(string(msg.Data), "rt-1") {
				t.Fatalf("%s got an unexpected message %s", name, msg.Data)
			}
		case <-time.After(500 * time.Millisecond):
			if wantMessage {
				t.Fatalf("%s did not receive its conversion", name)
			}
		}
	}
}

func subscribe(app core.App, auth *core.Record) subscriptions.Client {
	return subscribeTo(app, auth, collections.Conversions+"/*")
}

// subscribeTo registers a realtime client authenticated as auth on topic.
func subscribeTo(app core.App, auth *core.Record, topic string) subscriptions.Client {
	c := subscriptions.NewDefaultClient()
	c.Set(apis.RealtimeClientAuthKey, auth)
	c.Subscribe(topic)
	app.SubscriptionsBroker().Register(c)
	return c
}
