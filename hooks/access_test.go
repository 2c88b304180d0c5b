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

// actor is who sends a request in the matrix.
type actor struct {
	name  string
	token string
}

func actors() []actor {
	return []actor{{"guest", ""}, {"A", fx.A.Token}, {"B", fx.B.Token}, {"superuser", fx.Superuser.Token}}
}

// expectation is one cell of the matrix: the status and what the body must (not) contain.
type expectation struct {
	status int
	has    []string
	hasNot []string
}

// matrixRow is one collection: A's row id and, per actor, what each operation answers.
type matrixRow struct {
	collection string
	id         string // A's row (view/update/delete target)
	createBody string
	updateBody string
	list       map[string]expectation
	view       map[string]expectation
	create     map[string]expectation
	update     map[string]expectation
	delete     map[string]expectation
}

func TestAccessMatrix(t *testing.T) {
	forbidden := expectation{status: 403, has: []string{`"status":403`}}
	notFound := expectation{status: 404, has: []string{`"status":404`}}
	empty := expectation{status: 200, has: []string{`"totalItems":0`}}
	deleted := expectation{status: 204}
	onlySuperuser := map[string]expectation{"guest": forbidden, "A": forbidden, "B": forbidden}

	// ownedList: A sees exactly its own row, B and guests never see it, superusers see both.
	ownedList := func(rowA, rowB string) map[string]expectation {
		return map[string]expectation{
			"guest":     empty,
			"A":         {status: 200, has: []string{`"totalItems":1`, rowA}, hasNot: []string{rowB}},
			"B":         {status: 200, has: []string{`"totalItems":1`, rowB}, hasNot: []string{rowA}},
			"superuser": {status: 200, has: []string{rowA, rowB}},
		}
	}
	ownedView := func(rowA string, hidden ...string) map[string]expectation {
		return map[string]expectation{
			"guest":     notFound,
			"A":         {status: 200, has: []string{rowA}, hasNot: hidden},
			"B":         notFound,
			"superuser": {status: 200, has: []string{rowA}},
		}
	}
	ledger := func(name, rowA, rowB string) matrixRow {
		return matrixRow{
			collection: name, id: rowA,
			createBody: fmt.Sprintf(`{"affiliate":%q}`, fx.A.ID),
			updateBody: `{"amount":1}`,
			list:       ownedList(rowA, rowB),
			view:       ownedView(rowA),
			create:     onlySuperuser,
			update:     onlySuperuser,
			delete:     onlySuperuser,
		}
	}

	rows := []matrixRow{
		{
			collection: "affiliates", id: fx.A.ID,
			updateBody: `{"name":"A renamed"}`,
			list: map[string]expectation{
				"guest":     empty,
				"A":         {status: 200, has: []string{`"totalItems":1`, fx.A.ID}, hasNot: []string{fx.B.ID, "secret note"}},
				"B":         {status: 200, has: []string{`"totalItems":1`, fx.B.ID}, hasNot: []string{fx.A.ID, "secret note"}},
				"superuser": {status: 200, has: []string{fx.A.ID, fx.B.ID, "secret note about Affiliate A"}},
			},
			view: ownedView(fx.A.ID, "secret note", `"notes"`),
			update: map[string]expectation{
				"guest":     notFound,
				"A":         {status: 200, has: []string{"A renamed"}},
				"B":         notFound,
				"superuser": {status: 200, has: []string{"A renamed"}},
			},
			delete: map[string]expectation{"guest": forbidden, "A": forbidden, "B": forbidden},
		},
		{
			collection: "programs", id: fx.ProgramP,
			createBody: `{"name":"X","destination":"https://x.example.com/"}`,
			updateBody: `{"commission_value":9000}`,
			list: map[string]expectation{
				"guest":     empty,
				"A":         {status: 200, has: []string{`"totalItems":1`, fx.ProgramP}, hasNot: []string{fx.ProgramQ, "postback_secret"}},
				"B":         {status: 200, has: []string{`"totalItems":1`, fx.ProgramP}, hasNot: []string{fx.ProgramQ, "postback_secret"}},
				"superuser": {status: 200, has: []string{fx.ProgramP, fx.ProgramQ}},
			},
			view: map[string]expectation{
				"guest":     notFound,
				"A":         {status: 200, has: []string{fx.ProgramP}, hasNot: []string{"postback_secret", fx.SecretP}},
				"B":         {status: 200, has: []string{fx.ProgramP}, hasNot: []string{"postback_secret"}},
				"superuser": {status: 200, has: []string{fx.ProgramP, fx.SecretP}},
			},
			create: map[string]expectation{"guest": forbidden, "A": forbidden, "B": forbidden,
				"superuser": {status: 200, has: []string{`"slug":"x"`, `"cookie_days":60`, `"hold_days":30`, `"min_payout":5000`, `"payout_schedule":"0 9 1 * *"`}}},
			update: map[string]expectation{"guest": forbidden, "A": forbidden, "B": forbidden,
				"superuser": {status: 200, has: []string{`"commission_value":9000`}}},
			delete: map[string]expectation{"guest": forbidden, "A": forbidden, "B": forbidden,
				"superuser": {status: 400, has: []string{"required relation"}}},
		},
		{
			collection: "tiers", id: fx.TierP,
			createBody: fmt.Sprintf(`{"program":%q,"name":"Silver","rank":0}`, fx.ProgramP),
			updateBody: `{"commission_value":1}`,
			list: map[string]expectation{
				"guest":     empty,
				"A":         {status: 200, has: []string{`"totalItems":1`, fx.TierP}},
				"B":         {status: 200, has: []string{`"totalItems":1`, fx.TierP}},
				"superuser": {status: 200, has: []string{fx.TierP}},
			},
			view: map[string]expectation{"guest": notFound, "A": {status: 200, has: []string{fx.TierP}},
				"B": {status: 200, has: []string{fx.TierP}}, "superuser": {status: 200, has: []string{fx.TierP}}},
			create: onlySuperuser,
			update: onlySuperuser,
			delete: onlySuperuser,
		},
		{
			collection: "links", id: fx.RowsA.Link,
			createBody: `{"label":"new link"}`,
			updateBody: `{"label":"renamed link"}`,
			list:       ownedList(fx.RowsA.Link, fx.RowsB.Link),
			view:       ownedView(fx.RowsA.Link),
			create: map[string]expectation{
				"guest":     {status: 400},
				"A":         {status: 200, has: []string{`"label":"new link"`, fx.A.ID}},
				"B":         {status: 200, has: []string{`"label":"new link"`, fx.B.ID}, hasNot: []string{fx.A.ID}},
				"superuser": {status: 400, has: []string{`"affiliate"`}},
			},
			update: map[string]expectation{
				"guest":     notFound,
				"A":         {status: 200, has: []string{"renamed link"}},
				"B":         notFound,
				"superuser": {status: 200, has: []string{"renamed link"}},
			},
			delete: map[string]expectation{"guest": forbidden, "A": forbidden, "B": forbidden, "superuser": deleted},
		},
		ledger("clicks", fx.RowsA.Click, fx.RowsB.Click),
		ledger("conversions", fx.RowsA.Conversion, fx.RowsB.Conversion),
		ledger("commissions", fx.RowsA.Commission, fx.RowsB.Commission),
		ledger("payouts", fx.RowsA.Payout, fx.RowsB.Payout),
		ledger("stats_daily", fx.RowsA.Stats, fx.RowsB.Stats),
	}
	// The payout's idempotency key is for the payout engine only.
	rows[7].view["A"] = expectation{status: 200, has: []string{fx.RowsA.Payout}, hasNot: []string{"idempotency_key", "key-" + fx.A.ID}}
	// stats_daily is derived from the facts: superusers cannot write it by hand either.
	derived := map[string]expectation{"guest": forbidden, "A": forbidden, "B": forbidden, "superuser": {status: 400, has: []string{`"derived"`}}}
	rows[8].create, rows[8].update, rows[8].delete = derived, derived, derived

	for _, row := range rows {
		base := "/api/collections/" + row.collection + "/records"
		ops := []struct {
			name, method, url, body string
			cells                   map[string]expectation
		}{
			{"list", http.MethodGet, base + "?perPage=100", "", row.list},
			{"view", http.MethodGet, base + "/" + row.id, "", row.view},
			{"create", http.MethodPost, base, row.createBody, row.create},
			{"update", http.MethodPatch, base + "/" + row.id, row.updateBody, row.update},
			{"delete", http.MethodDelete, base + "/" + row.id, "", row.delete},
		}
		for _, op := range ops {
			for _, who := range actors() {
				want, ok := op.cells[who.name]
				if !ok {
					continue // covered by a dedicated test (e.g. signup)
				}
				s := tests.ApiScenario{
					Name:               fmt.Sprintf("%s %s as %s", op.name, row.collection, who.name),
					Method:             op.method,
					URL:                op.url,
					Headers:            pbatest.AuthHeaders(who.token),
					ExpectedStatus:     want.status,
					ExpectedContent:    want.has,
					NotExpectedContent: want.hasNot,
					TestAppFactory:     fx.Factory(),
				}
				if op.body != "" {
					s.Body = strings.NewReader(op.body)
				}
				if len(s.ExpectedContent) == 0 && len(s.NotExpectedContent) == 0 && want.status != 204 {
					s.NotExpectedContent = []string{fx.A.Email} // the body is not empty: still assert no leak
				}
				s.Test(t)
			}
		}
	}
}

