package migrations

import (
	"slices"
	"testing"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
)

// Migration 1795480300: a new installation gets the limiter on with pbaffiliate's rules in
// place of PocketBase's shipped ones; an installation whose admin changed or added rules keeps
// theirs (also one of another audience under one of our labels, which PocketBase would refuse
// next to ours), and the catch-all "/api/" stays behind the more specific prefixes.
func TestRateLimitsMigration(t *testing.T) {
	app, err := tests.NewTestApp(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Cleanup()
	got := app.Settings().RateLimits
	if !got.Enabled || !slices.Equal(labels(got.Rules), labels(specificFirst(append(rateLimitRules(), merchantAPIRateLimits()...)))) {
		t.Fatalf("fresh install: enabled %v, rules %v", got.Enabled, got.Rules)
	}
	// The merchant API's rules (1795481700) are not this migration's: the rest is about it alone.
	settings := app.Settings()
	settings.RateLimits.Rules = slices.DeleteFunc(settings.RateLimits.Rules, func(r core.RateLimitRule) bool {
		return containsRule(merchantAPIRateLimits(), r, true)
	})
	if err := app.Save(settings); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got.Rules, core.RateLimitRule{Label: "*:auth", MaxRequests: 10, Duration: 60}) {
		t.Fatalf("PocketBase's *:auth (2 per 3 s) must be replaced: %v", got.Rules)
	}

	if err := rateLimitsDown(app); err != nil {
		t.Fatal(err)
	}
	got = app.Settings().RateLimits
	if got.Enabled || !slices.Equal(got.Rules, specificFirst(pocketBaseDefaultRules())) {
		t.Fatalf("down: enabled %v, rules %v; want PocketBase's defaults, off", got.Enabled, got.Rules)
	}

	settings = app.Settings()
	admins := []core.RateLimitRule{
		{Label: "*:auth", Audience: core.RateLimitRuleAudienceGuest, MaxRequests: 3, Duration: 60},
		{Label: "/api/", MaxRequests: 600, Duration: 10},
		{Label: "/api/pba/stats", MaxRequests: 5, Duration: 1},
	}
	settings.RateLimits.Rules = append(admins, core.RateLimitRule{Label: "/api/batch", MaxRequests: 3, Duration: 1})
	if err := app.Save(settings); err != nil {
		t.Fatal(err)
	}
	if err := rateLimitsUp(app); err != nil {
		t.Fatalf("up over an admin's rules: %v", err)
	}
	rules := app.Settings().RateLimits.Rules
	for _, r := range admins {
		if !slices.Contains(rules, r) {
			t.Errorf("the admin's rule %v is gone: %v", r, rules)
		}
	}
	if n := len(rules); n != len(rateLimitRules())+1 { // ours, theirs for *:auth and /api/, plus /api/pba/stats
		t.Errorf("%d rules, want %d: %v", n, len(rateLimitRules())+1, rules)
	}
	if i, j := slices.Index(labels(rules), "/api/pba/conversions/"), slices.Index(labels(rules), "/api/"); i < 0 || i > j {
		t.Errorf("/api/pba/conversions/ at %d, /api/ at %d: the catch-all must come last", i, j)
	}
	if rule, _ := app.Settings().RateLimits.FindRateLimitRule([]string{"POST /api/pba/conversions", "/api/pba/conversions"}); rule.Label != "/api/pba/conversions/" {
		t.Errorf("POST /api/pba/conversions matches %v", rule)
	}
}

func labels(rules []core.RateLimitRule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Label
	}
	return out
}

// Migration 1795481700: the merchant API's routes have rules of their own, ahead of the
// catch-all, and its down takes them away.
func TestMerchantAPIRateLimits(t *testing.T) {
	app, err := tests.NewTestApp(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Cleanup()
	limits := app.Settings().RateLimits
	for labels, want := range map[[2]string]string{
		{"GET /api/pba/affiliates", "/api/pba/affiliates"}:           "/api/pba/affiliates/",
		{"PATCH /api/pba/affiliates/x1", "/api/pba/affiliates/x1"}:   "/api/pba/affiliates/",
		{"GET /api/pba/sales", "/api/pba/sales"}:                     "GET /api/pba/sales",
		{"GET /api/pba/payouts", "/api/pba/payouts"}:                 "GET /api/pba/payouts",
		{"GET /api/pba/payouts/preview", "/api/pba/payouts/preview"}: "/api/",
	} {
		if rule, _ := limits.FindRateLimitRule(labels[:], core.RateLimitRuleAudienceAll, core.RateLimitRuleAudienceGuest); rule.Label != want {
			t.Errorf("%s matches %v, want %s", labels[0], rule, want)
		}
	}
}
