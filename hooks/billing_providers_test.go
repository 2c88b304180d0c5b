package hooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// Sales from Paddle Billing, Lemon Squeezy and Shopify: payloads shaped like each provider's
// documented examples, signed as the provider signs them, through the real routes. One app per
// provider; its subtests build on each other's state only where they say so.

const providerTestSecret = "provider-test-secret"

// providerDelivery is one signed webhook request.
type providerDelivery struct {
	body   []byte
	header map[string]string
}

// providerFake builds a provider's deliveries.
type providerFake interface {
	// sale is a paid order/transaction; attrs are the checkout's custom data (pba_click, …),
	// coupon the discount code the customer entered. subscription and customer may be "".
	sale(event, order string, amount int64, attrs map[string]string, coupon, subscription, customer string) providerDelivery
	// renewal is a subscription's later payment (no custom data).
	renewal(event, payment, subscription, customer string, amount int64) providerDelivery
	// refund is one refund of order: refundID's own amount, and the order's cumulative refunded
	// amount after it (Lemon Squeezy sends that one).
	refund(event, order, refundID string, amount, cumulative int64) providerDelivery
	// linkFirst are the deliveries that report a subscription's first payment again (Lemon
	// Squeezy's initial invoice), sent after sale.
	linkFirst(subscription, customer string, amount int64) []providerDelivery
	// externalID is the sale's external id for order (or renewal payment).
	externalID(order string, renewal bool) string
}

// providerEnv is one served app receiving one provider's webhooks.
type providerEnv struct {
	*stripeEnv
	source, path string
	fake         providerFake
}

func newProviderEnv(t *testing.T, source string, fake providerFake) *providerEnv {
	t.Helper()
	cfg := hooks.Config{IPSalt: "s"}
	switch source {
	case collections.SourcePaddle:
		cfg.PaddleWebhookSecret = providerTestSecret
	case collections.SourceLemonSqueezy:
		cfg.LemonSqueezyWebhookSecret = providerTestSecret
	case collections.SourceShopify:
		cfg.ShopifyWebhookSecret = providerTestSecret
	}
	env := &providerEnv{stripeEnv: newStripeEnv(t, cfg), source: source, path: "/api/pba/" + source + "/webhook", fake: fake}
	// No hold, so a commission is payable on the engine's next run and refunds reach the ledger.
	env.update(collections.Programs, fx.ProgramP, map[string]any{"hold_days": 0})
	code := "ada10"
	if source == collections.SourcePaddle {
		code = "dsc_ada10" // Paddle names a transaction's discount by its id
	}
	env.save(collections.Coupons, map[string]any{"code": code, "affiliate": fx.A.ID, "program": fx.ProgramP, "active": true})
	return env
}

func (p *providerEnv) post(d providerDelivery) *pbatest.Response {
	var opts []func(*http.Request)
	for k, v := range d.header {
		opts = append(opts, pbatest.Header(k, v))
	}
	return pbatest.Request(p.handler, http.MethodPost, p.path, "", string(d.body), opts...)
}

// deliver posts d and expects 200; it returns the stored or duplicate answer.
func (p *providerEnv) deliver(d providerDelivery) *pbatest.Response {
	p.t.Helper()
	res := p.post(d)
	if res.Code != http.StatusOK {
		p.t.Fatalf("status %d, want 200: %s", res.Code, res.Body)
	}
	return res
}

func (p *providerEnv) sales(externalID string) []*core.Record {
	p.t.Helper()
	rows, err := p.app.FindRecordsByFilter(collections.Conversions, "source = {:s} && external_id = {:id}", "", 0, 0,
		dbx.Params{"s": p.source, "id": externalID})
	if err != nil {
		p.t.Fatal(err)
	}
	return rows
}

// sale is the one sale recorded under the order's external id.
func (p *providerEnv) sale(order string, renewal bool) *core.Record {
	p.t.Helper()
	rows := p.sales(p.fake.externalID(order, renewal))
	if len(rows) != 1 {
		p.t.Fatalf("%d sales for %s, want 1", len(rows), order)
	}
	return rows[0]
}

