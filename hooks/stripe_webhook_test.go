package hooks_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

const (
	stripeTestSecret      = "whsec_test"
	stripeTestWebhookPath = "/api/pba/stripe/webhook"
)

// stripeEnv is one served test app that receives signed Stripe events.
type stripeEnv struct {
	*clickEnv
}

func newStripeEnv(t *testing.T, cfg hooks.Config) *stripeEnv {
	t.Helper()
	return &stripeEnv{newClickEnv(t, cfg)}
}

func newStripe(t *testing.T) *stripeEnv {
	t.Helper()
	return newStripeEnv(t, hooks.Config{IPSalt: "s", StripeWebhookSecret: stripeTestSecret})
}

// stripeEvent is an event as Stripe sends it (API version 2023-10-16, references as bare ids).
func stripeEvent(id, typ string, object map[string]any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": "2023-10-16", "created": time.Now().Unix(),
		"livemode": false, "type": typ, "data": map[string]any{"object": object},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// postRaw sends body with the given Stripe-Signature header ("" = none).
func (s *stripeEnv) postRaw(body []byte, signature string) *pbatest.Response {
	var opts []func(*http.Request)
	if signature != "" {
		opts = append(opts, pbatest.Header("Stripe-Signature", signature))
	}
	return pbatest.Request(s.handler, http.MethodPost, stripeTestWebhookPath, "", string(body), opts...)
}

// send signs body with the configured secret now and posts it, expecting 200.
func (s *stripeEnv) send(body []byte) *pbatest.Response {
	s.t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	res := s.postRaw(signed.Payload, signed.Header)
	if res.Code != http.StatusOK {
		s.t.Fatalf("status %d, want 200: %s", res.Code, res.Body)
	}
	return res
}

func (s *stripeEnv) stripeConversions(filter string, params ...dbx.Params) []*core.Record {
	s.t.Helper()
	if filter == "" {
		filter = "source = 'stripe'"
	} else {
		filter = "source = 'stripe' && (" + filter + ")"
	}
	rows, err := s.app.FindRecordsByFilter(collections.Conversions, filter, "created", 0, 0, params...)
	if err != nil {
		s.t.Fatal(err)
	}
	return rows
}

// conversion is the one Stripe conversion with externalID.
func (s *stripeEnv) conversion(externalID string) *core.Record {
	s.t.Helper()
	rows := s.stripeConversions("external_id = {:id}", dbx.Params{"id": externalID})
	if len(rows) != 1 {
		s.t.Fatalf("%d conversions with external_id %s, want 1", len(rows), externalID)
	}
	return rows[0]
}

func (s *stripeEnv) count(collection string) int64 {
	s.t.Helper()
	n, err := s.app.CountRecords(collection)
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

func (s *stripeEnv) outcome(eventID string) string {
	s.t.Helper()
	r, err := s.app.FindFirstRecordByData(collections.StripeEvents, "event_id", eventID)
	if err != nil {
		s.t.Fatalf("stripe event %s not stored: %v", eventID, err)
	}
	return r.GetString("outcome")
}

func (s *stripeEnv) affiliateCode(id string) string {
	s.t.Helper()
	r, err := s.app.FindRecordById(collections.Affiliates, id)
	if err != nil {
		s.t.Fatal(err)
	}
	return r.GetString(collections.FieldCode)
}

func (s *stripeEnv) update(collection, id string, data map[string]any) {
	s.t.Helper()
	r, err := s.app.FindRecordById(collection, id)
	if err != nil {
		s.t.Fatal(err)
	}
	r.Load(data)
	if err := s.app.Save(r); err != nil {
		s.t.Fatal(err)
	}
}

// stripeCheckoutPayment is a paid one-off Checkout Session credited to click.
func stripeCheckoutPayment(session, paymentIntent, click string, amount int64) map[string]any {
	return map[string]any{
		"id": session, "object": "checkout.session", "mode": "payment", "payment_status": "paid",
		"status": "complete", "amount_total": amount, "currency": "usd", "client_reference_id": click,
		"payment_intent": paymentIntent, "customer": "cus_" + session,
		"customer_details": map[string]any{"email": "buyer-" + session + "@example.net"},
	}
}

// stripeCheckoutSubscription is a paid subscription Checkout Session with its first invoice.
func stripeCheckoutSubscription(session, invoice, subscription, customer, click string, amount int64) map[string]any {
	return map[string]any{
		"id": session, "object": "checkout.session", "mode": "subscription", "payment_status": "paid",
		"status": "complete", "amount_total": amount, "currency": "usd", "client_reference_id": click,
		"invoice": invoice, "subscription": subscription, "customer": customer,
		"customer_details": map[string]any{"email": "subscriber@example.net"},
	}
}

func stripeInvoicePaid(invoice, subscription, customer, charge, reason string, amount int64, subMeta map[string]string) map[string]any {
	return map[string]any{
		"id": invoice, "object": "invoice", "status": "paid", "paid": true, "amount_paid": amount, "currency": "usd",
		"customer": customer, "customer_email": "subscriber@example.net", "subscription": subscription,
		"billing_reason": reason, "charge": charge, "payment_intent": "pi_" + invoice,
		"subscription_details": map[string]any{"metadata": subMeta}, "metadata": map[string]string{},
	}
}

func stripeChargeRefunded(charge, paymentIntent, invoice string, amount, refunded int64) map[string]any {
	obj := map[string]any{
		"id": charge, "object": "charge", "amount": amount, "amount_refunded": refunded, "currency": "usd",
		"refunded": refunded >= amount, "payment_intent": paymentIntent,
	}
	if invoice != "" {
		obj["invoice"] = invoice
	}
	return obj
}

func stripeDispute(id, charge, paymentIntent string) map[string]any {
	obj := map[string]any{"id": id, "object": "dispute", "amount": 1000, "currency": "usd", "charge": charge, "status": "needs_response"}
	if paymentIntent != "" {
		obj["payment_intent"] = paymentIntent
	}
	return obj
}

func stripeWantString(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func stripeWantInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

func stripeWantPrefix(t *testing.T, what, got, prefix string) {
	t.Helper()
	if !strings.HasPrefix(got, prefix) {
		t.Errorf("%s = %q, want prefix %q", what, got, prefix)
	}
}

func TestStripeCheckoutCompleted(t *testing.T) {
	s := newStripe(t)

	t.Run("client_reference_id credits the click", func(t *testing.T) {
		res := s.send(stripeEvent("evt_cs1", "checkout.session.completed", stripeCheckoutPayment("cs_1", "pi_1", fx.RowsA.Click, 4900)))
		stripeWantPrefix(t, "response outcome", res.JSON["outcome"].(string), "recorded conversion")
		c := s.conversion("pi_1")
		stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.A.ID)
		stripeWantString(t, "click", c.GetString("click"), fx.RowsA.Click)
		stripeWantString(t, "link", c.GetString("link"), fx.RowsA.Link)
		stripeWantString(t, "program", c.GetString("program"), fx.ProgramP)
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionApproved)
		stripeWantString(t, "customer", c.GetString("customer"), "cus_cs_1")
		stripeWantString(t, "stripe_payment_intent", c.GetString("stripe_payment_intent"), "pi_1")
		stripeWantString(t, "currency", c.GetString("currency"), "usd")
		stripeWantInt(t, "amount", c.GetInt("amount"), 4900)
		stripeWantInt(t, "payment_number", c.GetInt("payment_number"), 1)
		stripeWantPrefix(t, "stored outcome", s.outcome("evt_cs1"), "recorded conversion "+c.Id)
		if at := c.GetDateTime("occurred_at").Time(); time.Since(at) > time.Minute {
			t.Errorf("occurred_at = %v, want the event's created time", at)
		}
	})

	t.Run("metadata pba_affiliate credits the affiliate code", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_2", "pi_2", "", 1500)
		obj["metadata"] = map[string]string{"pba_affiliate": s.affiliateCode(fx.B.ID)}
		s.send(stripeEvent("evt_cs2", "checkout.session.completed", obj))
		c := s.conversion("pi_2")
		stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.B.ID)
		stripeWantString(t, "click", c.GetString("click"), "")
	})

	t.Run("unpaid session waits for async_payment_succeeded", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_3", "pi_3", fx.RowsA.Click, 2500)
		obj["payment_status"] = "unpaid"
		s.send(stripeEvent("evt_cs3", "checkout.session.completed", obj))
		stripeWantString(t, "outcome", s.outcome("evt_cs3"), `ignored: payment_status "unpaid"`)
		if n := len(s.stripeConversions("external_id = 'pi_3'")); n != 0 {
			t.Fatalf("%d conversions for an unpaid session", n)
		}
		obj["payment_status"] = "paid"
		s.send(stripeEvent("evt_cs3_paid", "checkout.session.async_payment_succeeded", obj))
		stripeWantString(t, "affiliate", s.conversion("pi_3").GetString("affiliate"), fx.A.ID)
	})

	t.Run("no attribution is acknowledged and remembered", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_4", "pi_4", "", 1000)
		delete(obj, "customer")
		res := s.send(stripeEvent("evt_cs4", "checkout.session.completed", obj))
		stripeWantString(t, "response outcome", res.JSON["outcome"].(string), "ignored: no attribution")
		stripeWantString(t, "stored outcome", s.outcome("evt_cs4"), "ignored: no attribution")
		if n := len(s.stripeConversions("external_id = 'pi_4'")); n != 0 {
			t.Fatalf("%d conversions without attribution", n)
		}
		if res := s.send(stripeEvent("evt_cs4", "checkout.session.completed", obj)); res.JSON["duplicate"] != true {
			t.Errorf("redelivery of an ignored event: %s, want duplicate", res.Body)
		}
	})

	t.Run("wrong currency is acknowledged as invalid", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_5", "pi_5", fx.RowsA.Click, 1000)
		obj["currency"] = "eur"
		s.send(stripeEvent("evt_cs5", "checkout.session.completed", obj))
		stripeWantPrefix(t, "outcome", s.outcome("evt_cs5"), "ignored: invalid: currency")
		if n := len(s.stripeConversions("external_id = 'pi_5'")); n != 0 {
			t.Fatalf("%d conversions in the wrong currency", n)
		}
	})

	t.Run("zero amount is ignored", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_6", "pi_6", fx.RowsA.Click, 0)
		obj["payment_status"] = "no_payment_required"
		s.send(stripeEvent("evt_cs6", "checkout.session.completed", obj))
		stripeWantString(t, "outcome", s.outcome("evt_cs6"), "ignored: zero amount")
	})
}

