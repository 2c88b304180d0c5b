package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Clicks gain idx_clicks_visitor (visitor, created) for first-click attribution, which ran
// inside the conversion's transaction and scanned the whole clicks table (the write
// connection, and so every click, waited for it). It is partial: a visitor id minted by a
// click is that click's id, and first-click attribution finds that click by primary key, so a
// new visitor's click (most clicks) adds nothing to the index; returning visitors' clicks do.
func init() {
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("clicks")
		if err != nil {
			return err
		}
		c.AddIndex("idx_clicks_visitor", false, "visitor, created", "visitor != id")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("clicks")
		if err != nil {
			return err
		}
		c.RemoveIndex("idx_clicks_visitor")
		return app.Save(c)
	})
}