// counts are the rows a rejected delivery must not change.
func (p *providerEnv) counts() [3]int64 {
	return [3]int64{p.count(collections.Conversions), p.count(collections.ProviderEvents), p.count(collections.ProviderRefunds)}
}

// runProviderScenarios drives the behaviour every provider shares.
func runProviderScenarios(t *testing.T, p *providerEnv) {
	codeB := p.affiliateCode(fx.B.ID)

	t.Run("click credits the sale once; a replay is a duplicate", func(t *testing.T) {
		d := p.fake.sale("e-click", "1001", 4900, map[string]string{"pba_click": fx.RowsA.Click}, "", "", "1")
		res := p.deliver(d)
		if out, _ := res.JSON["outcome"].(string); !strings.HasPrefix(out, "recorded conversion") {
			t.Fatalf("outcome %q", out)
		}
		c := p.sale("1001", false)
		for field, want := range map[string]any{"affiliate": fx.A.ID, "click": fx.RowsA.Click, "link": fx.RowsA.Link,
			"currency": "usd", "amount": 4900, "status": "approved", "payment_number": 1} {
			if got := c.Get(field); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s = %v, want %v", field, got, want)
			}
		}
		if res := p.deliver(d); res.JSON["duplicate"] != true {
			t.Errorf("replay: %s, want duplicate", res.Body)
		}
		if n := len(p.sales(p.fake.externalID("1001", false))); n != 1 {
			t.Errorf("%d sales after the replay", n)
		}
	})

	t.Run("affiliate code credits the sale", func(t *testing.T) {
		p.deliver(p.fake.sale("e-code", "1002", 2500, map[string]string{"pba_affiliate": codeB}, "", "", ""))
		if got := p.sale("1002", false).GetString("affiliate"); got != fx.B.ID {
			t.Errorf("affiliate %s, want B", got)
		}
	})

	t.Run("discount code credits the coupon's affiliate", func(t *testing.T) {
		p.deliver(p.fake.sale("e-coupon", "1003", 3000, nil, "ADA10", "", ""))
		c := p.sale("1003", false)
		if c.GetString("affiliate") != fx.A.ID || !strings.Contains(c.GetString("metadata"), "coupon") {
			t.Errorf("affiliate %s metadata %s, want A by coupon", c.GetString("affiliate"), c.GetString("metadata"))
		}
	})

	t.Run("tampered or missing signature: 400, nothing stored", func(t *testing.T) {
		before := p.counts()
		d := p.fake.sale("e-tamper", "1004", 100000, map[string]string{"pba_click": fx.RowsA.Click}, "", "", "")
		tampered := d
		tampered.body = []byte(strings.Replace(string(d.body), "1004", "1005", 1))
		res := p.post(tampered)
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "signature") {
			t.Errorf("tampered: %d %s, want 400 naming the signature", res.Code, res.Body)
		}
		unsigned := providerDelivery{body: d.body, header: map[string]string{"X-Shopify-Topic": "orders/paid"}}
		if res := p.post(unsigned); res.Code != http.StatusBadRequest {
			t.Errorf("unsigned: %d %s, want 400", res.Code, res.Body)
		}
		if after := p.counts(); after != before {
			t.Errorf("rows %v → %v after refused deliveries", before, after)
		}
	})

	t.Run("partial refunds converge on the cumulative amount", func(t *testing.T) {
		p.deliver(p.fake.sale("e-refund-sale", "2001", 10000, map[string]string{"pba_click": fx.RowsA.Click}, "", "", ""))
		p.runEngine() // the commission exists before the refunds
		first := p.fake.refund("e-r1", "2001", "r-1", 1500, 1500)
		p.deliver(first)
		p.deliver(p.fake.refund("e-r2", "2001", "r-2", 2500, 4000))
		if res := p.deliver(first); res.JSON["duplicate"] != true {
			t.Errorf("replayed refund: %s, want duplicate", res.Body)
		}
		c := p.sale("2001", false)
		if c.GetInt("refunded_amount") != 4000 || c.GetString("status") != "approved" {
			t.Errorf("refunded %d status %s, want 4000 approved", c.GetInt("refunded_amount"), c.GetString("status"))
		}
		p.runEngine()
		if got := p.saleCommission(c.Id).GetInt("amount"); got != 1200 { // 20% of the 6000 kept
			t.Errorf("commission %d after refunds, want 1200", got)
		}
		p.deliver(p.fake.refund("e-r3", "2001", "r-3", 6000, 10000))
		if c := p.sale("2001", false); c.GetString("status") != "refunded" || c.GetInt("refunded_amount") != 10000 {
			t.Errorf("after the last refund: %s %d, want refunded 10000", c.GetString("status"), c.GetInt("refunded_amount"))
		}
		p.runEngine()
		if got := p.saleCommission(c.Id).GetString("status"); got != "void" {
			t.Errorf("commission %s after a full refund, want void", got)
		}
		hist, err := p.app.FindAllRecords(collections.ConversionEvents, dbx.HashExp{"conversion": c.Id, "door": p.source})
		if err != nil || len(hist) != 3 {
			t.Errorf("%d history rows through door %s (%v), want 3", len(hist), p.source, err)
		}
	})

	t.Run("a refund before its sale waits for it", func(t *testing.T) {
		res := p.deliver(p.fake.refund("e-early", "3001", "r-early", 700, 700))
		if out, _ := res.JSON["outcome"].(string); !strings.HasPrefix(out, "pending: refund") {
			t.Errorf("early refund outcome %q", out)
		}
		p.deliver(p.fake.sale("e-late-sale", "3001", 7000, map[string]string{"pba_click": fx.RowsA.Click}, "", "", ""))
		if c := p.sale("3001", false); c.GetInt("refunded_amount") != 700 || c.GetString("status") != "approved" {
			t.Errorf("sale after its refund: %d %s, want 700 approved", c.GetInt("refunded_amount"), c.GetString("status"))
		}
		p.runEngine()
	})

	t.Run("no attribution is acknowledged and remembered", func(t *testing.T) {
		d := p.fake.sale("e-nobody", "4001", 1000, nil, "", "", "5")
		if out, _ := p.deliver(d).JSON["outcome"].(string); out != "ignored: no attribution" {
			t.Errorf("outcome %q", out)
		}
		if res := p.deliver(d); res.JSON["duplicate"] != true || len(p.sales(p.fake.externalID("4001", false))) != 0 {
			t.Errorf("replay of an ignored event: %s", res.Body)
		}
	})
}

