package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// privacy_requests records each export and erasure of personal data a superuser makes (GDPR
// accountability): kind, subject (an affiliate or visitor id), by (the superuser's email),
// summary (counts, never the data). Superusers only (no rules). affiliates.erased_at marks an
// erased affiliate; the server sets it.
func init() {
	m.Register(func(app core.App) error {
		c := core.NewBaseCollection("privacy_requests")
		c.Fields.Add(
			&core.SelectField{Name: "kind", Required: true, MaxSelect: 1, Values: []string{"export", "erase", "visitor_erase"}},
			&core.TextField{Name: "subject", Required: true, Max: 64},
			&core.TextField{Name: "by", Max: 255},
			&core.JSONField{Name: "summary", MaxSize: 64 << 10},
			&core.AutodateField{Name: "created", OnCreate: true},
		)
		c.AddIndex("idx_privacy_requests_subject", false, "subject, created", "")
		if err := app.Save(c); err != nil {
			return err
		}
		affiliates, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		affiliates.Fields.Add(&core.DateField{Name: "erased_at", Help: "When the affiliate's personal data was erased (server-owned)."})
		return app.Save(affiliates)
	}, func(app core.App) error {
		affiliates, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		affiliates.Fields.RemoveByName("erased_at")
		if err := app.Save(affiliates); err != nil {
			return err
		}
		c, err := app.FindCollectionByNameOrId("privacy_requests")
		if err != nil {
			return err
		}
		return app.Delete(c)
	})
}
