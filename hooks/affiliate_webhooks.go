package hooks

import (
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Events sent to an affiliate's own webhook_url.
const eventConversionCreated = "conversion.created"

// enqueueConversionWebhook adds a notification of conv to the outbox when its affiliate has a
// webhook_url. It runs inside the conversion's transaction (the outbox pattern): the
// notification exists exactly when the conversion does, and sending it later can never block
// or fail the ingestion.
func enqueueConversionWebhook(tx core.App, conv *core.Record) error {
	affiliate, err := tx.FindRecordById(collections.Affiliates, conv.GetString(collections.FieldAffiliate))
	if err != nil {
		return err
	}
	url := affiliate.GetString(collections.AffiliateWebhookURL)
	if url == "" {
		return nil
	}
	col, err := tx.FindCachedCollectionByNameOrId(collections.WebhookDeliveries)
	if err != nil {
		return err
	}
	d := core.NewRecord(col)
	d.Load(map[string]any{
		"affiliate": affiliate.Id,
		"event":     eventConversionCreated,
		"event_id":  eventConversionCreated + ":" + conv.Id,
		"url":       url,
		"payload": map[string]any{
			"event": eventConversionCreated,
			"data": map[string]any{
				"id":          conv.Id,
				"program":     conv.GetString(collections.FieldProgram),
				"link":        conv.GetString(collections.FieldLink),
				"amount":      conv.GetInt(collections.FieldAmount),
				"currency":    conv.GetString(collections.FieldCurrency),
				"status":      conv.GetString(collections.FieldStatus),
				"occurred_at": conv.GetDateTime(collections.ConversionOccurredAt).Time().UTC().Format(time.RFC3339),
			},
		},
		"status":          "pending",
		"attempts":        0,
		"next_attempt_at": time.Now().UTC(),
	})
	return tx.Save(d)
}

// registerAffiliateWebhooks wires the delivery of the outbox (being written).
func registerAffiliateWebhooks(app core.App, cfg Config) {}
