package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// The detail of a failed delivery (a dial error names resolver addresses and DNS answers, a mail
// provider's error names its internals) is for admins: webhook_deliveries.last_error and
// deliveries.error become hidden (superusers still read them), and webhook_deliveries gains
// `reason`, the generic account the affiliate sees ("HTTP 500", "address refused", "no response").
func init() {
	set := func(app core.App, hide bool) error {
		for name, field := range map[string]string{"webhook_deliveries": "last_error", "deliveries": "error"} {
			c, err := app.FindCollectionByNameOrId(name)
			if err != nil {
				return err
			}
			c.Fields.GetByName(field).SetHidden(hide)
			switch {
			case name != "webhook_deliveries":
			case hide:
				c.Fields.Add(&core.TextField{Name: "reason", Max: 200})
			default:
				c.Fields.RemoveByName("reason")
			}
			if err := app.Save(c); err != nil {
				return err
			}
		}
		return nil
	}
	m.Register(func(app core.App) error { return set(app, true) }, func(app core.App) error { return set(app, false) })
}
