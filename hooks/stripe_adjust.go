package hooks

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Kinds of Stripe adjustments that can arrive before the sale they adjust.
const (
	pendingRefund  = "refund"
	pendingDispute = "dispute"
)

// findStripeConversion finds the Stripe sale a refund or dispute is about, by payment intent,
// charge or invoice (the external id of subscription payments); nil when not recorded (yet).
func findStripeConversion(tx core.App, paymentIntent, charge, invoice string) (*core.Record, error) {
	for field, value := range map[string]string{
		collections.ConversionPaymentIntent: paymentIntent,
		collections.ConversionCharge:        charge,
		collections.ConversionExternalID:    invoice,
	} {
		if value == "" {
			continue
		}
		r, err := tx.FindFirstRecordByFilter(collections.Conversions, "source = 'stripe' && "+field+" = {:v}", dbx.Params{"v": value})
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("find stripe conversion by %s: %w", field, err)
		}
	}
	return nil, nil
}

// applyRefund records that refunded (cumulative, as Stripe reports amount_refunded) of the sale
// was paid back: a full refund makes the conversion refunded. Using the cumulative figure makes
// duplicates and reordered events converge on the same state.
func applyRefund(tx core.App, conv *core.Record, refunded int64) error {
	if refunded <= int64(conv.GetInt(collections.ConversionRefundedAmount)) {
		return nil
	}
	conv.Set(collections.ConversionRefundedAmount, refunded)
	if refunded >= int64(conv.GetInt(collections.FieldAmount)) {
		conv.Set(collections.FieldStatus, collections.ConversionRefunded)
	}
	return tx.Save(conv)
}

// applyDispute holds a sale under dispute: its commission waits until the dispute is resolved.
func applyDispute(tx core.App, conv *core.Record) error {
	if conv.GetString(collections.FieldStatus) == collections.ConversionRefunded ||
		conv.GetString(collections.ConversionReason) == collections.ReasonDispute {
		return nil
	}
	conv.Set(collections.FieldStatus, collections.ConversionPending)
	conv.Set(collections.ConversionReason, collections.ReasonDispute)
	return tx.Save(conv)
}

// storePendingStripe keeps a refund or dispute whose sale is not recorded yet; the sale applies
// it when it arrives (Stripe does not guarantee event order).
func storePendingStripe(tx core.App, kind, paymentIntent, charge, invoice string, refunded int64, eventID string) error {
	col, err := tx.FindCachedCollectionByNameOrId(collections.StripePending)
	if err != nil {
		return err
	}
	r := core.NewRecord(col)
	r.Load(map[string]any{"kind": kind, "payment_intent": paymentIntent, "charge": charge, "invoice": invoice,
		"amount_refunded": refunded, "event_id": eventID})
	return tx.Save(r)
}

// applyPendingStripe applies the refunds and disputes that arrived before conv, then forgets them.
func applyPendingStripe(tx core.App, conv *core.Record) error {
	if conv.GetString(collections.ConversionSource) != collections.SourceStripe {
		return nil
	}
	var pending []*core.Record
	for field, value := range map[string]string{
		"payment_intent": conv.GetString(collections.ConversionPaymentIntent),
		"charge":         conv.GetString(collections.ConversionCharge),
		"invoice":        conv.GetString(collections.ConversionExternalID),
	} {
		if value == "" {
			continue
		}
		found, err := tx.FindRecordsByFilter(collections.StripePending, field+" = {:v}", "created", 0, 0, dbx.Params{"v": value})
		if err != nil {
			return fmt.Errorf("pending stripe adjustments: %w", err)
		}
		pending = append(pending, found...)
	}
	seen := map[string]bool{}
	for _, p := range pending {
		if seen[p.Id] {
			continue
		}
		seen[p.Id] = true
		var err error
		switch p.GetString("kind") {
		case pendingRefund:
			err = applyRefund(tx, conv, int64(p.GetInt("amount_refunded")))
		case pendingDispute:
			err = applyDispute(tx, conv)
		}
		if err != nil {
			return err
		}
		if err := tx.Delete(p); err != nil {
			return err
		}
	}
	return nil
}