// TestNoLeakThroughExpandOrFilter tries the indirect ways B could reach A's rows.
func TestNoLeakThroughExpandOrFilter(t *testing.T) {
	leaks := []string{fx.A.ID, fx.A.Email, fx.RowsA.Link, fx.RowsA.Conversion, fx.RowsA.Click}
	urls := []string{
		"/api/collections/programs/records?expand=affiliates_via_program,links_via_program,conversions_via_program,clicks_via_program",
		"/api/collections/programs/records/" + fx.ProgramP + "?expand=affiliates_via_program,commissions_via_program,payouts_via_affiliate",
		"/api/collections/conversions/records?expand=affiliate,click,link,commissions_via_conversion",
		"/api/collections/conversions/records?filter=" + urlQuote(`affiliate="`+fx.A.ID+`"`),
		"/api/collections/affiliates/records?filter=" + urlQuote(`email="`+fx.A.Email+`"`),
		"/api/collections/links/records?filter=" + urlQuote(`affiliate.email="`+fx.A.Email+`"`),
		"/api/collections/tiers/records?expand=affiliates_via_tier,program",
		"/api/collections/stats_daily/records?filter=" + urlQuote(`link="`+fx.RowsA.Link+`"`),
	}
	for _, u := range urls {
		(&tests.ApiScenario{
			Name:               "B " + u,
			Method:             http.MethodGet,
			URL:                u,
			Headers:            pbatest.AuthHeaders(fx.B.Token),
			ExpectedStatus:     200,
			NotExpectedContent: leaks,
			TestAppFactory:     fx.Factory(),
		}).Test(t)
	}
}

