package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Links gain `archived` (no new clicks credited, history kept), and inactive_redirects counts
// the visitors /r/{code} sends on without a click: per UTC day, program, affiliate, link and
// reason. Its ids are text, not relations, so deleting a link or an affiliate neither clears
// nor merges its counters. Superusers only (no rules).
func init() {
	m.Register(func(app core.App) error {
		links, err := app.FindCollectionByNameOrId("links")
		if err != nil {
			return err
		}
		links.Fields.Add(&core.BoolField{Name: "archived", Help: "Retired: visitors are sent on, no click is credited."})
		if err := app.Save(links); err != nil {
			return err
		}

		c := core.NewBaseCollection("inactive_redirects")
		c.Fields.Add(
			&core.TextField{Name: "day", Required: true, Pattern: `^\d{4}-\d{2}-\d{2}$`, Help: "UTC day."},
			&core.TextField{Name: "program", Max: 15},
			&core.TextField{Name: "affiliate", Max: 15},
			&core.TextField{Name: "link", Max: 15},
			&core.TextField{Name: "reason", Required: true, Max: 32},
			&core.NumberField{Name: "count", OnlyInt: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		c.AddIndex("idx_inactive_redirects_key", true, "day, program, affiliate, link, reason", "")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("inactive_redirects")
		if err != nil {
			return err
		}
		if err := app.Delete(c); err != nil {
			return err
		}
		links, err := app.FindCollectionByNameOrId("links")
		if err != nil {
			return err
		}
		links.Fields.RemoveByName("archived")
		return app.Save(links)
	})
}