// runProviderRenewals checks the program's recurring rule on a subscription's renewals: lifetime
// credits the subscriber's first affiliate with a recurring commission, first does not.
func runProviderRenewals(t *testing.T, p *providerEnv) {
	t.Run("renewals follow the program's recurring rule", func(t *testing.T) {
		p.update(collections.Programs, fx.ProgramP, map[string]any{collections.ProgramRecurring: collections.RecurringLifetime})
		p.deliver(p.fake.sale("e-sub-1", "5001", 2000, map[string]string{"pba_click": fx.RowsA.Click}, "", "9", "99"))
		for _, d := range p.fake.linkFirst("9", "99", 2000) {
			p.deliver(d)
		}
		p.deliver(p.fake.renewal("e-sub-2", "5002", "9", "99", 2000))
		renewal := p.sale("5002", true)
		if renewal.GetString("affiliate") != fx.A.ID || renewal.GetInt("payment_number") != 2 {
			t.Errorf("renewal: affiliate %s payment %d, want A and 2", renewal.GetString("affiliate"), renewal.GetInt("payment_number"))
		}
		p.runEngine()
		if c := p.saleCommissionKind(renewal.Id); c.GetString("kind") != collections.KindRecurring || c.GetInt("amount") != 400 {
			t.Errorf("renewal commission %s %d, want recurring 400", c.GetString("kind"), c.GetInt("amount"))
		}

		p.update(collections.Programs, fx.ProgramP, map[string]any{collections.ProgramRecurring: collections.RecurringFirst})
		res := p.deliver(p.fake.renewal("e-sub-3", "5003", "9", "99", 2000))
		if out, _ := res.JSON["outcome"].(string); out != "ignored: no attribution" {
			t.Errorf("renewal under recurring first: %q, want no attribution (the customer is not sticky)", out)
		}
		p.runEngine()
	})
}

