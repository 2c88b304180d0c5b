package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Messaging: broadcasts and digests an admin writes (messages), every email pbaffiliate sends
// (deliveries, the outbox the mail worker drains and the record of what each affiliate got),
// and the addresses nothing marketing may be sent to again (suppressions).
func init() {
	m.Register(messagingUp, messagingDown)
}

// messagingUp creates messages, deliveries and suppressions.
func messagingUp(app core.App) error {
	affiliates, err := app.FindCollectionByNameOrId("affiliates")
	if err != nil {
		return err
	}

	messages := core.NewBaseCollection("messages")
	// Superusers only: nil rules.
	messages.Fields.Add(
		&core.TextField{Name: "subject", Required: true, Max: 300, Presentable: true, Help: "May use {{.Name}}, {{.Code}}, {{.Link}}."},
		&core.TextField{Name: "body", Max: 200000, Help: "HTML source or plain text; a Go template over the affiliate ({{.Name}}, {{.Code}}, {{.Link}}, {{.PortalURL}}), values escaped."},
		&core.SelectField{Name: "kind", Required: true, MaxSelect: 1, Values: []string{"broadcast", "digest", "lifecycle"}},
		&core.JSONField{Name: "audience", MaxSize: 65536, Help: `{"program": id, "status": ["approved"], "tier": id, "tags": ["vip"]}; empty means approved affiliates.`},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"draft", "scheduled", "sending", "sent"}},
		&core.DateField{Name: "send_at", Help: "Scheduled messages go out at this time (empty: at once)."},
		&core.DateField{Name: "resolved_at", Help: "When the audience became deliveries (set by the mail worker)."},
		&core.JSONField{Name: "counts", MaxSize: 4096, Help: "Deliveries per status (kept by the mail worker)."},
		&core.TextField{Name: "error", Max: 1000},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	messages.AddIndex("idx_messages_status", false, "status, send_at", "")
	if err := app.Save(messages); err != nil {
		return fmt.Errorf("create messages: %w", err)
	}

	deliveries := core.NewBaseCollection("deliveries")
	deliveries.ListRule = types.Pointer(ownRule)
	deliveries.ViewRule = deliveries.ListRule
	deliveries.Fields.Add(
		&core.RelationField{Name: "message", MaxSelect: 1, CollectionId: messages.Id, CascadeDelete: true},
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
		&core.TextField{Name: "email", Required: true, Max: 320},
		&core.TextField{Name: "template", Required: true, Max: 100},
		&core.TextField{Name: "provider_id", Max: 255},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"queued", "sent", "delivered", "bounced", "complained", "failed", "skipped", "delayed"}},
		&core.TextField{Name: "idempotency_key", Required: true, Max: 255, Help: "One delivery per key: a resumed send never writes a second row."},
		&core.BoolField{Name: "marketing", Help: "Broadcasts and digests: honour preferences and suppressions, carry List-Unsubscribe."},
		&core.TextField{Name: "error", Max: 1000},
		&core.NumberField{Name: "attempts", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.DateField{Name: "next_attempt_at"},
		&core.DateField{Name: "sent_at"},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	deliveries.AddIndex("idx_deliveries_idempotency_key", true, "idempotency_key", "")
	deliveries.AddIndex("idx_deliveries_affiliate", false, "affiliate", "")
	deliveries.AddIndex("idx_deliveries_message_status", false, "message, status", "")
	deliveries.AddIndex("idx_deliveries_due", false, "status, next_attempt_at", "")
	deliveries.AddIndex("idx_deliveries_provider_id", false, "provider_id", "provider_id != ''")
	if err := app.Save(deliveries); err != nil {
		return fmt.Errorf("create deliveries: %w", err)
	}

	suppressions := core.NewBaseCollection("suppressions")
	// Superusers only: nil rules.
	suppressions.Fields.Add(
		&core.TextField{Name: "email", Required: true, Max: 320, Presentable: true, Help: "Lowercase."},
		&core.SelectField{Name: "reason", Required: true, MaxSelect: 1, Values: []string{"bounce", "complaint", "unsubscribe"}},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	suppressions.AddIndex("idx_suppressions_email", true, "email", "")
	if err := app.Save(suppressions); err != nil {
		return fmt.Errorf("create suppressions: %w", err)
	}
	return nil
}

// messagingDown drops them again (deliveries before messages: the relation).
func messagingDown(app core.App) error {
	for _, name := range []string{"suppressions", "deliveries", "messages"} {
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