func TestStripeInvoicePaidStickyCustomer(t *testing.T) {
	s := newStripe(t)
	s.update(collections.Programs, fx.ProgramP, map[string]any{collections.ProgramRecurring: collections.RecurringLifetime})

	s.send(stripeEvent("evt_sub_cs", "checkout.session.completed",
		stripeCheckoutSubscription("cs_sub", "in_1", "sub_1", "cus_sub", fx.RowsA.Click, 2000)))
	first := s.conversion("in_1")
	stripeWantString(t, "first affiliate", first.GetString("affiliate"), fx.A.ID)
	stripeWantString(t, "first subscription_id", first.GetString("subscription_id"), "sub_1")
	stripeWantInt(t, "first payment_number", first.GetInt("payment_number"), 1)

	// The first invoice is the checkout's payment: a duplicate that completes the charge id.
	res := s.send(stripeEvent("evt_in_1", "invoice.paid", stripeInvoicePaid("in_1", "sub_1", "cus_sub", "ch_1", "subscription_create", 2000, nil)))
	stripeWantPrefix(t, "first invoice outcome", res.JSON["outcome"].(string), "duplicate of conversion "+first.Id)
	if n := len(s.stripeConversions("subscription_id = 'sub_1'")); n != 1 {
		t.Fatalf("%d conversions after the first invoice, want 1", n)
	}
	stripeWantString(t, "backfilled charge", s.conversion("in_1").GetString("stripe_charge"), "ch_1")

	// The renewal names no affiliate: the customer's first affiliate gets it.
	s.send(stripeEvent("evt_in_2", "invoice.paid", stripeInvoicePaid("in_2", "sub_1", "cus_sub", "ch_2", "subscription_cycle", 2000, nil)))
	second := s.conversion("in_2")
	stripeWantString(t, "renewal affiliate", second.GetString("affiliate"), fx.A.ID)
	stripeWantInt(t, "renewal payment_number", second.GetInt("payment_number"), 2)
	stripeWantString(t, "renewal subscription_id", second.GetString("subscription_id"), "sub_1")
	stripeWantString(t, "renewal customer", second.GetString("customer"), "cus_sub")
	stripeWantString(t, "renewal charge", second.GetString("stripe_charge"), "ch_2")
	stripeWantString(t, "renewal payment intent", second.GetString("stripe_payment_intent"), "pi_in_2")
	if path := second.GetString("metadata"); !strings.Contains(path, `"path":"customer"`) {
		t.Errorf("renewal metadata = %s, want attribution path customer", path)
	}
}

func TestStripeInvoicePaidBeforeCheckout(t *testing.T) {
	s := newStripe(t)
	meta := map[string]string{"pba_affiliate": s.affiliateCode(fx.B.ID)}
	s.send(stripeEvent("evt_in_first", "invoice.paid", stripeInvoicePaid("in_9", "sub_9", "cus_9", "ch_9", "subscription_create", 3000, meta)))
	c := s.conversion("in_9")
	stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.B.ID)

	res := s.send(stripeEvent("evt_cs_late", "checkout.session.completed",
		stripeCheckoutSubscription("cs_9", "in_9", "sub_9", "cus_9", "", 3000)))
	stripeWantPrefix(t, "checkout outcome", res.JSON["outcome"].(string), "duplicate of conversion "+c.Id)
	if n := len(s.stripeConversions("subscription_id = 'sub_9'")); n != 1 {
		t.Fatalf("%d conversions for one first invoice, want 1", n)
	}
}

func TestStripeInvoicePaidNothingPaid(t *testing.T) {
	s := newStripe(t)
	s.send(stripeEvent("evt_in_zero", "invoice.paid", stripeInvoicePaid("in_0", "sub_0", "cus_0", "", "subscription_create", 0, nil)))
	stripeWantString(t, "outcome", s.outcome("evt_in_zero"), "ignored: nothing paid")
}

