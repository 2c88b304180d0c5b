package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Clicks lose idx_clicks_link (link, visitor, created): the redirector decides "unique" from
// an in-memory 24 h window (loaded at start through idx_clicks_affiliate) instead of an index
// lookup per click, and every index costs each click insert. Its rare database fallback reads
// idx_clicks_affiliate (affiliate, created).
func init() {
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("clicks")
		if err != nil {
			return err
		}
		c.RemoveIndex("idx_clicks_link")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("clicks")
		if err != nil {
			return err
		}
		c.AddIndex("idx_clicks_link", false, "link, visitor, created", "")
		return app.Save(c)
	})
}
