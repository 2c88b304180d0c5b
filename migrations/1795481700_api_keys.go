package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// API keys for the merchant's servers (hooks/apikeys.go): superusers only (no API rules). The
// key itself is never stored: `hash` is the SHA-256 of it (hidden, unique), `prefix` its first
// characters for lists. Keys are created by POST /api/pba/api-keys, which shows the key once.
//
// Rate limits: the merchant API routes that API keys call get rules of their own (per client
// IP, like the conversions API's); the other routes a key may call are already covered (the
// conversions API and postback by 1795480300, the rest by its "/api/" catch-all).
func init() {
	m.Register(func(app core.App) error {
		c := core.NewBaseCollection("api_keys")
		c.Fields.Add(
			&core.TextField{Name: "name", Required: true, Max: 100},
			&core.TextField{Name: "prefix", Max: 20, Help: "The key's first characters, to recognise it in lists."},
			&core.TextField{Name: "hash", Hidden: true, Max: 64, Help: "Hex SHA-256 of the key; the key itself is never stored."},
			&core.SelectField{Name: "scopes", Required: true, MaxSelect: 6,
				Values: []string{"sales:write", "sales:read", "affiliates:read", "affiliates:write", "stats:read", "payouts:read"}},
			&core.DateField{Name: "last_used", Help: "Written at most once a minute per key."},
			&core.BoolField{Name: "revoked"},
			&core.DateField{Name: "revoked_at"},
			&core.TextField{Name: "created_by", Max: 255, Help: "Email of the superuser who created the key."},
			&core.AutodateField{Name: "created", OnCreate: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		c.AddIndex("idx_api_keys_hash", true, "hash", "")
		if err := app.Save(c); err != nil {
			return err
		}
		settings := app.Settings()
		for _, r := range merchantAPIRateLimits() {
			if !containsRule(settings.RateLimits.Rules, r, false) {
				settings.RateLimits.Rules = append(settings.RateLimits.Rules, r)
			}
		}
		settings.RateLimits.Rules = specificFirst(settings.RateLimits.Rules)
		return app.Save(settings)
	}, func(app core.App) error {
		settings := app.Settings()
		rules := settings.RateLimits.Rules[:0:0]
		for _, r := range settings.RateLimits.Rules {
			if !containsRule(merchantAPIRateLimits(), r, true) {
				rules = append(rules, r)
			}
		}
		settings.RateLimits.Rules = rules
		if err := app.Save(settings); err != nil {
			return err
		}
		c, err := app.FindCollectionByNameOrId("api_keys")
		if err != nil {
			return err
		}
		return app.Delete(c)
	})
}

// merchantAPIRateLimits are the rules of the merchant API's routes (per client IP, like the
// conversions API's): the affiliates (a prefix rule: it also matches /api/pba/affiliates
// itself), sales and payouts.
func merchantAPIRateLimits() []core.RateLimitRule {
	return []core.RateLimitRule{
		{Label: "/api/pba/affiliates/", MaxRequests: 300, Duration: 60},
		{Label: "GET /api/pba/sales", MaxRequests: 300, Duration: 60},
		{Label: "GET /api/pba/payouts", MaxRequests: 300, Duration: 60},
	}
}