// saleCommissionKind is the one commission of a conversion, whatever its kind.
func (p *providerEnv) saleCommissionKind(conversion string) *core.Record {
	p.t.Helper()
	r, err := p.app.FindFirstRecordByFilter(collections.Commissions, "conversion = {:c}", dbx.Params{"c": conversion})
	if err != nil {
		p.t.Fatalf("commission of %s: %v", conversion, err)
	}
	return r
}

func TestPaddleWebhook(t *testing.T) {
	p := newProviderEnv(t, collections.SourcePaddle, paddleFake{})
	runProviderScenarios(t, p)
	runProviderRenewals(t, p)

	t.Run("pending and credit adjustments refund nothing", func(t *testing.T) {
		p.deliver(p.fake.sale("e-adj-sale", "6001", 3000, map[string]string{"pba_affiliate": p.affiliateCode(fx.B.ID)}, "", "", ""))
		pending := paddleFake{}.adjustment("e-adj-1", "txn_6001", "adj_1", "refund", "pending_approval", 3000)
		if out, _ := p.deliver(pending).JSON["outcome"].(string); out != "ignored: adjustment status pending_approval" {
			t.Errorf("pending refund: %q", out)
		}
		credit := paddleFake{}.adjustment("e-adj-2", "txn_6001", "adj_2", "credit", "approved", 3000)
		p.deliver(credit)
		// Approved later (adjustment.updated of the same adjustment): now it refunds.
		p.deliver(paddleFake{}.adjustment("e-adj-3", "txn_6001", "adj_1", "refund", "approved", 3000))
		if c := p.sale("6001", false); c.GetString("status") != "refunded" {
			t.Errorf("status %s after the approved refund, want refunded", c.GetString("status"))
		}
	})

	t.Run("an expired signature is refused", func(t *testing.T) {
		d := paddleFake{at: time.Now().Add(-time.Hour)}.sale("e-old", "6002", 1000, map[string]string{"pba_click": fx.RowsA.Click}, "", "", "")
		if res := p.post(d); res.Code != http.StatusBadRequest {
			t.Errorf("old signature: %d %s, want 400", res.Code, res.Body)
		}
	})

	t.Run("the other providers answer 503 without their secret", func(t *testing.T) {
		for _, path := range []string{"/api/pba/lemonsqueezy/webhook", "/api/pba/shopify/webhook"} {
			res := pbatest.Request(p.handler, http.MethodPost, path, "", `{}`)
			if res.Code != http.StatusServiceUnavailable || !strings.Contains(res.Body.String(), "_WEBHOOK_SECRET") {
				t.Errorf("%s: %d %s, want 503 naming the variable", path, res.Code, res.Body)
			}
		}
	})
	p.ledgerOK()
}

func TestLemonSqueezyWebhook(t *testing.T) {
	p := newProviderEnv(t, collections.SourceLemonSqueezy, lemonFake{})
	runProviderScenarios(t, p)
	runProviderRenewals(t, p)
	p.ledgerOK()
}

func TestShopifyWebhook(t *testing.T) {
	p := newProviderEnv(t, collections.SourceShopify, shopifyFake{})
	runProviderScenarios(t, p)

	t.Run("a decimal total is read exactly in the order's currency", func(t *testing.T) {
		d := shopifyFake{}.order("e-dec", "7001", "19.90", "usd", map[string]string{"pba_click": fx.RowsA.Click})
		p.deliver(d)
		if got := p.sale("7001", false).GetInt("amount"); got != 1990 {
			t.Errorf("amount %d, want 1990", got)
		}
		bad := shopifyFake{}.order("e-float", "7002", "19.999", "usd", map[string]string{"pba_click": fx.RowsA.Click})
		res := p.deliver(bad) // acknowledged: a signed event does not get better on redelivery
		if out, _ := res.JSON["outcome"].(string); !strings.HasPrefix(out, "ignored: malformed orders/paid: total_price") || len(p.sales("7002")) != 0 {
			t.Errorf("19.999 USD: %s, want ignored as malformed and no sale", res.Body)
		}
	})

	t.Run("of several discount codes the coupon credits", func(t *testing.T) {
		d := shopifyFake{}.order("e-codes", "7003", "30.00", "usd", nil, "SPRING", "ADA10")
		p.deliver(d)
		if got := p.sale("7003", false).GetString("affiliate"); got != fx.A.ID {
			t.Errorf("affiliate %s, want A (coupon ada10 after the shop's own SPRING)", got)
		}
	})
	p.ledgerOK()
}

