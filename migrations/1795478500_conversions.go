package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Conversions and attribution: coupons, Stripe bookkeeping (processed events, refunds and
// disputes that arrived before their sale), the affiliate webhook outbox, and the conversion
// fields refunds and recurring payments need.
func init() {
	m.Register(conversionsUp, conversionsDown)
}

func conversionsUp(app core.App) error {
	affiliates, err := app.FindCollectionByNameOrId("affiliates")
	if err != nil {
		return err
	}
	programs, err := app.FindCollectionByNameOrId("programs")
	if err != nil {
		return err
	}
	conversions, err := app.FindCollectionByNameOrId("conversions")
	if err != nil {
		return err
	}

	conversions.Fields.Add(
		&core.NumberField{Name: "refunded_amount", OnlyInt: true, Min: types.Pointer(0.0), Help: "Minor units refunded so far (cumulative)."},
		&core.NumberField{Name: "payment_number", OnlyInt: true, Min: types.Pointer(0.0), Help: "1 for a first payment, n for the n-th payment of a subscription."},
		&core.TextField{Name: "stripe_payment_intent", Max: 255},
		&core.TextField{Name: "stripe_charge", Max: 255},
	)
	conversions.AddIndex("idx_conversions_payment_intent", false, "stripe_payment_intent", "stripe_payment_intent != ''")
	conversions.AddIndex("idx_conversions_charge", false, "stripe_charge", "stripe_charge != ''")
	conversions.AddIndex("idx_conversions_customer", false, "program, customer", "customer != ''")
	conversions.AddIndex("idx_conversions_subscription", false, "subscription_id", "subscription_id != ''")
	if err := app.Save(conversions); err != nil {
		return fmt.Errorf("extend conversions: %w", err)
	}

	affiliates.Fields.Add(&core.TextField{Name: "webhook_secret", Max: 100,
		Help: "Signs the affiliate's webhook notifications (HMAC-SHA256); visible to the affiliate itself."})
	if err := app.Save(affiliates); err != nil {
		return fmt.Errorf("extend affiliates: %w", err)
	}

	coupons := core.NewBaseCollection("coupons")
	coupons.ListRule = types.Pointer(ownRule)
	coupons.ViewRule = coupons.ListRule
	coupons.Fields.Add(
		&core.TextField{Name: "code", Required: true, Max: 64, Pattern: `^[a-z0-9][a-z0-9_-]{1,63}$`, Presentable: true, Help: "Lowercase; Stripe promotion codes match case-insensitively."},
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.BoolField{Name: "active"},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	coupons.AddIndex("idx_coupons_program_code", true, "program, code", "")
	coupons.AddIndex("idx_coupons_affiliate", false, "affiliate", "")
	if err := app.Save(coupons); err != nil {
		return fmt.Errorf("create coupons: %w", err)
	}

	events := core.NewBaseCollection("stripe_events")
	events.Fields.Add(
		&core.TextField{Name: "event_id", Required: true, Max: 255},
		&core.TextField{Name: "type", Max: 100},
		&core.TextField{Name: "outcome", Max: 500, Help: "What processing did (recorded, duplicate, ignored: why)."},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	events.AddIndex("idx_stripe_events_event_id", true, "event_id", "")
	if err := app.Save(events); err != nil {
		return fmt.Errorf("create stripe_events: %w", err)
	}

	pending := core.NewBaseCollection("stripe_pending")
	pending.Fields.Add(
		&core.SelectField{Name: "kind", Required: true, MaxSelect: 1, Values: []string{"refund", "dispute"}},
		&core.TextField{Name: "payment_intent", Max: 255},
		&core.TextField{Name: "charge", Max: 255},
		&core.TextField{Name: "invoice", Max: 255},
		&core.NumberField{Name: "amount_refunded", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.TextField{Name: "event_id", Max: 255},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	pending.AddIndex("idx_stripe_pending_pi", false, "payment_intent", "payment_intent != ''")
	pending.AddIndex("idx_stripe_pending_charge", false, "charge", "charge != ''")
	pending.AddIndex("idx_stripe_pending_invoice", false, "invoice", "invoice != ''")
	if err := app.Save(pending); err != nil {
		return fmt.Errorf("create stripe_pending: %w", err)
	}

	deliveries := core.NewBaseCollection("webhook_deliveries")
	deliveries.ListRule = types.Pointer(ownRule)
	deliveries.ViewRule = deliveries.ListRule
	deliveries.Fields.Add(
		&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
		&core.TextField{Name: "event", Required: true, Max: 100},
		&core.TextField{Name: "event_id", Required: true, Max: 100, Help: "Unique per event and affiliate; sent as the idempotency header."},
		&core.URLField{Name: "url", Required: true},
		&core.JSONField{Name: "payload", MaxSize: 65536},
		&core.SelectField{Name: "status", Required: true, MaxSelect: 1, Values: []string{"pending", "sent", "failed"}},
		&core.NumberField{Name: "attempts", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.DateField{Name: "next_attempt_at"},
		&core.NumberField{Name: "response_status", OnlyInt: true},
		&core.TextField{Name: "last_error", Max: 1000},
		&core.AutodateField{Name: "created", OnCreate: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
	)
	deliveries.AddIndex("idx_webhook_deliveries_event", true, "event_id, affiliate", "")
	deliveries.AddIndex("idx_webhook_deliveries_due", false, "status, next_attempt_at", "")
	if err := app.Save(deliveries); err != nil {
		return fmt.Errorf("create webhook_deliveries: %w", err)
	}
	return nil
}

func conversionsDown(app core.App) error {
	for _, name := range []string{"webhook_deliveries", "stripe_pending", "stripe_events", "coupons"} {
		c, err := app.FindCollectionByNameOrId(name)
		if err != nil {
			continue
		}
		if err := app.Delete(c); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	if affiliates, err := app.FindCollectionByNameOrId("affiliates"); err == nil {
		affiliates.Fields.RemoveByName("webhook_secret")
		if err := app.Save(affiliates); err != nil {
			return err
		}
	}
	conversions, err := app.FindCollectionByNameOrId("conversions")
	if err != nil {
		return err
	}
	for _, f := range []string{"refunded_amount", "payment_number", "stripe_payment_intent", "stripe_charge"} {
		conversions.Fields.RemoveByName(f)
	}
	for _, idx := range []string{"idx_conversions_payment_intent", "idx_conversions_charge", "idx_conversions_customer", "idx_conversions_subscription"} {
		conversions.RemoveIndex(idx)
	}
	return app.Save(conversions)
}
