package migrations

import (
	"fmt"
	"slices"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Sales from Paddle Billing, Lemon Squeezy and Shopify (signed webhooks):
//   - conversions.source and conversion_events.door gain paddle, lemonsqueezy and shopify;
//   - provider_events remembers each provider event processed (unique per provider and event id),
//     written in the transaction of the sale or refund it caused, so a redelivery does nothing;
//   - provider_refunds keeps each refund a provider reported (unique per provider and refund id),
//     so partial refunds add up to the sale's cumulative refunded amount in any order, and a
//     refund that arrives before its sale is applied when the sale is recorded.
//
// Both are superusers-only bookkeeping (no API rules).
func init() {
	m.Register(billingProvidersUp, billingProvidersDown)
}

var billingProviderNames = []string{"paddle", "lemonsqueezy", "shopify"}

// setProviderValues adds (or removes) the providers to a select field's values.
func setProviderValues(app core.App, collection, field string, add bool) error {
	c, err := app.FindCollectionByNameOrId(collection)
	if err != nil {
		return err
	}
	f, ok := c.Fields.GetByName(field).(*core.SelectField)
	if !ok {
		return fmt.Errorf("%s.%s is not a select field", collection, field)
	}
	f.Values = slices.DeleteFunc(f.Values, func(v string) bool { return slices.Contains(billingProviderNames, v) })
	if add {
		f.Values = append(f.Values, billingProviderNames...)
	}
	return app.Save(c)
}

func billingProvidersUp(app core.App) error {
	if err := setProviderValues(app, "conversions", "source", true); err != nil {
		return fmt.Errorf("conversions.source: %w", err)
	}
	if err := setProviderValues(app, "conversion_events", "door", true); err != nil {
		return fmt.Errorf("conversion_events.door: %w", err)
	}

	events := core.NewBaseCollection("provider_events")
	events.Fields.Add(
		&core.SelectField{Name: "provider", Required: true, MaxSelect: 1, Values: billingProviderNames},
		&core.TextField{Name: "event_id", Required: true, Max: 255},
		&core.TextField{Name: "type", Max: 100},
		&core.TextField{Name: "outcome", Max: 500, Help: "What processing did (recorded, refunded, pending, ignored: why)."},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	events.AddIndex("idx_provider_events_event", true, "provider, event_id", "")
	events.AddIndex("idx_provider_events_created", false, "created", "")
	if err := app.Save(events); err != nil {
		return fmt.Errorf("create provider_events: %w", err)
	}

	refunds := core.NewBaseCollection("provider_refunds")
	refunds.Fields.Add(
		&core.SelectField{Name: "provider", Required: true, MaxSelect: 1, Values: billingProviderNames},
		&core.TextField{Name: "sale", Required: true, Max: 255, Help: "The sale's external_id (source = provider)."},
		&core.TextField{Name: "refund_id", Required: true, Max: 255},
		&core.NumberField{Name: "amount", OnlyInt: true, Min: types.Pointer(0.0), Help: "Minor units refunded by this refund."},
		&core.TextField{Name: "currency", Max: 3},
		&core.TextField{Name: "event_id", Max: 255},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	refunds.AddIndex("idx_provider_refunds_refund", true, "provider, refund_id", "")
	refunds.AddIndex("idx_provider_refunds_sale", false, "provider, sale", "")
	if err := app.Save(refunds); err != nil {
		return fmt.Errorf("create provider_refunds: %w", err)
	}
	return nil
}

func billingProvidersDown(app core.App) error {
	for _, name := range []string{"provider_refunds", "provider_events"} {
		if c, err := app.FindCollectionByNameOrId(name); err == nil {
			if err := app.Delete(c); err != nil {
				return fmt.Errorf("delete %s: %w", name, err)
			}
		}
	}
	if err := setProviderValues(app, "conversion_events", "door", false); err != nil {
		return err
	}
	return setProviderValues(app, "conversions", "source", false)
}
