package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Messaging, second step: lifecycle templates admins edit in the dashboard (mail_templates;
// the server fills in the shipped defaults for any name without a row), a snapshot of what a
// digest reported on its delivery (deliveries.data), and leases, the database locks that keep
// two processes from running the same worker at once.
func init() {
	m.Register(mailTemplatesUp, mailTemplatesDown)
}

// mailTemplatesUp creates mail_templates and leases and adds deliveries.data.
func mailTemplatesUp(app core.App) error {
	templates := core.NewBaseCollection("mail_templates")
	// Superusers only: nil rules.
	templates.Fields.Add(
		&core.SelectField{Name: "name", Required: true, MaxSelect: 1, Presentable: true, Values: []string{
			"application_received", "approved", "rejected", "new_commission", "payout_sent",
			"payout_failed", "tier_changed", "weekly_digest",
		}},
		&core.TextField{Name: "subject", Required: true, Max: 300, Help: "Go text/template, e.g. Hi {{.Name}}."},
		&core.TextField{Name: "html", Required: true, Max: 100000, Help: "Go html/template for the body (the layout and unsubscribe footer are added); values are escaped."},
		&core.TextField{Name: "text", Required: true, Max: 100000, Help: "Go text/template for the plain-text part."},
		&core.TextField{Name: "variables", Max: 2000, Help: "What this template can use (filled in by the server, for reference)."},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	templates.AddIndex("idx_mail_templates_name", true, "name", "")
	if err := app.Save(templates); err != nil {
		return fmt.Errorf("create mail_templates: %w", err)
	}

	leases := core.NewBaseCollection("leases")
	// Superusers only: nil rules.
	leases.Fields.Add(
		&core.TextField{Name: "name", Required: true, Max: 100, Presentable: true},
		&core.TextField{Name: "holder", Required: true, Max: 100, Help: "The process holding the lease."},
		&core.DateField{Name: "expires_at", Required: true, Help: "After this time another process may take the lease."},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	leases.AddIndex("idx_leases_name", true, "name", "")
	if err := app.Save(leases); err != nil {
		return fmt.Errorf("create leases: %w", err)
	}

	deliveries, err := app.FindCollectionByNameOrId("deliveries")
	if err != nil {
		return err
	}
	deliveries.Fields.Add(&core.JSONField{Name: "data", MaxSize: 65536, Help: "What the mail reported (digest figures), frozen when it was queued."})
	if err := app.Save(deliveries); err != nil {
		return fmt.Errorf("add deliveries.data: %w", err)
	}
	return nil
}

// mailTemplatesDown drops them again.
func mailTemplatesDown(app core.App) error {
	deliveries, err := app.FindCollectionByNameOrId("deliveries")
	if err == nil {
		deliveries.Fields.RemoveByName("data")
		if err := app.Save(deliveries); err != nil {
			return fmt.Errorf("drop deliveries.data: %w", err)
		}
	}
	for _, name := range []string{"leases", "mail_templates"} {
		c, err := app.FindCollectionByNameOrId(name)
		if err != nil {
			continue
		}
		if err := app.Delete(c); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	return nil
}