func TestStripePaymentIntentSucceeded(t *testing.T) {
	s := newStripe(t)
	pi := func(id string, meta map[string]string) map[string]any {
		return map[string]any{"id": id, "object": "payment_intent", "status": "succeeded", "amount": 7000,
			"amount_received": 7000, "currency": "usd", "customer": "cus_" + id, "latest_charge": "ch_" + id, "metadata": meta}
	}

	s.send(stripeEvent("evt_pi_1", "payment_intent.succeeded", pi("pi_m1", map[string]string{"pba_click": fx.RowsB.Click})))
	c := s.conversion("pi_m1")
	stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.B.ID)
	stripeWantString(t, "click", c.GetString("click"), fx.RowsB.Click)
	stripeWantString(t, "payment intent", c.GetString("stripe_payment_intent"), "pi_m1")
	stripeWantString(t, "charge", c.GetString("stripe_charge"), "ch_pi_m1")
	stripeWantInt(t, "amount", c.GetInt("amount"), 7000)

	s.send(stripeEvent("evt_pi_2", "payment_intent.succeeded", pi("pi_m2", nil)))
	stripeWantString(t, "untagged outcome", s.outcome("evt_pi_2"), "ignored: payment intent without pba metadata")

	withInvoice := pi("pi_m3", map[string]string{"pba_click": fx.RowsB.Click})
	withInvoice["invoice"] = "in_m3"
	s.send(stripeEvent("evt_pi_3", "payment_intent.succeeded", withInvoice))
	stripeWantString(t, "invoice outcome", s.outcome("evt_pi_3"), "ignored: invoice payment (recorded by invoice.paid)")
	if n := len(s.stripeConversions("")); n != 1 {
		t.Errorf("%d stripe conversions, want 1", n)
	}
}

func TestStripeRefundAfterSale(t *testing.T) {
	s := newStripe(t)
	s.send(stripeEvent("evt_sale", "checkout.session.completed", stripeCheckoutPayment("cs_r", "pi_r", fx.RowsA.Click, 5000)))

	s.send(stripeEvent("evt_ref_1", "charge.refunded", stripeChargeRefunded("ch_r", "pi_r", "", 5000, 2000)))
	c := s.conversion("pi_r")
	stripeWantString(t, "status after partial refund", c.GetString("status"), collections.ConversionApproved)
	stripeWantInt(t, "refunded_amount after partial refund", c.GetInt("refunded_amount"), 2000)

	s.send(stripeEvent("evt_ref_2", "charge.refunded", stripeChargeRefunded("ch_r", "pi_r", "", 5000, 5000)))
	c = s.conversion("pi_r")
	stripeWantString(t, "status after full refund", c.GetString("status"), collections.ConversionRefunded)
	stripeWantInt(t, "refunded_amount after full refund", c.GetInt("refunded_amount"), 5000)
	stripeWantPrefix(t, "outcome", s.outcome("evt_ref_2"), "refunded 5000 of conversion "+c.Id)
}

func TestStripeRefundBeforeSale(t *testing.T) {
	s := newStripe(t)

	t.Run("full", func(t *testing.T) {
		s.send(stripeEvent("evt_early_ref", "charge.refunded", stripeChargeRefunded("ch_e", "pi_e", "", 3000, 3000)))
		stripeWantPrefix(t, "outcome", s.outcome("evt_early_ref"), "pending: refund")
		if n := s.count(collections.StripePending); n != 1 {
			t.Fatalf("%d pending adjustments, want 1", n)
		}
		s.send(stripeEvent("evt_late_sale", "checkout.session.completed", stripeCheckoutPayment("cs_e", "pi_e", fx.RowsA.Click, 3000)))
		c := s.conversion("pi_e")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionRefunded)
		stripeWantInt(t, "refunded_amount", c.GetInt("refunded_amount"), 3000)
		if n := s.count(collections.StripePending); n != 0 {
			t.Errorf("%d pending adjustments left, want 0", n)
		}
	})

	t.Run("partial", func(t *testing.T) {
		s.send(stripeEvent("evt_early_part", "charge.refunded", stripeChargeRefunded("ch_p", "pi_p", "", 3000, 1000)))
		s.send(stripeEvent("evt_late_part", "checkout.session.completed", stripeCheckoutPayment("cs_p", "pi_p", fx.RowsA.Click, 3000)))
		c := s.conversion("pi_p")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionApproved)
		stripeWantInt(t, "refunded_amount", c.GetInt("refunded_amount"), 1000)
	})

	t.Run("subscription invoice", func(t *testing.T) {
		s.send(stripeEvent("evt_early_inv", "charge.refunded", stripeChargeRefunded("ch_i", "pi_i", "in_i", 2000, 2000)))
		s.send(stripeEvent("evt_late_inv", "checkout.session.completed",
			stripeCheckoutSubscription("cs_i", "in_i", "sub_i", "cus_i", fx.RowsA.Click, 2000)))
		c := s.conversion("in_i")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionRefunded)
		stripeWantInt(t, "refunded_amount", c.GetInt("refunded_amount"), 2000)
	})
}

func TestStripeDispute(t *testing.T) {
	s := newStripe(t)

	t.Run("after the sale", func(t *testing.T) {
		s.send(stripeEvent("evt_d1_sale", "checkout.session.completed", stripeCheckoutPayment("cs_d1", "pi_d1", fx.RowsA.Click, 4000)))
		s.send(stripeEvent("evt_d1", "charge.dispute.created", stripeDispute("dp_1", "ch_d1", "pi_d1")))
		c := s.conversion("pi_d1")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionPending)
		stripeWantString(t, "reason", c.GetString("reason"), collections.ReasonDispute)
	})

	t.Run("before the sale", func(t *testing.T) {
		s.send(stripeEvent("evt_d2", "charge.dispute.created", stripeDispute("dp_2", "ch_d2", "pi_d2")))
		stripeWantString(t, "outcome", s.outcome("evt_d2"), "pending: dispute for an unrecorded sale")
		s.send(stripeEvent("evt_d2_sale", "checkout.session.completed", stripeCheckoutPayment("cs_d2", "pi_d2", fx.RowsA.Click, 4000)))
		c := s.conversion("pi_d2")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionPending)
		stripeWantString(t, "reason", c.GetString("reason"), collections.ReasonDispute)
	})

	t.Run("subscription sale found through the invoice's charge", func(t *testing.T) {
		s.send(stripeEvent("evt_d3_cs", "checkout.session.completed",
			stripeCheckoutSubscription("cs_d3", "in_d3", "sub_d3", "cus_d3", fx.RowsA.Click, 2000)))
		// The dispute names only the charge, which the checkout session did not know yet.
		s.send(stripeEvent("evt_d3", "charge.dispute.created", stripeDispute("dp_3", "ch_d3", "")))
		stripeWantString(t, "status before the invoice", s.conversion("in_d3").GetString("status"), collections.ConversionApproved)
		s.send(stripeEvent("evt_d3_in", "invoice.paid", stripeInvoicePaid("in_d3", "sub_d3", "cus_d3", "ch_d3", "subscription_create", 2000, nil)))
		c := s.conversion("in_d3")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionPending)
		stripeWantString(t, "reason", c.GetString("reason"), collections.ReasonDispute)
		if n := s.count(collections.StripePending); n != 0 {
			t.Errorf("%d pending adjustments left, want 0", n)
		}
	})
}

