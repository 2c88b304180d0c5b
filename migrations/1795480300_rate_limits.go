package migrations

import (
	"slices"
	"strings"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// PocketBase's rate limiter, off by default, is turned on with rules against brute force,
// signup floods and floods of the merchant APIs. Limits count requests per client IP (as
// the dashboard's trusted-proxy settings resolve it) in fixed windows; superusers and the
// settings' excluded IPs are never limited. The tracked link /r/{code} has no rule, so it is
// never limited and keeps its direct path ahead of the router. docs/operations.md explains
// each rule.
//
// Rules an admin already changed are kept; PocketBase's untouched shipped rules are replaced.
func init() {
	m.Register(rateLimitsUp, rateLimitsDown)
}

// rateLimitRules are pbaffiliate's rules, most specific first: PocketBase takes the first
// rule whose label matches, and "/api/" is the catch-all prefix.
func rateLimitRules() []core.RateLimitRule {
	return []core.RateLimitRule{
		// Sign-in on every auth collection (affiliates, superusers, users): password, OAuth2, OTP.
		{Label: "*:auth", MaxRequests: 10, Duration: 60},
		// Mails on request: each one lands in somebody's inbox.
		{Label: "*:requestPasswordReset", MaxRequests: 5, Duration: 600},
		{Label: "*:requestVerification", MaxRequests: 5, Duration: 600},
		{Label: "*:requestEmailChange", MaxRequests: 5, Duration: 600},
		{Label: "*:requestOTP", MaxRequests: 5, Duration: 600},
		// Affiliate signup (superusers creating affiliates are not limited).
		{Label: "affiliates:create", MaxRequests: 10, Duration: 3600},
		// Other records API creates (affiliates' links), PocketBase's default.
		{Label: "*:create", MaxRequests: 20, Duration: 5},
		// Merchants' servers: the postback and the conversions API (create and update form).
		{Label: "GET /api/pba/postback", MaxRequests: 300, Duration: 60},
		{Label: "/api/pba/conversions/", MaxRequests: 300, Duration: 60},
		// track.js clicks: visitors behind one NAT share an IP, so only a flood is refused.
		{Label: "POST /api/pba/clicks", MaxRequests: 300, Duration: 10},
		// Signed provider webhooks: bursts are legitimate, a 429 only delays them (retries).
		{Label: "POST /api/pba/stripe/webhook", MaxRequests: 1000, Duration: 10},
		{Label: "POST /api/pba/resend/webhook", MaxRequests: 1000, Duration: 10},
		// PocketBase's defaults for the rest of the API.
		{Label: "/api/batch", MaxRequests: 3, Duration: 1},
		{Label: "/api/", MaxRequests: 300, Duration: 10},
	}
}

// pocketBaseDefaultRules are the rules PocketBase ships (core.NewDefaultSettings, v0.39),
// written out so that a later PocketBase changing its defaults does not change this migration.
func pocketBaseDefaultRules() []core.RateLimitRule {
	return []core.RateLimitRule{
		{Label: "*:auth", MaxRequests: 2, Duration: 3},
		{Label: "*:create", MaxRequests: 20, Duration: 5},
		{Label: "/api/batch", MaxRequests: 3, Duration: 1},
		{Label: "/api/", MaxRequests: 300, Duration: 10},
	}
}

func rateLimitsUp(app core.App) error {
	settings := app.Settings()
	var admins []core.RateLimitRule // rules an admin added or changed: theirs win
	for _, r := range settings.RateLimits.Rules {
		if !containsRule(pocketBaseDefaultRules(), r, true) {
			admins = append(admins, r)
		}
	}
	rules := admins
	for _, r := range rateLimitRules() {
		if !containsRule(admins, r, false) {
			rules = append(rules, r)
		}
	}
	settings.RateLimits.Rules = specificFirst(rules)
	settings.RateLimits.Enabled = true
	return app.Save(settings)
}

func rateLimitsDown(app core.App) error {
	settings := app.Settings()
	rules := settings.RateLimits.Rules[:0:0]
	for _, r := range settings.RateLimits.Rules {
		if !containsRule(rateLimitRules(), r, true) {
			rules = append(rules, r)
		}
	}
	for _, r := range pocketBaseDefaultRules() {
		if !containsRule(rules, r, false) {
			rules = append(rules, r)
		}
	}
	settings.RateLimits.Rules = specificFirst(rules)
	settings.RateLimits.Enabled = false
	return app.Save(settings)
}

// containsRule reports whether rules has a rule with r's label (and, when exact, r's audience
// and limit). Any audience counts when not exact: PocketBase refuses two rules of one label
// where either is for everyone.
func containsRule(rules []core.RateLimitRule, r core.RateLimitRule, exact bool) bool {
	for _, x := range rules {
		if x.Label == r.Label && (!exact || x.Audience == r.Audience && x.MaxRequests == r.MaxRequests && x.Duration == r.Duration) {
			return true
		}
	}
	return false
}

// specificFirst orders path-prefix rules (labels ending in "/") longest first, after every
// other rule: PocketBase tries prefix rules in list order, so "/api/pba/conversions/" must come
// before the catch-all "/api/". Exact labels match regardless of order.
func specificFirst(rules []core.RateLimitRule) []core.RateLimitRule {
	rules = slices.Clone(rules)
	slices.SortStableFunc(rules, func(a, b core.RateLimitRule) int {
		pa, pb := strings.HasSuffix(a.Label, "/"), strings.HasSuffix(b.Label, "/")
		switch {
		case pa != pb && pa:
			return 1
		case pa != pb:
			return -1
		case pa:
			return len(b.Label) - len(a.Label)
		}
		return 0
	})
	return rules
}
