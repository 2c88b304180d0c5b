package hooks

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// shopifyWebhookPath receives Shopify's webhooks (SHOPIFY_WEBHOOK_SECRET).
const shopifyWebhookPath = "/api/pba/shopify/webhook"

// shopifyProvider reads Shopify webhooks: orders/paid is a sale (total_price, a decimal string
// parsed exactly in the order's currency), refunds/create a refund (its successful refund
// transactions; partial refunds add up). The topic is X-Shopify-Topic, the event
// X-Shopify-Event-Id (the same for every delivery of one event), else X-Shopify-Webhook-Id.
// Attribution from the order's note_attributes (pba_click, pba_affiliate: cart attributes set
// by the shop's theme) and its discount_codes, the first of which is the coupon.
type shopifyProvider struct {
	hmacSignature // X-Shopify-Hmac-Sha256: base64
}

func newShopifyWebhook(cfg Config, conversions *conversionService) *providerWebhook {
	return newProviderWebhook(collections.SourceShopify, "Shopify", "SHOPIFY_WEBHOOK_SECRET",
		cfg.ShopifyWebhookSecret, &shopifyProvider{hmacSignature{cfg.ShopifyWebhookSecret, "X-Shopify-Hmac-Sha256",
			base64.StdEncoding.DecodeString}}, conversions)
}

// shopifyOrder is the part of an order pbaffiliate reads.
type shopifyOrder struct {
	ID             flexID `json:"id"`
	Email          string `json:"email"`
	Currency       string `json:"currency"`
	TotalPrice     string `json:"total_price"`
	ProcessedAt    string `json:"processed_at"`
	CreatedAt      string `json:"created_at"`
	FinancialState string `json:"financial_status"`
	Customer       *struct {
		ID flexID `json:"id"`
	} `json:"customer"`
	DiscountCodes []struct {
		Code string `json:"code"`
	} `json:"discount_codes"`
	NoteAttributes []struct {
		Name  string `json:"name"`
		Value any    `json:"value"`
	} `json:"note_attributes"`
}

// shopifyRefund is the part of a refund pbaffiliate reads.
type shopifyRefund struct {
	ID           flexID `json:"id"`
	OrderID      flexID `json:"order_id"`
	Transactions []struct {
		Kind     string `json:"kind"`
		Status   string `json:"status"`
		Amount   string `json:"amount"`
		Currency string `json:"currency"`
	} `json:"transactions"`
}

func (p *shopifyProvider) parse(header http.Header, body []byte) (providerEvent, error) {
	topic := strings.TrimSpace(header.Get("X-Shopify-Topic"))
	id := strings.TrimSpace(header.Get("X-Shopify-Event-Id"))
	if id == "" {
		id = strings.TrimSpace(header.Get("X-Shopify-Webhook-Id"))
	}
	if topic == "" {
		return providerEvent{}, errors.New("X-Shopify-Topic is required")
	}
	ev := providerEvent{ID: id, Type: topic}
	switch topic {
	case "orders/paid":
		var o shopifyOrder
		if err := json.Unmarshal(body, &o); err != nil {
			return ev.malformed(err)
		}
		return shopifySale(ev, &o)
	case "refunds/create":
		var r shopifyRefund
		if err := json.Unmarshal(body, &r); err != nil {
			return ev.malformed(err)
		}
		return shopifyRefundEvent(ev, &r)
	}
	ev.Ignored = "ignored: " + topic
	return ev, nil
}

func shopifySale(ev providerEvent, o *shopifyOrder) (providerEvent, error) {
	currency := strings.ToLower(o.Currency)
	amount, err := money.ParseDecimal(o.TotalPrice, currency)
	if err != nil {
		return ev.malformed(fmt.Errorf("total_price: %w", err))
	}
	if amount == 0 {
		ev.Ignored = "ignored: zero amount"
		return ev, nil
	}
	attrs := map[string]any{}
	for _, a := range o.NoteAttributes {
		attrs[a.Name] = a.Value
	}
	var coupon, customer string
	for i, d := range o.DiscountCodes {
		if i == 0 {
			coupon = d.Code
		}
		ev.Coupons = append(ev.Coupons, d.Code)
	}
	if o.Customer != nil {
		customer = string(o.Customer.ID)
	}
	occurred, err := time.Parse(time.RFC3339, o.ProcessedAt)
	if err != nil {
		occurred, _ = time.Parse(time.RFC3339, o.CreatedAt)
	}
	ev.Sale = &conversionInput{ExternalID: string(o.ID), ClickID: customString(attrs, providerKeyClick),
		AffiliateCode: customString(attrs, providerKeyAffiliate), Coupon: coupon, Customer: customer,
		CustomerEmail: o.Email, Amount: amount, Currency: currency, OccurredAt: occurred}
	return ev, nil
}

// shopifyRefundEvent sums the refund's successful refund transactions (a refund of items only,
// restocking without money back, refunds nothing).
func shopifyRefundEvent(ev providerEvent, r *shopifyRefund) (providerEvent, error) {
	var amount int64
	var currency string
	for _, t := range r.Transactions {
		if t.Kind != "refund" || t.Status != "success" {
			continue
		}
		c := strings.ToLower(t.Currency)
		if currency != "" && c != currency {
			return ev.malformed(errors.New("refund transactions in several currencies"))
		}
		n, err := money.ParseDecimal(t.Amount, c)
		if err != nil {
			return ev.malformed(fmt.Errorf("transactions.amount: %w", err))
		}
		amount, currency = amount+n, c
	}
	if r.ID == "" || r.OrderID == "" {
		return ev.malformed(errors.New("a refund needs id and order_id"))
	}
	ev.Refund = &providerRefund{Sale: string(r.OrderID), RefundID: string(r.ID), Amount: amount, Currency: currency}
	return ev, nil
}