// paddleFake builds Paddle Billing notifications shaped like developer.paddle.com's examples
// (transaction.completed, adjustment.created), signed "ts=…;h1=…" over "ts:body".
type paddleFake struct{ at time.Time }

func (f paddleFake) signed(event, typ string, data map[string]any) providerDelivery {
	at := f.at
	if at.IsZero() {
		at = time.Now()
	}
	body, _ := json.Marshal(map[string]any{"event_id": "evt_" + event, "event_type": typ,
		"occurred_at": at.UTC().Format(time.RFC3339Nano), "notification_id": "ntf_" + event, "data": data})
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(providerTestSecret))
	mac.Write([]byte(ts + ":"))
	mac.Write(body)
	return providerDelivery{body: body, header: map[string]string{"Paddle-Signature": "ts=" + ts + ";h1=" + hex.EncodeToString(mac.Sum(nil))}}
}

func (f paddleFake) transaction(event, id, origin string, amount int64, custom map[string]string, discount, subscription, customer string) providerDelivery {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	total := strconv.FormatInt(amount, 10)
	data := map[string]any{
		"id": "txn_" + id, "status": "completed", "customer_id": nilIfEmpty(customer), "address_id": "add_01hv8gwdfkw5z6d1yy6pa3xyrz",
		"business_id": nil, "custom_data": custom, "currency_code": "USD", "origin": origin,
		"subscription_id": nilIfEmpty(subscription), "invoice_id": "inv_" + id, "invoice_number": "325-" + id,
		"collection_mode": "automatic", "discount_id": nilIfEmpty(discount), "billing_details": nil,
		"items": []any{map[string]any{"price": map[string]any{"id": "pri_01gsz8x8sawmvhz1pv30nge1ke", "unit_price": map[string]any{"amount": total, "currency_code": "USD"}}, "quantity": 1}},
		"details": map[string]any{"totals": map[string]any{"subtotal": total, "tax": "0", "discount": "0", "total": total,
			"grand_total": total, "fee": "250", "credit": "0", "credit_to_balance": "0", "balance": "0", "earnings": "4650", "currency_code": "USD"}},
		"payments":   []any{map[string]any{"payment_attempt_id": "pa_" + id, "amount": total, "status": "captured", "method_details": map[string]any{"type": "card"}}},
		"checkout":   map[string]any{"url": "https://shop.example.com/pay?_ptxn=txn_" + id},
		"created_at": now, "updated_at": now, "billed_at": now,
	}
	return f.signed(event, "transaction.completed", data)
}

func (f paddleFake) sale(event, order string, amount int64, attrs map[string]string, coupon, subscription, customer string) providerDelivery {
	discount := ""
	if coupon != "" {
		// A Paddle transaction names its discount by id; the coupon's code is that id.
		discount = "dsc_" + strings.ToLower(coupon)
	}
	return f.transaction(event, order, "web", amount, attrs, discount, subscription, customer)
}

func (f paddleFake) renewal(event, payment, subscription, customer string, amount int64) providerDelivery {
	return f.transaction(event, payment, "subscription_recurring", amount, nil, "", subscription, customer)
}