func TestStripeAccountUpdated(t *testing.T) {
	s := newStripe(t)
	s.update(collections.Affiliates, fx.A.ID, map[string]any{collections.AffiliateStripeAccountID: "acct_A"})
	account := func(id string, enabled bool) map[string]any {
		return map[string]any{"id": id, "object": "account", "type": "express", "payouts_enabled": enabled, "charges_enabled": enabled}
	}

	s.send(stripeEvent("evt_acct_1", "account.updated", account("acct_A", true)))
	a, err := s.app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Fatalf("payouts_enabled = false after account.updated, want true")
	}
	b, err := s.app.FindRecordById(collections.Affiliates, fx.B.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Errorf("B's payouts_enabled changed by A's account")
	}

	s.send(stripeEvent("evt_acct_2", "account.updated", account("acct_A", false)))
	if a, _ = s.app.FindRecordById(collections.Affiliates, fx.A.ID); a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Errorf("payouts_enabled = true after the account was restricted, want false")
	}

	s.send(stripeEvent("evt_acct_3", "account.updated", account("acct_unknown", true)))
	stripeWantString(t, "outcome", s.outcome("evt_acct_3"), "ignored: unknown account")
}

func TestStripeSignatureRejected(t *testing.T) {
	s := newStripe(t)
	body := stripeEvent("evt_sig", "checkout.session.completed", stripeCheckoutPayment("cs_sig", "pi_sig", fx.RowsA.Click, 1000))
	sign := func(secret string, at time.Time) string {
		return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
	}
	tampered := []byte(strings.Replace(string(body), `"amount_total":1000`, `"amount_total":999999`, 1))
	if string(tampered) == string(body) {
		t.Fatal("tampering did not change the body")
	}

	for _, tc := range []struct {
		name      string
		body      []byte
		signature string
	}{
		{"tampered body", tampered, sign(stripeTestSecret, time.Now())},
		{"wrong secret", body, sign("whsec_other", time.Now())},
		{"expired timestamp", body, sign(stripeTestSecret, time.Now().Add(-10*time.Minute))},
		{"no signature", body, ""},
		{"garbage signature", body, "t=123,v1=zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.postRaw(tc.body, tc.signature)
			if res.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.Code, res.Body)
			}
			if !strings.Contains(res.Body.String(), "signature") {
				t.Errorf("body %s does not mention the signature", res.Body)
			}
		})
	}
	if n := len(s.stripeConversions("")); n != 0 {
		t.Errorf("%d stripe conversions after rejected deliveries, want 0", n)
	}
	if n := s.count(collections.StripeEvents); n != 0 {
		t.Errorf("%d stripe events after rejected deliveries, want 0", n)
	}
}

func TestStripeDuplicateEvent(t *testing.T) {
	s := newStripe(t)
	body := stripeEvent("evt_dup", "checkout.session.completed", stripeCheckoutPayment("cs_dup", "pi_dup", fx.RowsA.Click, 1200))

	first := s.send(body)
	if first.JSON["duplicate"] == true {
		t.Fatalf("first delivery answered duplicate: %s", first.Body)
	}
	second := s.send(body)
	if second.JSON["duplicate"] != true {
		t.Fatalf("second delivery: %s, want duplicate", second.Body)
	}
	if n := len(s.stripeConversions("")); n != 1 {
		t.Errorf("%d stripe conversions, want 1", n)
	}
	if n := s.count(collections.StripeEvents); n != 1 {
		t.Errorf("%d stripe events, want 1", n)
	}
}

func TestStripeUnknownEventIgnored(t *testing.T) {
	s := newStripe(t)
	res := s.send(stripeEvent("evt_unknown", "customer.created", map[string]any{"id": "cus_x", "object": "customer"}))
	stripeWantString(t, "response outcome", res.JSON["outcome"].(string), "ignored: customer.created")
	stripeWantString(t, "stored outcome", s.outcome("evt_unknown"), "ignored: customer.created")
}

func TestStripeMissingSecret(t *testing.T) {
	s := newStripeEnv(t, hooks.Config{IPSalt: "s"})
	body := stripeEvent("evt_nosecret", "checkout.session.completed", stripeCheckoutPayment("cs_ns", "pi_ns", fx.RowsA.Click, 1000))
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	res := s.postRaw(signed.Payload, signed.Header)
	if res.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", res.Code, res.Body)
	}
	if !strings.Contains(res.Body.String(), "STRIPE_WEBHOOK_SECRET") {
		t.Errorf("body %s does not name STRIPE_WEBHOOK_SECRET", res.Body)
	}
	if n := s.count(collections.StripeEvents); n != 0 {
		t.Errorf("%d stripe events, want 0", n)
	}
}

// A failure after the sale was written rolls everything back, so Stripe's retry records it.
func TestStripeFailureRollsBackForRetry(t *testing.T) {
	s := newStripe(t)
	var fail atomic.Bool
	fail.Store(true)
	s.app.OnRecordCreate(collections.StripeEvents).BindFunc(func(e *core.RecordEvent) error {
		if fail.Load() {
			return errors.New("disk full")
		}
		return e.Next()
	})
	body := stripeEvent("evt_crash", "checkout.session.completed", stripeCheckoutPayment("cs_crash", "pi_crash", fx.RowsA.Click, 1000))
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	if res := s.postRaw(signed.Payload, signed.Header); res.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", res.Code, res.Body)
	}
	if n := len(s.stripeConversions("")); n != 0 {
		t.Fatalf("%d stripe conversions after a failed delivery, want 0", n)
	}
	if n := s.count(collections.StripeEvents); n != 0 {
		t.Fatalf("%d stripe events after a failed delivery, want 0", n)
	}

	fail.Store(false)
	res := s.send(body)
	stripeWantPrefix(t, "retry outcome", res.JSON["outcome"].(string), "recorded conversion")
	if n := len(s.stripeConversions("")); n != 1 {
		t.Errorf("%d stripe conversions after the retry, want 1", n)
	}
}

// newStripeWithAPI is newStripe with STRIPE_SECRET_KEY set and the Stripe API at a fake.
func newStripeWithAPI(t *testing.T) (*stripeEnv, *hooks.FakeStripe) {
	t.Helper()
	fake := hooks.NewFakeStripe(t)
	s := newStripeEnv(t, hooks.Config{StripeSecretKey: hooks.FakeStripeKey, StripeAPIBase: fake.URL,
		StripeWebhookSecret: stripeTestSecret, IPSalt: "s", WebhookAllowPrivateNetworks: true})
	return s, fake
}

func (s *stripeEnv) save(collection string, data map[string]any) *core.Record {
	s.t.Helper()
	col, err := s.app.FindCollectionByNameOrId(collection)
	if err != nil {
		s.t.Fatal(err)
	}
	r := core.NewRecord(col)
	r.Load(data)
	if err := s.app.Save(r); err != nil {
		s.t.Fatalf("save %s: %v", collection, err)
	}
	return r
}

