package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// The commissions' payout index only holds commissions that are in a payout: new commissions
// (no payout yet, the engine's hot insert) no longer pay for an index entry they never use.
// Queries by payout add `payout != ”` so SQLite picks the partial index.
func init() {
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("commissions")
		if err != nil {
			return err
		}
		c.AddIndex("idx_commissions_payout", false, "payout", "payout != ''")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("commissions")
		if err != nil {
			return err
		}
		c.AddIndex("idx_commissions_payout", false, "payout", "")
		return app.Save(c)
	})
}
