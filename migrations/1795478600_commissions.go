package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Commission engine: what the engine has already done to each conversion (so a run with no
// new work is an index lookup), idempotency keys for commissions that have no conversion or
// several per conversion (bonuses, clawbacks, adjustments), milestone bonuses and the record
// of tier moves.
func init() {
	m.Register(commissionsUp, commissionsDown)
}

func commissionsUp(app core.App) error {
	conversions, err := app.FindCollectionByNameOrId("conversions")
	if err != nil {
		return err
	}
	conversions.Fields.Add(
		&core.BoolField{Name: "commissioned", Help: "The engine has turned this approved sale into its commission (or found it earns none)."},
		&core.NumberField{Name: "refund_applied", OnlyInt: true, Min: types.Pointer(0.0), Help: "refunded_amount already reflected in commissions."},
	)
	conversions.AddIndex("idx_conversions_uncommissioned", false, "status", "commissioned = FALSE")
	conversions.AddIndex("idx_conversions_refund_todo", false, "id", "refunded_amount > refund_applied")
	if err := app.Save(conversions); err != nil {
		return fmt.Errorf("extend conversions: %w", err)
	}

	commissions, err := app.FindCollectionByNameOrId("commissions")
	if err != nil {
		return err
	}
	commissions.Fields.Add(
		&core.TextField{Name: "ref", Max: 200, Help: "Idempotency key of bonuses, clawbacks and adjustments."},
		&core.TextField{Name: "note", Max: 1000, Help: "Why: required for adjustments."},
	)
	commissions.RemoveIndex("idx_commissions_conversion_kind")
	commissions.AddIndex("idx_commissions_conversion_kind", true, "conversion, kind", "conversion != '' AND kind != 'clawback' AND kind != 'bonus' AND kind != 'adjustment'")
	commissions.AddIndex("idx_commissions_ref", true, "affiliate, kind, ref", "ref != ''")
	if err := app.Save(commissions); err != nil {
		return fmt.Errorf("extend commissions: %w", err)
	}

	programs, err := app.FindCollectionByNameOrId("programs")
	if err != nil {
		return err
	}
	affiliates, err := app.FindCollectionByNameOrId("affiliates")
	if err != nil {
		return err
	}
	tiers, err := app.FindCollectionByNameOrId("tiers")
	if err != nil {
		return err
	}

	bonuses := core.NewBaseCollection("bonuses")
	bonuses.ListRule = types.Pointer(`@request.auth.collectionName = "affiliates" && @request.auth.program = program && active = true`)
	bonuses.ViewRule = bonuses.ListRule
	bonuses.Fields.Add(
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.TextField{Name: "name", Required: true, Max: 200, Presentable: true},
		&core.NumberField{Name: "min_conversions", OnlyInt: true, Min: types.Pointer(0.0), Help: "Sales in one calendar month."},
		&core.NumberField{Name: "min_revenue", OnlyInt: true, Min: types.Pointer(0.0), Help: "Minor units in one calendar month."},
		&core.NumberField{Name: "amount", Required: true, OnlyInt: true, Min: types.Pointer(1.0), Help: "Minor units, paid once per month reached."},
		&core.BoolField{Name: "active"},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	if err := app.Save(bonuses); err != nil {
		return fmt.Errorf("create bonuses: %w", err)
	}

	moves := core.NewBaseCollection("tier_changes")
	moves.ListRule = types.Pointer(ownRule)
	moves.ViewRule = moves.ListRule
	moves.Fields.Add(
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
		&core.RelationField{Name: "from_tier", MaxSelect: 1, CollectionId: tiers.Id},
		&core.RelationField{Name: "to_tier", MaxSelect: 1, CollectionId: tiers.Id},
		&core.TextField{Name: "period", Required: true, Pattern: `^\d{4}-\d{2}$`, Help: "The calendar month the move is based on."},
		&core.TextField{Name: "reason", Max: 500},
		&core.TextField{Name: "by", Max: 100, Help: "pbaTiers or the superuser who asked for the evaluation."},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	moves.AddIndex("idx_tier_changes_period", true, "affiliate, period", "")
	if err := app.Save(moves); err != nil {
		return fmt.Errorf("create tier_changes: %w", err)
	}
	return nil
}

func commissionsDown(app core.App) error {
	for _, name := range []string{"tier_changes", "bonuses"} {
		if c, err := app.FindCollectionByNameOrId(name); err == nil {
			if err := app.Delete(c); err != nil {
				return err
			}
		}
	}
	if c, err := app.FindCollectionByNameOrId("commissions"); err == nil {
		c.Fields.RemoveByName("ref")
		c.Fields.RemoveByName("note")
		c.RemoveIndex("idx_commissions_ref")
		c.AddIndex("idx_commissions_conversion_kind", true, "conversion, kind", "conversion != ''")
		if err := app.Save(c); err != nil {
			return err
		}
	}
	if c, err := app.FindCollectionByNameOrId("conversions"); err == nil {
		c.Fields.RemoveByName("commissioned")
		c.Fields.RemoveByName("refund_applied")
		c.RemoveIndex("idx_conversions_uncommissioned")
		c.RemoveIndex("idx_conversions_refund_todo")
		return app.Save(c)
	}
	return nil
}
