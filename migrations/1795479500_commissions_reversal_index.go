package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Commissions gain idx_commissions_reversals (conversion) over the clawbacks and adjustments
// tied to a sale. A sale's net commission (its own commission plus what refunds and rejections
// clawed back or reinstated) was summed by scanning every commission, on each refund and each
// edit of a conversion. The sale's own commission is found through the unique (conversion,
// kind) index; this partial one holds only the rare reversal rows, so the engine's inserts of
// sale commissions add nothing to it.
func init() {
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("commissions")
		if err != nil {
			return err
		}
		c.AddIndex("idx_commissions_reversals", false, "conversion", "conversion != '' AND kind != 'sale' AND kind != 'recurring' AND kind != 'bonus'")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("commissions")
		if err != nil {
			return err
		}
		c.RemoveIndex("idx_commissions_reversals")
		return app.Save(c)
	})
}
