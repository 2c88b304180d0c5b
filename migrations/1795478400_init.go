// Package migrations is pbaffiliate's schema history: one Go migration per schema step,
// registered with PocketBase's migration runner. A landed migration is never edited; a change
// is a new file. The migrations use string literals on purpose (not the collections package's
// constants) so that history stays exactly what it was when it ran.
package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/security"
	"github.com/pocketbase/pocketbase/tools/types"
)

// ownRule lets an affiliate see only rows that belong to it.
const ownRule = `@request.auth.collectionName = "affiliates" && affiliate = @request.auth.id`

func init() {
	m.Register(initUp, initDown)
}

func initUp(app core.App) error {
	programs := core.NewBaseCollection("programs")
	programs.ListRule = types.Pointer(`@request.auth.collectionName = "affiliates" && @request.auth.program = id`)
	programs.ViewRule = programs.ListRule
	programs.Fields.Add(
		&core.TextField{Name: "name", Required: true, Max: 200, Presentable: true},
		&core.TextField{Name: "slug", Required: true, Pattern: `^[a-z0-9][a-z0-9-]{0,62}$`},
		&core.URLField{Name: "destination", Required: true, Help: "Default landing page of the program's links."},
		&core.JSONField{Name: "allowed_domains", MaxSize: 8192, Help: `Hosts links may point to, e.g. ["example.com"]; subdomains included.`},
		&core.TextField{Name: "currency", Required: true, Pattern: `^[a-z]{3}$`, Help: "Lowercase ISO 4217 code."},
		&core.SelectField{Name: "commission_type", Required: true, MaxSelect: 1, Values: []string{"percent", "flat"}},
		&core.NumberField{Name: "commission_value", OnlyInt: true, Min: types.Pointer(0.0), Help: "Basis points (2000 = 20%) for percent, minor units for flat."},
		&core.SelectField{Name: "recurring", Required: true, MaxSelect: 1, Values: []string{"first", "months", "lifetime"}},
		&core.NumberField{Name: "recurring_months", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.NumberField{Name: "cookie_days", OnlyInt: true, Min: types.Pointer(1.0), Max: types.Pointer(3650.0)},
		&core.SelectField{Name: "attribution", Required: true, MaxSelect: 1, Values: []string{"last_click", "first_click"}},
		&core.NumberField{Name: "hold_days", OnlyInt: true, Min: types.Pointer(0.0), Max: types.Pointer(365.0)},
		&core.NumberField{Name: "min_payout", OnlyInt: true, Min: types.Pointer(0.0), Help: "Minor units."},
		&core.TextField{Name: "payout_schedule", Required: true, Max: 200, Help: "Cron spec; CRON_TZ=Area/City prefix allowed."},
		&core.BoolField{Name: "auto_approve"},
		&core.BoolField{Name: "active"},
		&core.TextField{Name: "postback_secret", Hidden: true, Min: 24, Max: 128, Help: "Bearer secret of the conversions API and the postback key."},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	programs.AddIndex("idx_programs_slug", true, "slug", "")
	if err := app.Save(programs); err != nil {
		return fmt.Errorf("create programs: %w", err)
	}

	tiers := core.NewBaseCollection("tiers")
	tiers.ListRule = types.Pointer(`@request.auth.collectionName = "affiliates" && @request.auth.program = program`)
	tiers.ViewRule = tiers.ListRule
	tiers.Fields.Add(
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.TextField{Name: "name", Required: true, Max: 100, Presentable: true},
		&core.NumberField{Name: "rank", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.NumberField{Name: "min_revenue", OnlyInt: true, Min: types.Pointer(0.0), Help: "Minor units per calendar month."},
		&core.NumberField{Name: "min_conversions", OnlyInt: true, Min: types.Pointer(0.0), Help: "Per calendar month."},
		&core.NumberField{Name: "commission_value", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	tiers.AddIndex("idx_tiers_program_rank", true, "program, rank", "")
	if err := app.Save(tiers); err != nil {
		return fmt.Errorf("create tiers: %w", err)
	}

	affiliates := core.NewAuthCollection("affiliates")
	affiliates.ListRule = types.Pointer(`id = @request.auth.id`)
	affiliates.ViewRule = affiliates.ListRule
	affiliates.CreateRule = types.Pointer(`@request.body.status:isset = false && @request.body.tier:isset = false && @request.body.commission_override:isset = false && @request.body.stripe_account_id:isset = false && @request.body.payouts_enabled:isset = false && @request.body.notes:isset = false && @request.body.tags:isset = false`)
	affiliates.UpdateRule = types.Pointer(`id = @request.auth.id && @request.body.status:isset = false && @request.body.code:isset = false && @request.body.program:isset = false && @request.body.tier:isset = false && @request.body.commission_override:isset = false && @request.body.stripe_account_id:isset = false && @request.body.payouts_enabled:isset = false && @request.body.notes:isset = false && @request.body.tags:isset = false`)
	affiliates.DeleteRule = nil
	affiliates.Fields.Add(
		&core.TextField{Name: "name", Required: true, Max: 200, Presentable: true},
		&core.TextField{Name: "code", Required: true, Pattern: `^[a-z0-9][a-z0-9-]{2,31}$`, Help: "Used in /r/{code}; generated when empty."},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"pending", "approved", "rejected", "suspended"}},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id},
		&core.RelationField{Name: "tier", MaxSelect: 1, CollectionId: tiers.Id},
		&core.NumberField{Name: "commission_override", OnlyInt: true, Min: types.Pointer(0.0), Help: "Beats tier and program when > 0; same unit as the program's value."},
		&core.SelectField{Name: "payout_method", MaxSelect: 1, Values: []string{"stripe", "manual"}},
		&core.TextField{Name: "stripe_account_id", Max: 100},
		&core.BoolField{Name: "payouts_enabled"},
		&core.EmailField{Name: "payout_email"},
		&core.SelectField{Name: "preferred_channel", MaxSelect: 1, Values: []string{"email", "none"}},
		&core.URLField{Name: "webhook_url"},
		&core.TextField{Name: "timezone", Max: 64, Help: "IANA zone, e.g. Europe/Berlin."},
		&core.JSONField{Name: "tags", MaxSize: 4096},
		&core.TextField{Name: "notes", Hidden: true, Max: 10000, Help: "Admins only."},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	affiliates.AddIndex("idx_affiliates_code", true, "code", "")
	affiliates.AddIndex("idx_affiliates_program", false, "program, status", "")
	if err := app.Save(affiliates); err != nil {
		return fmt.Errorf("create affiliates: %w", err)
	}

	links := core.NewBaseCollection("links")
	links.ListRule = types.Pointer(ownRule + ` && @request.auth.status = "approved"`)
	links.ViewRule = links.ListRule
	links.CreateRule = types.Pointer(`@request.auth.collectionName = "affiliates" && @request.auth.status = "approved" && (affiliate = "" || affiliate = @request.auth.id) && (program = "" || program = @request.auth.program)`)
	links.UpdateRule = types.Pointer(ownRule + ` && @request.auth.status = "approved" && @request.body.affiliate:isset = false && @request.body.program:isset = false && @request.body.code:isset = false`)
	links.Fields.Add(
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.TextField{Name: "code", Required: true, Pattern: `^[a-z0-9][a-z0-9-]{2,31}$`, Presentable: true},
		&core.URLField{Name: "destination", Required: true},
		&core.TextField{Name: "label", Max: 200},
		&core.TextField{Name: "sub_id", Max: 100},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	links.AddIndex("idx_links_code", true, "code", "")
	links.AddIndex("idx_links_affiliate", false, "affiliate", "")
	if err := app.Save(links); err != nil {
		return fmt.Errorf("create links: %w", err)
	}

	clicks := core.NewBaseCollection("clicks")
	clicks.ListRule = types.Pointer(ownRule)
	clicks.ViewRule = clicks.ListRule
	clicks.Fields.Add(
		&core.RelationField{Name: "link", MaxSelect: 1, CollectionId: links.Id},
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.TextField{Name: "visitor", Max: 64},
		&core.TextField{Name: "ip_hash", Max: 64, Help: "HMAC of the IP with PBA_IP_SALT; the raw IP is never stored."},
		&core.TextField{Name: "user_agent", Max: 512},
		&core.TextField{Name: "referrer", Max: 2048},
		&core.TextField{Name: "country", Max: 2},
		&core.TextField{Name: "sub_id", Max: 100},
		&core.BoolField{Name: "unique"},
		&core.SelectField{Name: "flag", MaxSelect: 1, Values: []string{"bot", "rate", "self"}},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	clicks.AddIndex("idx_clicks_affiliate", false, "affiliate, created", "")
	clicks.AddIndex("idx_clicks_link", false, "link, visitor, created", "")
	if err := app.Save(clicks); err != nil {
		return fmt.Errorf("create clicks: %w", err)
	}

	conversions := core.NewBaseCollection("conversions")
	conversions.ListRule = types.Pointer(ownRule)
	conversions.ViewRule = conversions.ListRule
	conversions.Fields.Add(
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id},
		&core.RelationField{Name: "click", MaxSelect: 1, CollectionId: clicks.Id},
		&core.RelationField{Name: "link", MaxSelect: 1, CollectionId: links.Id},
		&core.SelectField{Name: "source", Required: true, MaxSelect: 1, Values: []string{"stripe", "postback", "api", "coupon", "manual"}},
		&core.TextField{Name: "external_id", Required: true, Max: 255},
		&core.TextField{Name: "customer", Max: 255},
		&core.NumberField{Name: "amount", OnlyInt: true, Min: types.Pointer(0.0), Help: "Minor units."},
		&core.TextField{Name: "currency", Required: true, Pattern: `^[a-z]{3}$`},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"pending", "approved", "rejected", "refunded"}},
		&core.TextField{Name: "reason", Max: 200},
		&core.DateField{Name: "occurred_at", Required: true},
		&core.TextField{Name: "subscription_id", Max: 255},
		&core.JSONField{Name: "metadata", MaxSize: 16384},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	conversions.AddIndex("idx_conversions_source_external", true, "source, external_id", "")
	conversions.AddIndex("idx_conversions_affiliate", false, "affiliate, occurred_at", "")
	conversions.AddIndex("idx_conversions_status", false, "status", "")
	if err := app.Save(conversions); err != nil {
		return fmt.Errorf("create conversions: %w", err)
	}

	payouts := core.NewBaseCollection("payouts")
	payouts.ListRule = types.Pointer(ownRule)
	payouts.ViewRule = payouts.ListRule
	payouts.Fields.Add(
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id},
		&core.NumberField{Name: "amount", OnlyInt: true, Min: types.Pointer(0.0), Help: "Minor units: the sum of the payout's commissions."},
		&core.TextField{Name: "currency", Required: true, Pattern: `^[a-z]{3}$`},
		&core.SelectField{Name: "method", Required: true, MaxSelect: 1, Values: []string{"stripe", "manual"}},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"pending", "processing", "paid", "failed", "canceled"}},
		&core.TextField{Name: "stripe_transfer_id", Max: 255},
		&core.TextField{Name: "idempotency_key", Hidden: true, Max: 255},
		&core.NumberField{Name: "attempts", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.TextField{Name: "error", Max: 2000},
		&core.DateField{Name: "period_end"},
		&core.DateField{Name: "paid_at"},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	payouts.AddIndex("idx_payouts_affiliate", false, "affiliate, status", "")
	payouts.AddIndex("idx_payouts_idempotency_key", true, "idempotency_key", "idempotency_key != ''")
	if err := app.Save(payouts); err != nil {
		return fmt.Errorf("create payouts: %w", err)
	}

	commissions := core.NewBaseCollection("commissions")
	commissions.ListRule = types.Pointer(ownRule)
	commissions.ViewRule = commissions.ListRule
	commissions.Fields.Add(
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id},
		&core.RelationField{Name: "conversion", MaxSelect: 1, CollectionId: conversions.Id},
		&core.SelectField{Name: "kind", Required: true, MaxSelect: 1, Values: []string{"sale", "recurring", "bonus", "clawback", "adjustment"}},
		&core.NumberField{Name: "amount", OnlyInt: true, Help: "Minor units; negative for clawbacks."},
		&core.TextField{Name: "currency", Required: true, Pattern: `^[a-z]{3}$`},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"pending", "payable", "paid", "void"}},
		&core.DateField{Name: "payable_at"},
		&core.RelationField{Name: "payout", MaxSelect: 1, CollectionId: payouts.Id},
		&core.JSONField{Name: "rule", MaxSize: 8192, Help: "Snapshot of why this amount."},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	commissions.AddIndex("idx_commissions_conversion_kind", true, "conversion, kind", "conversion != ''")
	commissions.AddIndex("idx_commissions_affiliate", false, "affiliate, status, currency", "")
	commissions.AddIndex("idx_commissions_payout", false, "payout", "")
	commissions.AddIndex("idx_commissions_status_payable", false, "status, payable_at", "")
	if err := app.Save(commissions); err != nil {
		return fmt.Errorf("create commissions: %w", err)
	}

	stats := core.NewBaseCollection("stats_daily")
	stats.ListRule = types.Pointer(ownRule)
	stats.ViewRule = stats.ListRule
	stats.Fields.Add(
		&core.TextField{Name: "day", Required: true, Pattern: `^\d{4}-\d{2}-\d{2}$`, Help: "UTC day."},
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.RelationField{Name: "link", MaxSelect: 1, CollectionId: links.Id},
		&core.NumberField{Name: "clicks", OnlyInt: true},
		&core.NumberField{Name: "unique_clicks", OnlyInt: true},
		&core.NumberField{Name: "conversions", OnlyInt: true},
		&core.NumberField{Name: "revenue", OnlyInt: true, Help: "Minor units, program currency."},
		&core.NumberField{Name: "commission", OnlyInt: true, Help: "Minor units, program currency."},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	stats.AddIndex("idx_stats_daily_key", true, "day, affiliate, program, link", "")
	stats.AddIndex("idx_stats_daily_affiliate", false, "affiliate, day", "")
	if err := app.Save(stats); err != nil {
		return fmt.Errorf("create stats_daily: %w", err)
	}

	// A first program, so a new install can take signups and make links at once.
	program := core.NewRecord(programs)
	program.Load(map[string]any{
		"name":             "Default program",
		"slug":             "default",
		"destination":      "https://example.com/",
		"allowed_domains":  []string{"example.com"},
		"currency":         "usd",
		"commission_type":  "percent",
		"commission_value": 2000,
		"recurring":        "first",
		"recurring_months": 0,
		"cookie_days":      60,
		"attribution":      "last_click",
		"hold_days":        30,
		"min_payout":       5000,
		"payout_schedule":  "0 9 1 * *",
		"auto_approve":     false,
		"active":           true,
		"postback_secret":  security.RandomString(40),
	})
	if err := app.Save(program); err != nil {
		return fmt.Errorf("create default program: %w", err)
	}
	return nil
}

func initDown(app core.App) error {
	for _, name := range []string{"stats_daily", "commissions", "payouts", "conversions", "clicks", "links", "affiliates", "tiers", "programs"} {
		c, err := app.FindCollectionByNameOrId(name)
		if err != nil {
			continue
		}
		if err := app.Delete(c); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	return nil
}
