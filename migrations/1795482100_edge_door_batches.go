package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// edge_door_batches: the ids of the door counts redirect nodes published (docs/scaling.md)
// that the primary has added to inactive_redirects, in the same transaction, so a batch the
// click stream delivers again is not counted twice. Kept 8 days (the stream keeps 7), pruned
// by the ingestion. Superusers only (no rules).
func init() {
	m.Register(func(app core.App) error {
		c := core.NewBaseCollection("edge_door_batches")
		c.Fields.Add(&core.AutodateField{Name: "created", OnCreate: true})
		c.AddIndex("idx_edge_door_batches_created", false, "created", "")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("edge_door_batches")
		if err != nil {
			return err
		}
		return app.Delete(c)
	})
}
