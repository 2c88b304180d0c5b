package hooks

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76"

	"github.com/pbaffiliate/pbaffiliate/collections"
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
// was paid back: the update hook makes a fully refunded sale refunded (saleupdate.Settle; a
// rejected one stays rejected). Using the cumulative figure makes duplicates and reordered
// events converge on the same state. A refund above the sale's amount (a discount Stripe's
// charge did not have) is a full refund.
func applyRefund(tx core.App, conv *core.Record, refunded int64, why string) error {
	refunded = min(refunded, int64(conv.GetInt(collections.FieldAmount)))
	if refunded <= int64(conv.GetInt(collections.ConversionRefundedAmount)) {
		return nil
	}
	conv.Set(collections.ConversionRefundedAmount, refunded)
	return saveStripeSale(tx, conv, why)
}

// saveStripeSale saves a change Stripe reported through the conversions update hook, which
// records it in the sale's history (door stripe).
func saveStripeSale(tx core.App, conv *core.Record, why string) error {
	return saveSale(tx, conv, saleChange{Door: collections.DoorStripe, Note: why})
}

// applyDispute holds an approved sale under dispute: its commission waits until the dispute is
// resolved. Other sales are left alone: a refunded one has no commission left to hold, and a
// rejected one (self-referral) must not become approved when the dispute is won.
func applyDispute(tx core.App, conv *core.Record) error {
	if conv.GetString(collections.FieldStatus) != collections.ConversionApproved {
		return nil
	}
	conv.Set(collections.FieldStatus, collections.ConversionPending)
	conv.Set(collections.ConversionReason, collections.ReasonDispute)
	// The save holds a commission already released (registerConversionEdits).
	return saveStripeSale(tx, conv, "dispute opened")
}

// storePendingStripe keeps a refund or dispute whose sale is not recorded yet; the sale applies
// it when it arrives (Stripe does not guarantee event order).
func storePendingStripe(tx core.App, kind, paymentIntent, charge, invoice string, refunded int64, eventID string) error {
	col, err := tx.FindCachedCollectionByNameOrId(collections.StripePending)
	if err != nil {
		return err
	}
	r := core.NewRecord(col)
	r.Load(map[string]any{collections.StripePendingKind: kind, collections.StripePaymentIntent: paymentIntent,
		collections.StripeCharge: charge, collections.StripePendingInvoice: invoice,
		collections.StripePendingAmountRefunded: refunded, collections.StripeEventID: eventID})
	return tx.Save(r)
}

// applyPendingStripe applies the refunds and disputes that arrived before conv, then forgets them.
func applyPendingStripe(tx core.App, conv *core.Record) error {
	if conv.GetString(collections.ConversionSource) != collections.SourceStripe {
		return nil
	}
	var pending []*core.Record
	for field, value := range map[string]string{
		collections.StripePaymentIntent:  conv.GetString(collections.ConversionPaymentIntent),
		collections.StripeCharge:         conv.GetString(collections.ConversionCharge),
		collections.StripePendingInvoice: conv.GetString(collections.ConversionExternalID),
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
		switch p.GetString(collections.StripePendingKind) {
		case collections.StripePendingRefund:
			err = applyRefund(tx, conv, int64(p.GetInt(collections.StripePendingAmountRefunded)),
				"charge.refunded "+p.GetString(collections.StripeEventID)+" (arrived before the sale)")
		case collections.StripePendingDispute:
			err = applyDispute(tx, conv)
		}
		if err != nil {
			return err
		}
		if err := tx.Delete(p); err != nil {
			return err
		}
	}
	_, err := applyDisputeState(tx, conv)
	return err
}

// recordDispute stores what an event says about a dispute. A charge.dispute.closed (closed)
// sets the final status; any other event only creates a dispute not seen yet, so a created
// event that arrives after the closed one cannot reopen it.
// It returns the stored dispute, whose charge and payment intent are those of all its events.
func recordDispute(tx core.App, d *stripe.Dispute, charge, paymentIntent string, closed bool, eventID string) (*core.Record, error) {
	r, err := tx.FindFirstRecordByData(collections.StripeDisputes, collections.StripeDisputeID, d.ID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		col, err := tx.FindCachedCollectionByNameOrId(collections.StripeDisputes)
		if err != nil {
			return nil, err
		}
		r = core.NewRecord(col)
		r.Set(collections.StripeDisputeID, d.ID)
	case err != nil:
		return nil, fmt.Errorf("find dispute %s: %w", d.ID, err)
	case !closed || r.GetBool(collections.StripeDisputeClosed):
		// Known already, and this event does not close it (or it is closed already: a
		// duplicate closed event with another id carries the same final status).
		return r, nil
	}
	// An event that leaves out the charge or payment intent does not forget what another named.
	if charge != "" {
		r.Set(collections.StripeCharge, charge)
	}
	if paymentIntent != "" {
		r.Set(collections.StripePaymentIntent, paymentIntent)
	}
	r.Load(map[string]any{collections.StripeDisputeStatus: string(d.Status), collections.StripeDisputeClosed: closed,
		collections.FieldAmount: d.Amount, collections.StripeEventID: eventID})
	return r, tx.Save(r)
}

// applyDisputeState puts conv where the disputes of its payment leave it: any lost dispute is a
// full refund (the unpaid commission is voided, a paid one clawed back); else any dispute still
// open holds the sale; else (all won, or no longer open) a hold placed by a dispute is released
// and the commission goes on toward payable. It is a function of the stored disputes only, so
// replays and any order of events (and of the sale) converge. It returns what it did ("" for
// nothing).
func applyDisputeState(tx core.App, conv *core.Record) (string, error) {
	charge, pi := conv.GetString(collections.ConversionCharge), conv.GetString(collections.ConversionPaymentIntent)
	if charge == "" && pi == "" {
		return "", nil
	}
	disputes, err := tx.FindRecordsByFilter(collections.StripeDisputes,
		"(charge != '' && charge = {:charge}) || (payment_intent != '' && payment_intent = {:pi})", "created", 0, 0,
		dbx.Params{"charge": charge, "pi": pi})
	if err != nil {
		return "", fmt.Errorf("disputes of conversion %s: %w", conv.Id, err)
	}
	if len(disputes) == 0 {
		return "", nil
	}
	lost, open := false, false
	for _, d := range disputes {
		switch d.GetString(collections.StripeDisputeStatus) {
		case collections.StripeDisputeLost:
			lost = true
		case collections.StripeDisputeWon, collections.StripeDisputeWarningClosed: // an inquiry closed without a chargeback keeps the money too
		default:
			open = true
		}
	}
	switch {
	case lost:
		if err := applyRefund(tx, conv, int64(conv.GetInt(collections.FieldAmount)), "dispute lost"); err != nil {
			return "", err
		}
		return "dispute lost: refunded", nil
	case open:
		return "held", applyDispute(tx, conv)
	case conv.GetString(collections.FieldStatus) == collections.ConversionPending &&
		conv.GetString(collections.ConversionReason) == collections.ReasonDispute:
		conv.Set(collections.FieldStatus, collections.ConversionApproved)
		conv.Set(collections.ConversionReason, "")
		return "dispute won: released", saveStripeSale(tx, conv, "dispute won")
	}
	return "", nil
}
