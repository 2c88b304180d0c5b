package hooks

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// lemonSqueezyWebhookPath receives Lemon Squeezy's webhooks (LEMONSQUEEZY_WEBHOOK_SECRET).
const lemonSqueezyWebhookPath = "/api/pba/lemonsqueezy/webhook"

// lemonSqueezyProvider reads Lemon Squeezy webhooks: order_created is a sale (one-off, or a
// subscription's first payment), subscription_payment_success a renewal (its initial invoice
// repeats the order's payment and only gives that sale its subscription id), order_refunded
// and subscription_payment_refunded carry the cumulative refunded_amount. Attribution from
// meta.custom_data (pba_click, pba_affiliate, pba_coupon: checkout[custom][…]), which Lemon
// Squeezy repeats on every subscription event. Lemon Squeezy sends no event id, so an event is
// named by its type, object and, for refunds, the refunded amount: a redelivery is the same.
type lemonSqueezyProvider struct {
	hmacSignature // X-Signature: hex
}

func newLemonSqueezyWebhook(cfg Config, conversions *conversionService) *providerWebhook {
	return newProviderWebhook(collections.SourceLemonSqueezy, "Lemon Squeezy", "LEMONSQUEEZY_WEBHOOK_SECRET",
		cfg.LemonSqueezyWebhookSecret, &lemonSqueezyProvider{hmacSignature{cfg.LemonSqueezyWebhookSecret, "X-Signature", hex.DecodeString}},
		conversions)
}

// lemonSqueezyEvent is the part of a webhook pbaffiliate reads.
type lemonSqueezyEvent struct {
	Meta struct {
		EventName  string         `json:"event_name"`
		CustomData map[string]any `json:"custom_data"`
	} `json:"meta"`
	Data struct {
		Type       string `json:"type"`
		ID         flexID `json:"id"`
		Attributes struct {
			CustomerID     flexID `json:"customer_id"`
			SubscriptionID flexID `json:"subscription_id"`
			UserEmail      string `json:"user_email"`
			Currency       string `json:"currency"`
			Total          int64  `json:"total"`
			RefundedAmount int64  `json:"refunded_amount"`
			Status         string `json:"status"`
			BillingReason  string `json:"billing_reason"`
			CreatedAt      string `json:"created_at"`
		} `json:"attributes"`
	} `json:"data"`
}

func (p *lemonSqueezyProvider) parse(_ http.Header, body []byte) (providerEvent, error) {
	var in lemonSqueezyEvent
	if err := json.Unmarshal(body, &in); err != nil {
		return providerEvent{}, err
	}
	name, a := in.Meta.EventName, in.Data.Attributes
	if name == "" || in.Data.ID == "" {
		return providerEvent{}, errors.New("meta.event_name and data.id are required")
	}
	ev := providerEvent{ID: name + ":" + string(in.Data.ID), Type: name}
	// Orders and subscription invoices are numbered apart: their external ids say which.
	order, invoice := "order-"+string(in.Data.ID), "invoice-"+string(in.Data.ID)
	switch name {
	case "order_created", "subscription_payment_success":
		if a.Status != "paid" {
			ev.Ignored = fmt.Sprintf("ignored: status %q", a.Status)
			return ev, nil
		}
		if a.Total <= 0 {
			ev.Ignored = "ignored: zero amount"
			return ev, nil
		}
		occurred, _ := time.Parse(time.RFC3339, a.CreatedAt)
		custom := in.Meta.CustomData
		sale := &conversionInput{ExternalID: order, ClickID: customString(custom, providerKeyClick),
			AffiliateCode: customString(custom, providerKeyAffiliate), Coupon: customString(custom, providerKeyCoupon),
			Customer: string(a.CustomerID), CustomerEmail: a.UserEmail, Amount: a.Total, Currency: a.Currency,
			OccurredAt: occurred}
		if name == "subscription_payment_success" {
			if a.BillingReason == "initial" {
				ev.Link = &providerSubscriptionLink{Customer: string(a.CustomerID), Subscription: string(a.SubscriptionID),
					Currency: a.Currency, Amount: a.Total}
				return ev, nil
			}
			sale.ExternalID, sale.SubscriptionID = invoice, string(a.SubscriptionID)
		}
		ev.Sale = sale
	case "order_refunded", "subscription_payment_refunded":
		sale := order
		if name == "subscription_payment_refunded" {
			sale = invoice
		}
		// The cumulative amount names the event: a second partial refund is a new event.
		ev.ID = fmt.Sprintf("%s:%d", ev.ID, a.RefundedAmount)
		ev.Refund = &providerRefund{Sale: sale, RefundID: sale, Amount: a.RefundedAmount, Currency: a.Currency}
	default:
		ev.Ignored = "ignored: " + name
	}
	return ev, nil
}

// flexID is an id Lemon Squeezy or Shopify sends as a JSON number or string.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = flexID(n.String())
	}
	return nil
}