// sign signs body with the configured secret now and posts it, whatever the answer.
func (s *stripeEnv) sign(body []byte) *pbatest.Response {
	s.t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	return s.postRaw(signed.Payload, signed.Header)
}

// stripeDiscount is a discount as webhook payloads carry it: the promotion code as a bare id.
func stripeDiscount(id, promotionCode string) map[string]any {
	return map[string]any{"id": id, "object": "discount", "promotion_code": promotionCode,
		"coupon": map[string]any{"id": "co_" + id, "object": "coupon", "percent_off": 10, "valid": true}}
}

// stripePromoInvoice is a paid invoice of a new customer, with no pba metadata, discounted by
// promotionCode (invoice.discount plus, as in API version 2023-10-16, discounts as bare ids).
func stripePromoInvoice(invoice, promotionCode string) map[string]any {
	obj := stripeInvoicePaid(invoice, "sub_"+invoice, "cus_"+invoice, "ch_"+invoice, "subscription_create", 1800, nil)
	obj["discount"] = stripeDiscount("di_"+invoice, promotionCode)
	obj["discounts"] = []string{"di_" + invoice}
	return obj
}

func TestStripePromotionCodeCreditsCoupon(t *testing.T) {
	s, fake := newStripeWithAPI(t)
	s.save(collections.Coupons, map[string]any{"code": "ada10", "affiliate": fx.A.ID, "program": fx.ProgramP, "active": true})
	fake.AddPromotionCode("promo_ada", "ADA10")

	body := stripeEvent("evt_promo_1", "invoice.paid", stripePromoInvoice("in_promo_1", "promo_ada"))
	res := s.send(body)
	stripeWantPrefix(t, "outcome", res.JSON["outcome"].(string), "recorded conversion")
	c := s.conversion("in_promo_1")
	stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.A.ID)
	stripeWantString(t, "click", c.GetString("click"), "")
	if meta := c.GetString("metadata"); !strings.Contains(meta, `"path":"coupon"`) {
		t.Errorf("metadata = %s, want attribution path coupon", meta)
	}
	stripeWantInt(t, "Stripe API calls", fake.Calls(), 1)

	// A redelivery is a duplicate before any lookup; a renewal with the same promotion code
	// uses the cached code.
	if res := s.send(body); res.JSON["duplicate"] != true {
		t.Errorf("redelivery: %s, want duplicate", res.Body)
	}
	s.send(stripeEvent("evt_promo_2", "invoice.paid", stripePromoInvoice("in_promo_2", "promo_ada")))
	stripeWantString(t, "second sale's affiliate", s.conversion("in_promo_2").GetString("affiliate"), fx.A.ID)
	stripeWantInt(t, "Stripe API calls after a redelivery and a second sale", fake.Calls(), 1)
}

func TestStripePromotionCodeOnCheckoutAndAmongSeveral(t *testing.T) {
	s, fake := newStripeWithAPI(t)
	s.save(collections.Coupons, map[string]any{"code": "bob20", "affiliate": fx.B.ID, "program": fx.ProgramP, "active": true})
	fake.AddPromotionCode("promo_summer", "SUMMER")
	fake.AddPromotionCode("promo_bob", "Bob20")

	t.Run("expanded checkout session", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_promo", "pi_promo", "", 2000)
		obj["total_details"] = map[string]any{"amount_discount": 200, "breakdown": map[string]any{
			"discounts": []any{map[string]any{"amount": 200, "discount": stripeDiscount("di_cs", "promo_bob")}}}}
		s.send(stripeEvent("evt_promo_cs", "checkout.session.completed", obj))
		stripeWantString(t, "affiliate", s.conversion("pi_promo").GetString("affiliate"), fx.B.ID)
	})

	t.Run("checkout session as Stripe sends it: retrieved with its discounts", func(t *testing.T) {
		fake.AddCheckoutSession("cs_promo_live", "promo_bob")
		obj := stripeCheckoutPayment("cs_promo_live", "pi_promo_live", "", 1800)
		obj["total_details"] = map[string]any{"amount_discount": 200, "amount_shipping": 0, "amount_tax": 0}
		before := fake.Calls()
		s.send(stripeEvent("evt_promo_cs_live", "checkout.session.completed", obj))
		stripeWantString(t, "affiliate", s.conversion("pi_promo_live").GetString("affiliate"), fx.B.ID)
		if n := fake.Calls() - before; n != 1 {
			t.Errorf("%d Stripe calls, want 1 (the session; promo_bob's code is cached)", n)
		}
	})

	t.Run("checkout session lookup failing: Stripe is asked to retry", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_promo_down", "pi_promo_down", "", 1800)
		obj["total_details"] = map[string]any{"amount_discount": 200}
		fake.SetFailing(true)
		res := s.sign(stripeEvent("evt_promo_cs_down", "checkout.session.completed", obj))
		fake.SetFailing(false)
		if res.Code != 500 {
			t.Fatalf("lookup down: %d %s, want 500 so Stripe retries", res.Code, res.Body)
		}
		fake.AddCheckoutSession("cs_promo_down", "promo_bob")
		s.send(stripeEvent("evt_promo_cs_down", "checkout.session.completed", obj))
		stripeWantString(t, "affiliate after the retry", s.conversion("pi_promo_down").GetString("affiliate"), fx.B.ID)
	})

	t.Run("the code that is a coupon wins over the merchant's own campaign", func(t *testing.T) {
		obj := stripeInvoicePaid("in_multi", "sub_multi", "cus_multi", "ch_multi", "subscription_create", 1800, nil)
		obj["discounts"] = []any{stripeDiscount("di_m1", "promo_summer"), stripeDiscount("di_m2", "promo_bob")}
		s.send(stripeEvent("evt_promo_multi", "invoice.paid", obj))
		stripeWantString(t, "affiliate", s.conversion("in_multi").GetString("affiliate"), fx.B.ID)
	})
}

func TestStripePromotionCodeWithoutCoupon(t *testing.T) {
	s, fake := newStripeWithAPI(t)
	fake.AddPromotionCode("promo_summer", "SUMMER")

	res := s.send(stripeEvent("evt_promo_none", "invoice.paid", stripePromoInvoice("in_promo_none", "promo_summer")))
	stripeWantString(t, "outcome", res.JSON["outcome"].(string), "ignored: no attribution")
	stripeWantString(t, "stored outcome", s.outcome("evt_promo_none"), "ignored: no attribution")
	if n := len(s.stripeConversions("")); n != 0 {
		t.Errorf("%d conversions, want 0", n)
	}

	// A promotion code Stripe does not know cannot appear later: acknowledged, with the reason.
	res = s.send(stripeEvent("evt_promo_missing", "invoice.paid", stripePromoInvoice("in_promo_missing", "promo_gone")))
	stripeWantPrefix(t, "outcome of an unknown promotion code", s.outcome("evt_promo_missing"),
		"ignored: no attribution; promotion code lookup failed: ")
	if out := s.outcome("evt_promo_missing"); !strings.Contains(out, "404 resource_missing") {
		t.Errorf("outcome %q does not say why", out)
	}
}

