package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Conversions gain idx_conversions_click (click): pbaRetention keeps every click a sale is
// attributed to, and asks that once per expired click. Partial: sales without a click (coupon,
// affiliate code, manual) add nothing to it.
func init() {
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("conversions")
		if err != nil {
			return err
		}
		c.AddIndex("idx_conversions_click", false, "click", "click != ''")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("conversions")
		if err != nil {
			return err
		}
		c.RemoveIndex("idx_conversions_click")
		return app.Save(c)
	})
}
