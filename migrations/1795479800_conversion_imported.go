package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Conversions gain imported (bool): a superuser's import of an old sale, the one kind of sale
// whose occurred_at may lie before the program's attribution window. Existing rows read false.
func init() {
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("conversions")
		if err != nil {
			return err
		}
		c.Fields.Add(&core.BoolField{Name: "imported"})
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("conversions")
		if err != nil {
			return err
		}
		c.Fields.RemoveByName("imported")
		return app.Save(c)
	})
}