func TestStripePromotionCodeLookupFailure(t *testing.T) {
	s, fake := newStripeWithAPI(t)
	s.save(collections.Coupons, map[string]any{"code": "ada10", "affiliate": fx.A.ID, "program": fx.ProgramP, "active": true})
	fake.AddPromotionCode("promo_ada", "ADA10")
	fake.SetFailing(true)

	t.Run("no other attribution: 500 and nothing stored, the retry records it", func(t *testing.T) {
		body := stripeEvent("evt_promo_down", "invoice.paid", stripePromoInvoice("in_promo_down", "promo_ada"))
		if res := s.sign(body); res.Code != http.StatusInternalServerError {
			t.Fatalf("status %d, want 500: %s", res.Code, res.Body)
		}
		if n := len(s.stripeConversions("")); n != 0 {
			t.Fatalf("%d conversions after a failed lookup, want 0", n)
		}
		if n := s.count(collections.StripeEvents); n != 0 {
			t.Fatalf("%d stripe events after a failed lookup, want 0", n)
		}

		fake.SetFailing(false)
		defer fake.SetFailing(true)
		res := s.send(body)
		stripeWantPrefix(t, "retry outcome", res.JSON["outcome"].(string), "recorded conversion")
		stripeWantString(t, "affiliate", s.conversion("in_promo_down").GetString("affiliate"), fx.A.ID)
		stripeWantInt(t, "Stripe API calls", fake.Calls(), 2)
	})

	t.Run("another attribution: recorded, the failure noted", func(t *testing.T) {
		obj := stripeInvoicePaid("in_promo_click", "sub_pc", "cus_pc", "ch_pc", "subscription_create", 1800,
			map[string]string{"pba_click": fx.RowsB.Click})
		obj["discount"] = stripeDiscount("di_pc", "promo_other")
		res := s.send(stripeEvent("evt_promo_click_down", "invoice.paid", obj))
		stripeWantPrefix(t, "outcome", res.JSON["outcome"].(string), "recorded conversion")
		stripeWantString(t, "affiliate", s.conversion("in_promo_click").GetString("affiliate"), fx.B.ID)
		if out := s.outcome("evt_promo_click_down"); !strings.Contains(out, "; promotion code lookup failed: ") ||
			!strings.Contains(out, "500") {
			t.Errorf("outcome %q does not record the failed lookup", out)
		}
	})
}

func TestStripePromotionCodeLosesToClick(t *testing.T) {
	s, fake := newStripeWithAPI(t)
	s.save(collections.Coupons, map[string]any{"code": "bob20", "affiliate": fx.B.ID, "program": fx.ProgramP, "active": true})
	fake.AddPromotionCode("promo_bob", "BOB20")

	t.Run("click in metadata", func(t *testing.T) {
		obj := stripeInvoicePaid("in_click_promo", "sub_cp", "cus_cp", "ch_cp", "subscription_create", 1800,
			map[string]string{"pba_click": fx.RowsA.Click})
		obj["discount"] = stripeDiscount("di_cp", "promo_bob")
		s.send(stripeEvent("evt_click_promo", "invoice.paid", obj))
		c := s.conversion("in_click_promo")
		stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.A.ID)
		stripeWantString(t, "click", c.GetString("click"), fx.RowsA.Click)
		// The code is still looked up: it is the fallback when the click does not count.
		stripeWantInt(t, "Stripe API calls", fake.Calls(), 1)
	})

	t.Run("client_reference_id on an expanded session", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_click_promo", "pi_click_promo", fx.RowsA.Click, 2000)
		obj["total_details"] = map[string]any{"breakdown": map[string]any{
			"discounts": []any{map[string]any{"amount": 200, "discount": stripeDiscount("di_ccp", "promo_bob")}}}}
		s.send(stripeEvent("evt_cs_click_promo", "checkout.session.completed", obj))
		stripeWantString(t, "affiliate", s.conversion("pi_click_promo").GetString("affiliate"), fx.A.ID)
	})

	t.Run("pba_coupon metadata: no lookup", func(t *testing.T) {
		s.save(collections.Coupons, map[string]any{"code": "ada10", "affiliate": fx.A.ID, "program": fx.ProgramP, "active": true})
		before := fake.Calls()
		obj := stripePromoInvoice("in_meta_coupon", "promo_bob")
		obj["metadata"] = map[string]string{"pba_coupon": "ADA10"}
		s.send(stripeEvent("evt_meta_coupon", "invoice.paid", obj))
		stripeWantString(t, "affiliate", s.conversion("in_meta_coupon").GetString("affiliate"), fx.A.ID)
		stripeWantInt(t, "Stripe API calls", fake.Calls()-before, 0)
	})
}

func TestStripePromotionCodeWithoutSecretKey(t *testing.T) {
	fake := hooks.NewFakeStripe(t)
	fake.AddPromotionCode("promo_ada", "ADA10")
	s := newStripeEnv(t, hooks.Config{StripeAPIBase: fake.URL, StripeWebhookSecret: stripeTestSecret, IPSalt: "s"})
	s.save(collections.Coupons, map[string]any{"code": "ada10", "affiliate": fx.A.ID, "program": fx.ProgramP, "active": true})

	res := s.send(stripeEvent("evt_nokey_promo", "invoice.paid", stripePromoInvoice("in_nokey", "promo_ada")))
	stripeWantString(t, "outcome", res.JSON["outcome"].(string), "ignored: no attribution")

	obj := stripePromoInvoice("in_nokey_meta", "promo_ada")
	obj["metadata"] = map[string]string{"pba_coupon": "ada10"}
	s.send(stripeEvent("evt_nokey_meta", "invoice.paid", obj))
	stripeWantString(t, "pba_coupon still works", s.conversion("in_nokey_meta").GetString("affiliate"), fx.A.ID)
	stripeWantInt(t, "Stripe API calls", fake.Calls(), 0)
}

// stripeDisputeClosed is a charge.dispute.closed object with its final status (won, lost, warning_closed).
func stripeDisputeClosed(id, charge, paymentIntent, status string) map[string]any {
	obj := stripeDispute(id, charge, paymentIntent)
	obj["status"] = status
	return obj
}

// runEngine runs the commission engine once and checks the ledger after it.
func (s *stripeEnv) runEngine() {
	s.t.Helper()
	s.run()
	s.ledgerOK()
}

// newDisputeEnv is a Stripe env whose program has no hold, so a commission is payable on the
// engine run after its sale and a dispute's effect on it is visible at once.
func newDisputeEnv(t *testing.T) *stripeEnv {
	s := newStripe(t)
	s.update(collections.Programs, fx.ProgramP, map[string]any{"hold_days": 0})
	return s
}

// saleCommission is the sale commission of a conversion.
func (s *stripeEnv) saleCommission(conversion string) *core.Record {
	s.t.Helper()
	r, err := s.app.FindFirstRecordByFilter(collections.Commissions, "conversion = {:c} && kind = 'sale'", dbx.Params{"c": conversion})
	if err != nil {
		s.t.Fatalf("sale commission of %s: %v", conversion, err)
	}
	return r
}

