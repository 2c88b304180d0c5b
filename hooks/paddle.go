package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	paddle "github.com/PaddleHQ/paddle-go-sdk/v4"
	"github.com/PaddleHQ/paddle-go-sdk/v4/pkg/paddlenotification"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// paddleWebhookPath receives Paddle Billing's notifications (PADDLE_WEBHOOK_SECRET).
const paddleWebhookPath = "/api/pba/paddle/webhook"

// paddleProvider reads Paddle Billing notifications: transaction.completed is a sale (a
// subscription's first payment and each renewal, origin subscription_recurring), approved
// refund and chargeback adjustments are refunds. Attribution comes from the transaction's
// custom_data (pba_click, pba_affiliate, pba_coupon, set by Paddle.js customData); a
// transaction's discount is known by its id only, so a coupon whose code is the discount id
// (dsc_…) credits it when custom_data names no coupon.
type paddleProvider struct {
	verifier *paddle.WebhookVerifier
}

// newPaddleWebhook serves POST /api/pba/paddle/webhook with the official SDK's verifier
// (Paddle-Signature "ts=…;h1=…", HMAC-SHA256 of "ts:body"), refusing signatures older than
// Stripe's tolerance.
func newPaddleWebhook(cfg Config, conversions *conversionService) *providerWebhook {
	p := &paddleProvider{verifier: paddle.NewWebhookVerifier(cfg.PaddleWebhookSecret,
		paddle.VerifierWithTimestampTolerance(stripeSignatureTolerance))}
	return newProviderWebhook(collections.SourcePaddle, "Paddle", "PADDLE_WEBHOOK_SECRET", cfg.PaddleWebhookSecret, p, conversions)
}

func (p *paddleProvider) verify(header http.Header, body []byte) error {
	// The verifier reads a request: hand it the bytes already read.
	req, err := http.NewRequest(http.MethodPost, paddleWebhookPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = header
	ok, err := p.verifier.Verify(req)
	switch {
	case err != nil:
		return err
	case !ok:
		return errBadSignature
	}
	return nil
}

func (p *paddleProvider) parse(_ http.Header, body []byte) (providerEvent, error) {
	var head struct { // the envelope; data is decoded once, by type
		EventID    string                           `json:"event_id"`
		EventType  paddlenotification.EventTypeName `json:"event_type"`
		OccurredAt string                           `json:"occurred_at"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return providerEvent{}, err
	}
	ev := providerEvent{ID: head.EventID, Type: string(head.EventType)}
	occurred, _ := time.Parse(time.RFC3339, head.OccurredAt)
	switch head.EventType {
	case paddlenotification.EventTypeNameTransactionCompleted:
		var n paddlenotification.TransactionCompleted
		if err := json.Unmarshal(body, &n); err != nil {
			return ev.malformed(err)
		}
		return paddleSale(ev, &n.Data, occurred)
	case paddlenotification.EventTypeNameAdjustmentCreated, paddlenotification.EventTypeNameAdjustmentUpdated:
		var n paddlenotification.AdjustmentCreated
		if err := json.Unmarshal(body, &n); err != nil {
			return ev.malformed(err)
		}
		return paddleRefund(ev, &n.Data)
	}
	ev.Ignored = "ignored: " + ev.Type
	return ev, nil
}

// paddleSale is a completed transaction: grand_total (after discounts, tax and credits, what the
// customer paid) in minor units.
func paddleSale(ev providerEvent, t *paddlenotification.TransactionNotification, occurred time.Time) (providerEvent, error) {
	total := t.Details.Totals.GrandTotal
	if total == "" {
		total = t.Details.Totals.Total
	}
	amount, err := money.ParseMinor(total)
	if err != nil {
		return ev.malformed(fmt.Errorf("details.totals.grand_total: %w", err))
	}
	if amount == 0 {
		ev.Ignored = "ignored: zero amount"
		return ev, nil
	}
	if t.BilledAt != nil {
		if at, err := time.Parse(time.RFC3339, *t.BilledAt); err == nil {
			occurred = at
		}
	}
	coupon := customString(t.CustomData, providerKeyCoupon)
	if coupon == "" && t.DiscountID != nil {
		coupon = *t.DiscountID
	}
	ev.Sale = &conversionInput{
		ExternalID:     t.ID,
		ClickID:        customString(t.CustomData, providerKeyClick),
		AffiliateCode:  customString(t.CustomData, providerKeyAffiliate),
		Coupon:         coupon,
		Customer:       deref(t.CustomerID),
		Amount:         amount,
		Currency:       string(t.CurrencyCode),
		OccurredAt:     occurred,
		SubscriptionID: deref(t.SubscriptionID),
		Metadata:       map[string]any{"paddle_origin": string(t.Origin)},
	}
	return ev, nil
}

// paddleRefund is an approved refund or chargeback adjustment (each its own amount: partial
// refunds add up). Credits, pending or rejected adjustments and reversals change nothing here.
func paddleRefund(ev providerEvent, a *paddlenotification.AdjustmentNotification) (providerEvent, error) {
	if a.Action != paddlenotification.AdjustmentActionRefund && a.Action != paddlenotification.AdjustmentActionChargeback {
		ev.Ignored = fmt.Sprintf("ignored: adjustment action %s", a.Action)
		return ev, nil
	}
	if a.Status != paddlenotification.AdjustmentStatusApproved {
		ev.Ignored = fmt.Sprintf("ignored: adjustment status %s", a.Status)
		return ev, nil
	}
	amount, err := money.ParseMinor(a.Totals.Total)
	if err != nil {
		return ev.malformed(fmt.Errorf("totals.total: %w", err))
	}
	if a.ID == "" || a.TransactionID == "" {
		return ev.malformed(errors.New("an adjustment needs id and transaction_id"))
	}
	ev.Refund = &providerRefund{Sale: a.TransactionID, RefundID: a.ID, Amount: amount, Currency: string(a.CurrencyCode)}
	return ev, nil
}

// deref is *s, "" for nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