func urlQuote(s string) string {
	return strings.NewReplacer(" ", "%20", `"`, "%22", "=", "%3D", "@", "%40").Replace(s)
}

// TestAccessToConversionBookkeeping: coupons and webhook deliveries are the affiliate's own;
// Stripe bookkeeping is for superusers only; none of them is writable through the API.
func TestAccessToConversionBookkeeping(t *testing.T) {
	for _, tc := range []struct {
		collection, who string
		status          int
		has             string
	}{
		{"coupons", "A", 200, `"totalItems":0`},
		{"coupons", "guest", 200, `"totalItems":0`},
		{"webhook_deliveries", "B", 200, `"totalItems":0`},
		{"stripe_events", "A", 403, `"status":403`},
		{"stripe_events", "guest", 403, `"status":403`},
		{"stripe_pending", "B", 403, `"status":403`},
		{"stripe_events", "superuser", 200, `"totalItems":0`},
	} {
		token := map[string]string{"A": fx.A.Token, "B": fx.B.Token, "superuser": fx.Superuser.Token}[tc.who]
		(&tests.ApiScenario{
			Name: "list " + tc.collection + " as " + tc.who, Method: http.MethodGet,
			URL: "/api/collections/" + tc.collection + "/records", Headers: pbatest.AuthHeaders(token),
			ExpectedStatus: tc.status, ExpectedContent: []string{tc.has}, TestAppFactory: fx.Factory(),
		}).Test(t)
	}
	for _, collection := range []string{"coupons", "webhook_deliveries", "stripe_events", "stripe_pending"} {
		(&tests.ApiScenario{
			Name: "A creates in " + collection, Method: http.MethodPost,
			URL: "/api/collections/" + collection + "/records", Headers: pbatest.AuthHeaders(fx.A.Token),
			Body: strings.NewReader(`{"code":"mine","affiliate":"` + fx.A.ID + `","program":"` + fx.ProgramP + `"}`), ExpectedStatus: 403,
			ExpectedContent: []string{`"status":403`}, TestAppFactory: fx.Factory(),
		}).Test(t)
	}
	(&tests.ApiScenario{
		Name: "A cannot set its own webhook secret", Method: http.MethodPatch,
		URL: "/api/collections/affiliates/records/" + fx.A.ID, Headers: pbatest.AuthHeaders(fx.A.Token),
		Body: strings.NewReader(`{"webhook_secret":"mine"}`), ExpectedStatus: 403,
		ExpectedContent: []string{`"webhook_secret":{"code":"forbidden_field"`}, TestAppFactory: fx.Factory(),
	}).Test(t)
}