// pay puts a payable commission into a paid manual payout of its own.
func (s *stripeEnv) pay(c *core.Record) {
	s.t.Helper()
	if c.GetString("status") != "payable" {
		s.t.Fatalf("paying a %s commission", c.GetString("status"))
	}
	p := s.save(collections.Payouts, map[string]any{"affiliate": c.GetString("affiliate"), "amount": c.GetInt("amount"),
		"currency": c.GetString("currency"), "method": "manual", "status": "paid", "paid_at": time.Now()})
	// As settleCommissions does: record saves cannot move commissions into payouts.
	_, err := s.app.DB().NewQuery("UPDATE commissions SET payout = {:p}, status = 'paid' WHERE id = {:id}").
		Bind(dbx.Params{"p": p.Id, "id": c.Id}).Execute()
	if err != nil {
		s.t.Fatal(err)
	}
}

// clawbacks is the sum of the clawbacks of a conversion and how many there are.
func (s *stripeEnv) clawbacks(conversion string) (int, int) {
	s.t.Helper()
	rows, err := s.app.FindAllRecords(collections.Commissions, dbx.HashExp{"conversion": conversion, "kind": "clawback"})
	if err != nil {
		s.t.Fatal(err)
	}
	sum := 0
	for _, r := range rows {
		sum += r.GetInt("amount")
	}
	return sum, len(rows)
}

func TestStripeDisputeWonReleasesTheHold(t *testing.T) {
	s := newDisputeEnv(t)
	s.send(stripeEvent("evt_w_sale", "checkout.session.completed", stripeCheckoutPayment("cs_w", "pi_w", fx.RowsA.Click, 5000)))
	s.runEngine()
	conv := s.conversion("pi_w")
	stripeWantString(t, "commission before the dispute", s.saleCommission(conv.Id).GetString("status"), "payable")

	// The dispute takes the released commission back to pending, and runs keep it there.
	s.send(stripeEvent("evt_w_open", "charge.dispute.created", stripeDispute("dp_w", "ch_w", "pi_w")))
	s.runEngine()
	stripeWantString(t, "conversion under dispute", s.conversion("pi_w").GetString("status"), collections.ConversionPending)
	stripeWantString(t, "commission under dispute", s.saleCommission(conv.Id).GetString("status"), "pending")

	s.send(stripeEvent("evt_w_won", "charge.dispute.closed", stripeDisputeClosed("dp_w", "ch_w", "pi_w", "won")))
	stripeWantPrefix(t, "outcome", s.outcome("evt_w_won"), "dispute won dp_w: conversion "+conv.Id+" dispute won: released (approved)")
	c := s.conversion("pi_w")
	stripeWantString(t, "status after won", c.GetString("status"), collections.ConversionApproved)
	stripeWantString(t, "reason after won", c.GetString("reason"), "")
	s.runEngine()
	comm := s.saleCommission(conv.Id)
	stripeWantString(t, "commission after won", comm.GetString("status"), "payable")
	stripeWantInt(t, "commission amount after won", comm.GetInt("amount"), 1000)

	// Replays change nothing: the same event is a duplicate, another delivery of the outcome
	// (new event id) and a late created event leave the sale approved.
	if res := s.send(stripeEvent("evt_w_won", "charge.dispute.closed", stripeDisputeClosed("dp_w", "ch_w", "pi_w", "won"))); res.JSON["duplicate"] != true {
		t.Errorf("replay: %v", res.JSON)
	}
	s.send(stripeEvent("evt_w_won_2", "charge.dispute.closed", stripeDisputeClosed("dp_w", "ch_w", "pi_w", "won")))
	s.send(stripeEvent("evt_w_open_late", "charge.dispute.created", stripeDispute("dp_w", "ch_w", "pi_w")))
	s.runEngine()
	stripeWantString(t, "status after replays", s.conversion("pi_w").GetString("status"), collections.ConversionApproved)
	stripeWantString(t, "commission after replays", s.saleCommission(conv.Id).GetString("status"), "payable")
}

func TestStripeDisputeLostIsAFullRefund(t *testing.T) {
	s := newDisputeEnv(t)
	gaps := statsCommissionGaps(t, s.app)
	defer func() { statsConsistent(t, s.app, gaps, "after lost disputes") }()

	t.Run("unpaid commission is voided", func(t *testing.T) {
		s.send(stripeEvent("evt_lu_sale", "checkout.session.completed", stripeCheckoutPayment("cs_lu", "pi_lu", fx.RowsA.Click, 5000)))
		s.runEngine()
		s.send(stripeEvent("evt_lu_open", "charge.dispute.created", stripeDispute("dp_lu", "ch_lu", "pi_lu")))
		s.send(stripeEvent("evt_lu_lost", "charge.dispute.closed", stripeDisputeClosed("dp_lu", "ch_lu", "pi_lu", "lost")))
		c := s.conversion("pi_lu")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionRefunded)
		stripeWantInt(t, "refunded_amount", c.GetInt("refunded_amount"), 5000)
		s.runEngine()
		s.runEngine()
		stripeWantString(t, "commission", s.saleCommission(c.Id).GetString("status"), "void")
		if sum, n := s.clawbacks(c.Id); n != 0 {
			t.Errorf("%d clawbacks (%d) of an unpaid commission", n, sum)
		}
	})

	t.Run("paid commission is clawed back once", func(t *testing.T) {
		s.send(stripeEvent("evt_lp_sale", "checkout.session.completed", stripeCheckoutPayment("cs_lp", "pi_lp", fx.RowsA.Click, 5000)))
		s.runEngine()
		conv := s.conversion("pi_lp")
		s.pay(s.saleCommission(conv.Id))
		s.send(stripeEvent("evt_lp_open", "charge.dispute.created", stripeDispute("dp_lp", "ch_lp", "pi_lp")))
		s.send(stripeEvent("evt_lp_lost", "charge.dispute.closed", stripeDisputeClosed("dp_lp", "ch_lp", "pi_lp", "lost")))
		s.send(stripeEvent("evt_lp_lost_2", "charge.dispute.closed", stripeDisputeClosed("dp_lp", "ch_lp", "pi_lp", "lost")))
		s.runEngine()
		// A refund event Stripe sends on top changes nothing more.
		s.send(stripeEvent("evt_lp_ref", "charge.refunded", stripeChargeRefunded("ch_lp", "pi_lp", "", 5000, 5000)))
		s.runEngine()
		stripeWantString(t, "commission", s.saleCommission(conv.Id).GetString("status"), "paid")
		if sum, n := s.clawbacks(conv.Id); n != 1 || sum != -1000 {
			t.Errorf("clawbacks: %d totalling %d, want 1 of -1000", n, sum)
		}
	})
}

