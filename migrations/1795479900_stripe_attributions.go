package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Attribution of Stripe customers and subscriptions that started without a payment (a free
// trial, a 100% discount, a setup-mode Checkout Session). Such an event records no sale, so
// without this row the click or code that brought the customer would be lost and the first
// paid invoice, weeks later, would credit nobody. One row per subscription, and one per
// customer for attributions that belong to no subscription; bookkeeping, superusers only.
func init() {
	m.Register(func(app core.App) error {
		attributions := core.NewBaseCollection("stripe_attributions")
		attributions.Fields.Add(
			&core.TextField{Name: "customer", Max: 255, Help: "Stripe customer id (cus_…)."},
			&core.TextField{Name: "subscription", Max: 255, Help: "Stripe subscription id (sub_…); empty for a customer-wide attribution."},
			&core.TextField{Name: "click", Max: 255, Help: "client_reference_id or pba_click of the event."},
			&core.TextField{Name: "affiliate_code", Max: 255},
			&core.TextField{Name: "coupon", Max: 255, Help: "pba_coupon or the promotion code, lowercased."},
			&core.TextField{Name: "program", Max: 255, Help: "pba_program, when the merchant named one."},
			&core.DateField{Name: "attributed_at", Help: "When the customer signed up: the click's cookie window is judged at this moment."},
			&core.TextField{Name: "object", Max: 255, Help: "The Checkout Session or invoice that carried the attribution."},
			&core.TextField{Name: "event_id", Max: 255, Help: "The first event that stored this attribution."},
			&core.AutodateField{Name: "created", OnCreate: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		attributions.AddIndex("idx_stripe_attributions_subscription", true, "subscription", "subscription != ''")
		attributions.AddIndex("idx_stripe_attributions_customer", true, "customer", "subscription = '' AND customer != ''")
		if err := app.Save(attributions); err != nil {
			return fmt.Errorf("create stripe_attributions: %w", err)
		}
		return nil
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("stripe_attributions")
		if err != nil {
			return nil
		}
		return app.Delete(c)
	})
}
