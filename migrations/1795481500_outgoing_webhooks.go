package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Outgoing webhooks for the merchant's own tools (Standard Webhooks): `webhooks`, the
// endpoints superusers register (nil rules: superusers only), and the outbox they share with
// the affiliates' own webhooks, webhook_deliveries, whose rows now belong to an affiliate
// (its webhook_url) or to an endpoint (`webhook`). An endpoint's rows have no affiliate, so the
// affiliates' rule (affiliate = @request.auth.id) never shows them to anyone but superusers.
// deliveries.affiliate becomes optional too: the mail telling superusers that an endpoint was
// disabled goes to no affiliate.
func init() {
	m.Register(outgoingWebhooksUp, outgoingWebhooksDown)
}

func outgoingWebhooksUp(app core.App) error {
	hooks := core.NewBaseCollection("webhooks")
	hooks.Fields.Add(
		&core.URLField{Name: "url", Required: true, Presentable: true, Help: "https (plain http only for localhost); receives every event it subscribes to, in order."},
		&core.TextField{Name: "description", Max: 500},
		&core.SelectField{Name: "events", MaxSelect: 14, Values: []string{
			"affiliate.created", "affiliate.approved", "affiliate.rejected", "affiliate.suspended",
			"sale.created", "sale.updated", "sale.refunded",
			"commission.created", "commission.payable", "commission.voided",
			"payout.created", "payout.paid", "payout.failed", "feedback.created",
		}, Help: "The events sent; none selected means all of them."},
		&core.TextField{Name: "secret", Max: 200, Help: "Standard Webhooks signing secret (whsec_ + base64); generated when empty, so clearing it rotates it."},
		&core.BoolField{Name: "active"},
		&core.NumberField{Name: "failure_streak", OnlyInt: true, Min: types.Pointer(0.0), Help: "Failed attempts since the last success."},
		&core.DateField{Name: "disabled_at", Help: "When the worker disabled the endpoint after persistent failure."},
		&core.TextField{Name: "disabled_reason", Max: 1000},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	if err := app.Save(hooks); err != nil {
		return fmt.Errorf("create webhooks: %w", err)
	}

	deliveries, err := app.FindCollectionByNameOrId("webhook_deliveries")
	if err != nil {
		return err
	}
	deliveries.Fields.GetByName("affiliate").(*core.RelationField).Required = false
	deliveries.Fields.Add(
		&core.RelationField{Name: "webhook", MaxSelect: 1, CollectionId: hooks.Id, CascadeDelete: true},
		&core.DateField{Name: "last_attempt_at"},
		&core.TextField{Name: "response_body", Max: 500, Hidden: true, Help: "The start of the last response (superusers only)."},
	)
	deliveries.RemoveIndex("idx_webhook_deliveries_event")
	deliveries.AddIndex("idx_webhook_deliveries_event", true, "event_id, affiliate, webhook", "")
	// An endpoint's head of line: its oldest pending delivery (ids are time-ordered).
	deliveries.AddIndex("idx_webhook_deliveries_endpoint", false, "webhook, status, id", "webhook != ''")
	if err := app.Save(deliveries); err != nil {
		return fmt.Errorf("update webhook_deliveries: %w", err)
	}

	mail, err := app.FindCollectionByNameOrId("deliveries")
	if err != nil {
		return err
	}
	mail.Fields.GetByName("affiliate").(*core.RelationField).Required = false
	return app.Save(mail)
}

func outgoingWebhooksDown(app core.App) error {
	if _, err := app.DB().NewQuery("DELETE FROM webhook_deliveries WHERE affiliate = ''").Execute(); err != nil {
		return err
	}
	if _, err := app.DB().NewQuery("DELETE FROM deliveries WHERE affiliate = ''").Execute(); err != nil {
		return err
	}
	deliveries, err := app.FindCollectionByNameOrId("webhook_deliveries")
	if err != nil {
		return err
	}
	deliveries.Fields.GetByName("affiliate").(*core.RelationField).Required = true
	deliveries.Fields.RemoveByName("webhook")
	deliveries.Fields.RemoveByName("last_attempt_at")
	deliveries.Fields.RemoveByName("response_body")
	deliveries.RemoveIndex("idx_webhook_deliveries_endpoint")
	deliveries.RemoveIndex("idx_webhook_deliveries_event")
	deliveries.AddIndex("idx_webhook_deliveries_event", true, "event_id, affiliate", "")
	if err := app.Save(deliveries); err != nil {
		return err
	}
	mail, err := app.FindCollectionByNameOrId("deliveries")
	if err != nil {
		return err
	}
	mail.Fields.GetByName("affiliate").(*core.RelationField).Required = true
	if err := app.Save(mail); err != nil {
		return err
	}
	hooks, err := app.FindCollectionByNameOrId("webhooks")
	if err != nil {
		return err
	}
	return app.Delete(hooks)
}