func (f paddleFake) adjustment(event, transaction, id, action, status string, amount int64) providerDelivery {
	total := strconv.FormatInt(amount, 10)
	return f.signed(event, "adjustment.created", map[string]any{
		"id": id, "action": action, "type": "partial", "transaction_id": transaction, "subscription_id": nil,
		"customer_id": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4", "reason": "error", "credit_applied_to_balance": nil,
		"currency_code": "USD", "status": status, "items": []any{},
		"totals": map[string]any{"subtotal": total, "tax": "0", "total": total, "fee": "0", "earnings": "0", "currency_code": "USD"},
	})
}

func (f paddleFake) refund(event, order, refundID string, amount, _ int64) providerDelivery {
	return f.adjustment(event, "txn_"+order, "adj_"+refundID, "refund", "approved", amount)
}

func (paddleFake) externalID(order string, _ bool) string { return "txn_" + order }

// linkFirst: Paddle's first transaction carries its subscription id; nothing to link.
func (paddleFake) linkFirst(string, string, int64) []providerDelivery { return nil }

// lemonFake builds Lemon Squeezy webhooks shaped like docs.lemonsqueezy.com's examples
// (orders, subscription-invoices), signed with X-Signature = hex HMAC-SHA256 of the body.
type lemonFake struct{}

func (lemonFake) signed(event string, data map[string]any, custom map[string]string) providerDelivery {
	meta := map[string]any{"test_mode": true, "event_name": event, "webhook_id": "e8a6ae05-2f8b-4b87-9e2d-b2e9cb2a1a7d"}
	if custom != nil {
		meta["custom_data"] = custom
	}
	body, _ := json.Marshal(map[string]any{"meta": meta, "data": data})
	return providerDelivery{body: body, header: map[string]string{"X-Event-Name": event,
		"X-Signature": hex.EncodeToString(hmacOf(body))}}
}

func lemonObject(typ, id string, attrs map[string]any) map[string]any {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	base := map[string]any{"store_id": 49595, "currency": "USD", "currency_rate": "1.00000000", "tax": 0,
		"status": "paid", "refunded": false, "refunded_amount": 0, "created_at": now, "updated_at": now, "test_mode": true}
	for k, v := range attrs {
		base[k] = v
	}
	return map[string]any{"type": typ, "id": id, "attributes": base,
		"links": map[string]any{"self": "https://api.lemonsqueezy.com/v1/" + typ + "/" + id}}
}

func (f lemonFake) sale(_, order string, amount int64, attrs map[string]string, coupon, _, customer string) providerDelivery {
	if coupon != "" {
		// Lemon Squeezy's order names no discount code: the checkout passes it as custom data.
		attrs = map[string]string{"pba_coupon": coupon}
	}
	cust, _ := strconv.Atoi(customer)
	return f.signed("order_created", lemonObject("orders", order, map[string]any{
		"customer_id": cust, "identifier": "104e18a2-d755-4d4b-80c4-a6c1dcbe1c10", "order_number": 1,
		"user_name": "Darlene Daugherty", "user_email": "gernser@yahoo.com", "subtotal": amount, "discount_total": 0,
		"total": amount, "subtotal_usd": amount, "total_usd": amount, "status_formatted": "Paid",
		"first_order_item": map[string]any{"id": 1, "order_id": order, "product_id": 1, "variant_id": 1, "price": amount},
	}), attrs)
}

func (f lemonFake) invoice(id, subscription, customer, reason string, amount int64, custom map[string]string) providerDelivery {
	sub, _ := strconv.Atoi(subscription)
	cust, _ := strconv.Atoi(customer)
	return f.signed("subscription_payment_success", lemonObject("subscription-invoices", id, map[string]any{
		"subscription_id": sub, "customer_id": cust, "user_email": "gernser@yahoo.com", "billing_reason": reason,
		"card_brand": "visa", "card_last_four": "4242", "subtotal": amount, "discount_total": 0, "total": amount,
	}), custom)
}

func (f lemonFake) renewal(_, payment, subscription, customer string, amount int64) providerDelivery {
	return f.invoice(payment, subscription, customer, "renewal", amount, nil)
}

// linkFirst: the initial invoice repeats the order's payment and names its subscription.
func (f lemonFake) linkFirst(subscription, customer string, amount int64) []providerDelivery {
	return []providerDelivery{f.invoice("900"+subscription, subscription, customer, "initial", amount, nil)}
}

