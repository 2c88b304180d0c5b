package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// Stripe disputes and their last known status. The hold on a disputed sale follows the state
// of its disputes (open: held; won: released; lost: refunded), not the order events arrive in,
// so a charge.dispute.closed that overtakes its charge.dispute.created, or either of them
// arriving before the sale, ends in the same place.
func init() {
	m.Register(func(app core.App) error {
		disputes := core.NewBaseCollection("stripe_disputes")
		disputes.Fields.Add(
			&core.TextField{Name: "dispute_id", Required: true, Max: 255},
			&core.TextField{Name: "charge", Max: 255},
			&core.TextField{Name: "payment_intent", Max: 255},
			&core.TextField{Name: "status", Max: 50, Help: "Stripe's dispute status (needs_response, under_review, won, lost, warning_closed, ...)."},
			&core.BoolField{Name: "closed", Help: "A charge.dispute.closed was received: a later charge.dispute.created does not reopen it."},
			&core.NumberField{Name: "amount", OnlyInt: true, Help: "Disputed amount, minor units."},
			&core.TextField{Name: "event_id", Max: 255, Help: "The last event that changed this row."},
			&core.AutodateField{Name: "created", OnCreate: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		disputes.AddIndex("idx_stripe_disputes_dispute_id", true, "dispute_id", "")
		disputes.AddIndex("idx_stripe_disputes_charge", false, "charge", "charge != ''")
		disputes.AddIndex("idx_stripe_disputes_payment_intent", false, "payment_intent", "payment_intent != ''")
		if err := app.Save(disputes); err != nil {
			return fmt.Errorf("create stripe_disputes: %w", err)
		}
		return nil
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("stripe_disputes")
		if err != nil {
			return nil
		}
		return app.Delete(c)
	})
}
