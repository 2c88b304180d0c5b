package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// click_overflow counts the flagged clicks an IP made past its hourly ceiling of stored rows
// (PBA_CLICK_IP_CEILING), which are not stored as clicks: one row per UTC hour, IP hash,
// program, affiliate, link and flag. Ids are text, not relations (as in inactive_redirects).
// Superusers only (no rules).
func init() {
	m.Register(func(app core.App) error {
		c := core.NewBaseCollection("click_overflow")
		c.Fields.Add(
			&core.DateField{Name: "hour", Required: true, Help: "UTC hour the clicks fell in."},
			&core.TextField{Name: "ip_hash", Required: true, Max: 64, Help: "As in clicks: an HMAC, never the IP."},
			&core.TextField{Name: "program", Max: 15},
			&core.TextField{Name: "affiliate", Max: 15},
			&core.TextField{Name: "link", Max: 15},
			&core.SelectField{Name: "flag", Required: true, MaxSelect: 1, Values: []string{"bot", "rate", "self"}},
			&core.NumberField{Name: "clicks", OnlyInt: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		c.AddIndex("idx_click_overflow_key", true, "hour, ip_hash, program, affiliate, link, flag", "")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("click_overflow")
		if err != nil {
			return err
		}
		return app.Delete(c)
	})
}