func (f lemonFake) refund(_, order, _ string, _, cumulative int64) providerDelivery {
	return f.signed("order_refunded", lemonObject("orders", order, map[string]any{
		"customer_id": 1, "total": 0, "refunded": true, "refunded_amount": cumulative,
		"refunded_at": time.Now().UTC().Format(time.RFC3339)}), nil)
}

func (lemonFake) externalID(order string, renewal bool) string {
	if renewal {
		return "invoice-" + order
	}
	return "order-" + order
}

// shopifyFake builds Shopify webhooks shaped like shopify.dev's orders/paid and refunds/create
// examples, signed with X-Shopify-Hmac-Sha256 = base64 HMAC-SHA256 of the body.
type shopifyFake struct{}

func (shopifyFake) signed(event, topic string, payload map[string]any) providerDelivery {
	body, _ := json.Marshal(payload)
	return providerDelivery{body: body, header: map[string]string{"X-Shopify-Topic": topic,
		"X-Shopify-Hmac-Sha256": base64.StdEncoding.EncodeToString(hmacOf(body)),
		"X-Shopify-Shop-Domain": "shop.example.com", "X-Shopify-API-Version": "2025-07",
		"X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043-" + event, "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5-" + event,
		"X-Shopify-Triggered-At": time.Now().UTC().Format(time.RFC3339)}}
}

func (f shopifyFake) order(event, id, total, currency string, attrs map[string]string, coupons ...string) providerDelivery {
	now := time.Now().UTC().Format(time.RFC3339)
	notes := []any{}
	for k, v := range attrs {
		notes = append(notes, map[string]any{"name": k, "value": v})
	}
	codes := []any{}
	for _, code := range coupons {
		if code != "" {
			codes = append(codes, map[string]any{"code": code, "amount": "5.00", "type": "fixed_amount"})
		}
	}
	orderID, _ := strconv.Atoi(id)
	return f.signed(event, "orders/paid", map[string]any{
		"id": orderID, "admin_graphql_api_id": "gid://shopify/Order/" + id, "email": "jon@example.com",
		"created_at": now, "processed_at": now, "currency": strings.ToUpper(currency), "presentment_currency": strings.ToUpper(currency),
		"financial_status": "paid", "total_price": total, "subtotal_price": total, "total_tax": "0.00",
		"discount_codes": codes, "note_attributes": notes, "customer": map[string]any{"id": 115310627314723954, "email": "jon@example.com"},
		"line_items": []any{map[string]any{"id": 866550311766439020, "price": total, "quantity": 1, "title": "IPod Nano - 8GB"}},
	})
}

func (f shopifyFake) sale(event, order string, amount int64, attrs map[string]string, coupon, _, _ string) providerDelivery {
	return f.order(event, order, fmt.Sprintf("%d.%02d", amount/100, amount%100), "usd", attrs, coupon)
}

func (shopifyFake) renewal(string, string, string, string, int64) providerDelivery {
	panic("Shopify sends no subscription renewals")
}

func (shopifyFake) linkFirst(string, string, int64) []providerDelivery { return nil }

func (f shopifyFake) refund(event, order, refundID string, amount, _ int64) providerDelivery {
	orderID, _ := strconv.Atoi(order)
	return f.signed(event, "refunds/create", map[string]any{
		"id": refundID, "order_id": orderID, "created_at": time.Now().UTC().Format(time.RFC3339), "note": "wrong size", "restock": true,
		"transactions": []any{
			map[string]any{"id": 179259969, "kind": "refund", "status": "success", "gateway": "bogus",
				"amount": fmt.Sprintf("%d.%02d", amount/100, amount%100), "currency": "USD"},
			map[string]any{"id": 179259970, "kind": "refund", "status": "failure", "amount": "99.00", "currency": "USD"},
		},
	})
}

func (shopifyFake) externalID(order string, _ bool) string { return order }

func hmacOf(body []byte) []byte {
	mac := hmac.New(sha256.New, []byte(providerTestSecret))
	mac.Write(body)
	return mac.Sum(nil)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