func TestStripeDisputeEventsOutOfOrder(t *testing.T) {
	s := newDisputeEnv(t)

	t.Run("closed won before created", func(t *testing.T) {
		s.send(stripeEvent("evt_o1_sale", "checkout.session.completed", stripeCheckoutPayment("cs_o1", "pi_o1", fx.RowsA.Click, 4000)))
		s.send(stripeEvent("evt_o1_won", "charge.dispute.closed", stripeDisputeClosed("dp_o1", "ch_o1", "pi_o1", "won")))
		s.send(stripeEvent("evt_o1_open", "charge.dispute.created", stripeDispute("dp_o1", "ch_o1", "pi_o1")))
		stripeWantString(t, "status", s.conversion("pi_o1").GetString("status"), collections.ConversionApproved)
		s.runEngine()
		stripeWantString(t, "commission", s.saleCommission(s.conversion("pi_o1").Id).GetString("status"), "payable")
	})

	t.Run("closed lost before created", func(t *testing.T) {
		s.send(stripeEvent("evt_o2_sale", "checkout.session.completed", stripeCheckoutPayment("cs_o2", "pi_o2", fx.RowsA.Click, 4000)))
		s.send(stripeEvent("evt_o2_lost", "charge.dispute.closed", stripeDisputeClosed("dp_o2", "ch_o2", "pi_o2", "lost")))
		s.send(stripeEvent("evt_o2_open", "charge.dispute.created", stripeDispute("dp_o2", "ch_o2", "pi_o2")))
		c := s.conversion("pi_o2")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionRefunded)
		s.runEngine()
		if _, err := s.app.FindFirstRecordByFilter(collections.Commissions, "conversion = {:c} && status != 'void'", dbx.Params{"c": c.Id}); err == nil {
			t.Error("a sale lost to a dispute kept a commission")
		}
	})

	t.Run("both before the sale, won", func(t *testing.T) {
		s.send(stripeEvent("evt_o3_won", "charge.dispute.closed", stripeDisputeClosed("dp_o3", "ch_o3", "pi_o3", "won")))
		stripeWantString(t, "outcome", s.outcome("evt_o3_won"), "pending: dispute won for an unrecorded sale")
		s.send(stripeEvent("evt_o3_open", "charge.dispute.created", stripeDispute("dp_o3", "ch_o3", "pi_o3")))
		s.send(stripeEvent("evt_o3_sale", "checkout.session.completed", stripeCheckoutPayment("cs_o3", "pi_o3", fx.RowsA.Click, 4000)))
		stripeWantString(t, "status", s.conversion("pi_o3").GetString("status"), collections.ConversionApproved)
	})

	t.Run("created then lost before the sale", func(t *testing.T) {
		s.send(stripeEvent("evt_o4_open", "charge.dispute.created", stripeDispute("dp_o4", "ch_o4", "pi_o4")))
		s.send(stripeEvent("evt_o4_lost", "charge.dispute.closed", stripeDisputeClosed("dp_o4", "ch_o4", "pi_o4", "lost")))
		s.send(stripeEvent("evt_o4_sale", "checkout.session.completed", stripeCheckoutPayment("cs_o4", "pi_o4", fx.RowsA.Click, 4000)))
		c := s.conversion("pi_o4")
		stripeWantString(t, "status", c.GetString("status"), collections.ConversionRefunded)
		stripeWantInt(t, "refunded_amount", c.GetInt("refunded_amount"), 4000)
		s.runEngine()
	})

	t.Run("closed event naming only the charge", func(t *testing.T) {
		s.send(stripeEvent("evt_o6_sale", "checkout.session.completed", stripeCheckoutPayment("cs_o6", "pi_o6", fx.RowsA.Click, 4000)))
		s.send(stripeEvent("evt_o6_open", "charge.dispute.created", stripeDispute("dp_o6", "ch_o6", "pi_o6")))
		s.send(stripeEvent("evt_o6_won", "charge.dispute.closed", stripeDisputeClosed("dp_o6", "ch_o6", "", "won")))
		stripeWantString(t, "released", s.conversion("pi_o6").GetString("status"), collections.ConversionApproved)
	})

	t.Run("created before the sale, won after it", func(t *testing.T) {
		s.send(stripeEvent("evt_o5_open", "charge.dispute.created", stripeDispute("dp_o5", "ch_o5", "pi_o5")))
		s.send(stripeEvent("evt_o5_sale", "checkout.session.completed", stripeCheckoutPayment("cs_o5", "pi_o5", fx.RowsA.Click, 4000)))
		stripeWantString(t, "held", s.conversion("pi_o5").GetString("status"), collections.ConversionPending)
		s.runEngine()
		s.send(stripeEvent("evt_o5_won", "charge.dispute.closed", stripeDisputeClosed("dp_o5", "ch_o5", "pi_o5", "won")))
		stripeWantString(t, "released", s.conversion("pi_o5").GetString("status"), collections.ConversionApproved)
		s.runEngine()
		stripeWantString(t, "commission", s.saleCommission(s.conversion("pi_o5").Id).GetString("status"), "payable")
	})
}

// TestStripeDisputeRejectedSaleStaysRejected: a self-referral is rejected and earns nothing; a
// dispute won on it must not approve it.
func TestStripeDisputeRejectedSaleStaysRejected(t *testing.T) {
	s := newStripe(t)
	s.send(stripeEvent("evt_rj_sale", "checkout.session.completed", stripeCheckoutPayment("cs_rj", "pi_rj", fx.RowsA.Click, 4000)))
	s.update(collections.Conversions, s.conversion("pi_rj").Id, map[string]any{"status": "rejected", "reason": "self_referral"})
	s.send(stripeEvent("evt_rj_open", "charge.dispute.created", stripeDispute("dp_rj", "ch_rj", "pi_rj")))
	s.send(stripeEvent("evt_rj_won", "charge.dispute.closed", stripeDisputeClosed("dp_rj", "ch_rj", "pi_rj", "won")))
	stripeWantString(t, "status", s.conversion("pi_rj").GetString("status"), collections.ConversionRejected)
}

// Events of connected accounts come signed with the Connect endpoint's secret: accepted when
// STRIPE_CONNECT_WEBHOOK_SECRET is set, while any other secret is still a 400.
func TestStripeConnectEndpointSecret(t *testing.T) {
	const connectSecret = "whsec_connect_test"
	s := newStripeEnv(t, hooks.Config{IPSalt: "s", StripeWebhookSecret: stripeTestSecret, StripeConnectWebhookSecret: connectSecret})
	s.update(collections.Affiliates, fx.A.ID, map[string]any{collections.AffiliateStripeAccountID: "acct_A"})
	post := func(id, secret string) *pbatest.Response {
		body := stripeEvent(id, "account.updated", map[string]any{"id": "acct_A", "object": "account", "type": "express", "payouts_enabled": true})
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: time.Now()})
		return s.postRaw(signed.Payload, signed.Header)
	}
	if res := post("evt_connect_bad", "whsec_someone_else"); res.Code != http.StatusBadRequest {
		t.Fatalf("foreign secret: %d %s", res.Code, res.Body)
	}
	if a, _ := s.app.FindRecordById(collections.Affiliates, fx.A.ID); a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Fatal("a refused event changed the affiliate")
	}
	if res := post("evt_connect_ok", connectSecret); res.Code != http.StatusOK {
		t.Fatalf("connect secret: %d %s", res.Code, res.Body)
	}
	if a, _ := s.app.FindRecordById(collections.Affiliates, fx.A.ID); !a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Fatal("payouts_enabled not set by the Connect event")
	}
}
