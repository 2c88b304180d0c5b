package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// bonus_checks: the affiliate months whose monthly milestone bonuses are still to be
// evaluated. The commission engine writes a row in the transaction that adds a commission to
// the month (when its program has an active bonus) and deletes it once the month's bonuses are
// paid, so a crash between the two leaves the row for the next pass instead of losing the
// evaluation. Superusers only (no rules).
func init() {
	m.Register(func(app core.App) error {
		c := core.NewBaseCollection("bonus_checks")
		c.Fields.Add(
			&core.TextField{Name: "affiliate", Required: true, Max: 15},
			&core.TextField{Name: "program", Required: true, Max: 15},
			&core.TextField{Name: "month", Required: true, Pattern: `^\d{4}-\d{2}$`},
			&core.AutodateField{Name: "created", OnCreate: true},
		)
		c.AddIndex("idx_bonus_checks_month", true, "affiliate, program, month", "")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("bonus_checks")
		if err != nil {
			return err
		}
		return app.Delete(c)
	})
}
