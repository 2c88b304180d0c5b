package migrations

import (
	"fmt"
	"slices"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Incentives: time-boxed campaigns of a program (rate boosts, multipliers, per-sale and
// target bonuses) that the commission engine applies, the program's time zone admins enter
// campaign dates in, and the incentive_started mail template. Superusers only through the
// records API: a campaign names the affiliates it targets, so affiliates read theirs through
// GET /api/pba/incentives instead.
func init() {
	m.Register(incentivesUp, incentivesDown)
}

func incentivesUp(app core.App) error {
	programs, err := app.FindCollectionByNameOrId("programs")
	if err != nil {
		return err
	}
	programs.Fields.Add(&core.TextField{Name: "timezone", Max: 64,
		Help: "IANA time zone (Europe/Berlin) campaign dates are entered and shown in; empty is UTC."})
	if err := app.Save(programs); err != nil {
		return fmt.Errorf("add programs.timezone: %w", err)
	}
	tiers, err := app.FindCollectionByNameOrId("tiers")
	if err != nil {
		return err
	}
	affiliates, err := app.FindCollectionByNameOrId("affiliates")
	if err != nil {
		return err
	}

	c := core.NewBaseCollection("incentives")
	// Superusers only: nil rules.
	c.Fields.Add(
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.TextField{Name: "name", Required: true, Max: 200, Presentable: true},
		&core.TextField{Name: "description", Max: 2000},
		&core.DateField{Name: "starts_at", Required: true, Help: "First instant of the campaign (UTC; entered in the program's time zone)."},
		&core.DateField{Name: "ends_at", Required: true, Help: "First instant after the campaign: a sale counts when starts_at <= occurred_at < ends_at."},
		&core.SelectField{Name: "eligibility", Required: true, MaxSelect: 1, Values: []string{"all", "tiers", "affiliates"}},
		&core.RelationField{Name: "tiers", MaxSelect: 100, CollectionId: tiers.Id},
		&core.RelationField{Name: "affiliates", MaxSelect: 1000, CollectionId: affiliates.Id},
		&core.SelectField{Name: "kind", Required: true, MaxSelect: 1, Values: []string{"rate_boost", "multiplier", "per_sale_bonus", "target_bonus"}},
		&core.NumberField{Name: "value", OnlyInt: true, Help: "rate_boost: basis points added (500 = +5 points); multiplier: per mille (1500 = x1.5)."},
		&core.NumberField{Name: "threshold", OnlyInt: true, Min: types.Pointer(0.0), Help: "per_sale_bonus: sales in the campaign before the bonus starts."},
		&core.SelectField{Name: "target_kind", MaxSelect: 1, Values: []string{"sales", "revenue"}},
		&core.NumberField{Name: "target", OnlyInt: true, Min: types.Pointer(0.0), Help: "target_bonus: sales, or revenue in minor units."},
		&core.NumberField{Name: "bonus", OnlyInt: true, Min: types.Pointer(0.0), Help: "per_sale_bonus and target_bonus: minor units of the program's currency."},
		&core.BoolField{Name: "active"},
		&core.DateField{Name: "announced_at", Help: "Server-owned: when the start was announced to the eligible affiliates."},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	c.AddIndex("idx_incentives_program", false, "program, active, ends_at", "")
	if err := app.Save(c); err != nil {
		return fmt.Errorf("create incentives: %w", err)
	}

	// The announcement's template, added to the names mail_templates accepts (appended, so
	// other migrations that add names keep theirs).
	templates, err := app.FindCollectionByNameOrId("mail_templates")
	if err != nil {
		return err
	}
	if f, ok := templates.Fields.GetByName("name").(*core.SelectField); ok && !slices.Contains(f.Values, "incentive_started") {
		f.Values = append(f.Values, "incentive_started")
		if err := app.Save(templates); err != nil {
			return fmt.Errorf("add the incentive_started template name: %w", err)
		}
	}
	return nil
}

func incentivesDown(app core.App) error {
	if c, err := app.FindCollectionByNameOrId("incentives"); err == nil {
		if err := app.Delete(c); err != nil {
			return err
		}
	}
	if _, err := app.DB().NewQuery("DELETE FROM mail_templates WHERE name = 'incentive_started'").Execute(); err != nil {
		return err
	}
	if templates, err := app.FindCollectionByNameOrId("mail_templates"); err == nil {
		if f, ok := templates.Fields.GetByName("name").(*core.SelectField); ok {
			f.Values = slices.DeleteFunc(f.Values, func(v string) bool { return v == "incentive_started" })
			if err := app.Save(templates); err != nil {
				return err
			}
		}
	}
	programs, err := app.FindCollectionByNameOrId("programs")
	if err != nil {
		return err
	}
	programs.Fields.RemoveByName("timezone")
	return app.Save(programs)
}
