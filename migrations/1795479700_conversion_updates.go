package migrations

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Sales change after they are recorded, through any door (the dashboard, the merchant API's
// update form, the postback, Stripe), and each change is kept:
//   - conversions gain sender_updated_at and sender_sequence: the order key of the last merchant
//     update applied, so a late retry of an older update is ignored instead of undoing a newer one;
//   - conversion_events is the history of every sale (status and refunded amount before and after,
//     which door, who, the sender's order key, the commission change), written in the transaction
//     of the change; superusers read it, an affiliate its own sales' rows, nobody writes it;
//   - status refunded now means refunded in full: sales an admin marked refunded with a smaller
//     refunded_amount get refunded_amount = amount, so the engine's next run voids or claws back
//     their commission as for any full refund; refunded_amount above the amount is capped at it.
func init() {
	m.Register(conversionUpdatesUp, conversionUpdatesDown)
}

func conversionUpdatesUp(app core.App) error {
	conversions, err := app.FindCollectionByNameOrId("conversions")
	if err != nil {
		return err
	}
	affiliates, err := app.FindCollectionByNameOrId("affiliates")
	if err != nil {
		return err
	}
	programs, err := app.FindCollectionByNameOrId("programs")
	if err != nil {
		return err
	}
	conversions.Fields.Add(
		&core.DateField{Name: "sender_updated_at", Help: "Server-owned: updated_at of the last merchant update applied."},
		&core.NumberField{Name: "sender_sequence", OnlyInt: true, Min: types.Pointer(0.0), Help: "Server-owned: sequence of the last merchant update applied."},
	)
	if err := app.Save(conversions); err != nil {
		return fmt.Errorf("extend conversions: %w", err)
	}

	events := core.NewBaseCollection("conversion_events")
	events.ListRule = types.Pointer(`@request.auth.collectionName = "affiliates" && affiliate = @request.auth.id`)
	events.ViewRule = events.ListRule
	statuses := []string{"pending", "approved", "rejected", "refunded"}
	events.Fields.Add(
		&core.RelationField{Name: "conversion", Required: true, MaxSelect: 1, CollectionId: conversions.Id, CascadeDelete: true},
		&core.RelationField{Name: "affiliate", MaxSelect: 1, CollectionId: affiliates.Id},
		&core.RelationField{Name: "program", MaxSelect: 1, CollectionId: programs.Id},
		&core.SelectField{Name: "door", Required: true, MaxSelect: 1, Values: []string{"dashboard", "api", "postback", "stripe", "engine", "system"},
			Help: "Where the change came from."},
		&core.TextField{Name: "actor", Max: 255, Hidden: true, Help: "The superuser's email (dashboard, API as superuser)."},
		&core.SelectField{Name: "status_before", Required: true, MaxSelect: 1, Values: statuses},
		&core.SelectField{Name: "status_after", Required: true, MaxSelect: 1, Values: statuses},
		&core.NumberField{Name: "refunded_before", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.NumberField{Name: "refunded_after", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.NumberField{Name: "commission_change", OnlyInt: true, Help: "Change of the sale's net commission made with this change."},
		&core.DateField{Name: "sender_updated_at"},
		&core.NumberField{Name: "sender_sequence", OnlyInt: true, Min: types.Pointer(0.0)},
		&core.TextField{Name: "note", Max: 500},
		&core.AutodateField{Name: "created", OnCreate: true},
	)
	events.AddIndex("idx_conversion_events_conversion", false, "conversion, created", "")
	events.AddIndex("idx_conversion_events_affiliate", false, "affiliate, created", "")
	if err := app.Save(events); err != nil {
		return fmt.Errorf("create conversion_events: %w", err)
	}

	// Each corrected sale gets a history row saying why.
	const corrected = `(status = 'refunded' AND refunded_amount < amount) OR refunded_amount > amount`
	_, err = app.DB().NewQuery(`INSERT INTO conversion_events (id, conversion, affiliate, program, door, actor,
		status_before, status_after, refunded_before, refunded_after, commission_change, sender_updated_at, sender_sequence, note, created)
		SELECT substr(lower(hex(randomblob(8))), 1, 15), id, affiliate, program, 'system', '', status, status, refunded_amount, amount, 0, '', 0,
			CASE WHEN refunded_amount > amount THEN 'refunded_amount capped at the amount'
			ELSE 'status refunded means refunded in full: refunded_amount raised to the amount' END,
			strftime('%Y-%m-%d %H:%M:%fZ', 'now')
		FROM conversions WHERE ` + corrected).Execute()
	if err != nil {
		return fmt.Errorf("history of refunded sales: %w", err)
	}
	if _, err = app.DB().NewQuery(`UPDATE conversions SET refunded_amount = amount WHERE ` + corrected).Execute(); err != nil {
		return fmt.Errorf("refunded sales: %w", err)
	}
	return nil
}

func conversionUpdatesDown(app core.App) error {
	if events, err := app.FindCollectionByNameOrId("conversion_events"); err == nil {
		if err := app.Delete(events); err != nil {
			return fmt.Errorf("delete conversion_events: %w", err)
		}
	}
	conversions, err := app.FindCollectionByNameOrId("conversions")
	if err != nil {
		return err
	}
	conversions.Fields.RemoveByName("sender_updated_at")
	conversions.Fields.RemoveByName("sender_sequence")
	return app.Save(conversions)
}
