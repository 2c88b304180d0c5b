package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Payouts: one claimed row per program and scheduled time (a run happens exactly once), and
// the payout fields a run, a retry and a manual payment need.
func init() {
	m.Register(payoutsUp, payoutsDown)
}

func payoutsUp(app core.App) error {
	programs, err := app.FindCollectionByNameOrId("programs")
	if err != nil {
		return err
	}
	runs := core.NewBaseCollection("payout_runs")
	runs.Fields.Add(
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.DateField{Name: "scheduled_for", Required: true, Help: "The schedule's time this run stands for (or when it was asked for)."},
		&core.SelectField{Name: "trigger", Required: true, MaxSelect: 1, Values: []string{"schedule", "manual"}},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"running", "done", "failed"}},
		&core.NumberField{Name: "payouts", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.NumberField{Name: "total", OnlyInt: true, Help: "Minor units paid out by this run."},
		&core.JSONField{Name: "report", MaxSize: 1 << 20, Help: "Who was paid, carried forward or skipped, and why."},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	runs.AddIndex("idx_payout_runs_claim", true, "program, scheduled_for", "")
	if err := app.Save(runs); err != nil {
		return fmt.Errorf("create payout_runs: %w", err)
	}

	payouts, err := app.FindCollectionByNameOrId("payouts")
	if err != nil {
		return err
	}
	payouts.Fields.Add(
		&core.RelationField{Name: "program", MaxSelect: 1, CollectionId: programs.Id},
		&core.RelationField{Name: "run", MaxSelect: 1, CollectionId: runs.Id},
		&core.TextField{Name: "reference", Max: 255, Help: "Manual payouts: the bank or PayPal reference, set when marked paid."},
		&core.DateField{Name: "next_attempt_at", Help: "When a failed Stripe transfer is retried."},
	)
	payouts.AddIndex("idx_payouts_due", false, "status, next_attempt_at", "")
	if err := app.Save(payouts); err != nil {
		return fmt.Errorf("extend payouts: %w", err)
	}
	return nil
}

func payoutsDown(app core.App) error {
	if c, err := app.FindCollectionByNameOrId("payouts"); err == nil {
		for _, f := range []string{"program", "run", "reference", "next_attempt_at"} {
			c.Fields.RemoveByName(f)
		}
		c.RemoveIndex("idx_payouts_due")
		if err := app.Save(c); err != nil {
			return err
		}
	}
	if c, err := app.FindCollectionByNameOrId("payout_runs"); err == nil {
		return app.Delete(c)
	}
	return nil
}
