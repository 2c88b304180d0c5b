package hooks_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Free trials and other starts without a payment: the $0 Checkout Session or invoice records no
// sale but keeps its attribution for the subscription (or customer), and the first paid invoice
// is the sale the program pays for.

// stripeTrialSession is a subscription Checkout Session that starts a free trial: nothing is
// charged, only client_reference_id names the click.
func stripeTrialSession(session, invoice, subscription, customer, click string) map[string]any {
	obj := stripeCheckoutSubscription(session, invoice, subscription, customer, click, 0)
	obj["payment_status"] = "no_payment_required"
	obj["amount_subtotal"] = 0
	obj["total_details"] = map[string]any{"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
	return obj
}

// stripeEventAt is stripeEvent created at `at` instead of now.
func stripeEventAt(id, typ string, object map[string]any, at time.Time) []byte {
	var event map[string]any
	if err := json.Unmarshal(stripeEvent(id, typ, object), &event); err != nil {
		panic(err)
	}
	event["created"] = at.Unix()
	b, err := json.Marshal(event)
	if err != nil {
		panic(err)
	}
	return b
}

// sendTwice sends an event and its redelivery, which must be a duplicate; it returns the
// first answer's outcome.
func (s *stripeEnv) sendTwice(body []byte) string {
	s.t.Helper()
	outcome, _ := s.send(body).JSON["outcome"].(string)
	if res := s.send(body); res.JSON["duplicate"] != true {
		s.t.Errorf("redelivery: %s, want duplicate", res.Body)
	}
	return outcome
}

// stripeAttribution is the stored attribution of a subscription.
func (s *stripeEnv) stripeAttribution(subscription string) map[string]string {
	s.t.Helper()
	rows, err := s.app.FindRecordsByFilter(collections.StripeAttributions, "subscription = {:s}", "", 0, 0,
		dbx.Params{"s": subscription})
	if err != nil {
		s.t.Fatal(err)
	}
	if len(rows) != 1 {
		s.t.Fatalf("%d attributions of subscription %s, want 1", len(rows), subscription)
	}
	r := rows[0]
	return map[string]string{"customer": r.GetString("customer"), "click": r.GetString("click"),
		"coupon": r.GetString("coupon"), "affiliate_code": r.GetString("affiliate_code")}
}

// saleCommissions are the sale and recurring commissions of a conversion.
func (s *stripeEnv) saleCommissions(conversion string) []map[string]any {
	s.t.Helper()
	rows, err := s.app.FindRecordsByFilter(collections.Commissions,
		"conversion = {:c} && (kind = 'sale' || kind = 'recurring')", "", 0, 0, dbx.Params{"c": conversion})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range rows {
		out = append(out, map[string]any{"kind": r.GetString("kind"), "amount": r.GetInt("amount"),
			"affiliate": r.GetString("affiliate")})
	}
	return out
}

func TestStripeTrialThroughCheckout(t *testing.T) {
	s := newStripe(t)
	// recurring: first (the default) pays the first payment only.
	s.update(collections.Programs, fx.ProgramP, map[string]any{collections.ProgramRecurring: collections.RecurringFirst})

	out := s.sendTwice(stripeEvent("evt_trial_cs", "checkout.session.completed",
		stripeTrialSession("cs_trial", "in_trial_0", "sub_trial", "cus_trial", fx.RowsA.Click)))
	stripeWantString(t, "session outcome", out, "ignored: zero amount; attribution kept for subscription sub_trial")
	if n := len(s.stripeConversions("")); n != 0 {
		t.Fatalf("%d conversions after the $0 session, want 0", n)
	}
	kept := s.stripeAttribution("sub_trial")
	stripeWantString(t, "kept click", kept["click"], fx.RowsA.Click)
	stripeWantString(t, "kept customer", kept["customer"], "cus_trial")

	// The trial's $0 invoice is no payment: it records nothing and is not payment 1.
	out = s.sendTwice(stripeEvent("evt_trial_in0", "invoice.paid",
		stripeInvoicePaid("in_trial_0", "sub_trial", "cus_trial", "", "subscription_create", 0, nil)))
	stripeWantPrefix(t, "trial invoice outcome", out, "ignored: nothing paid")
	if n := len(s.stripeConversions("")); n != 0 {
		t.Fatalf("%d conversions after the $0 invoice, want 0", n)
	}

	// The first paid invoice, after the trial, names nobody: the kept attribution credits it.
	out = s.sendTwice(stripeEvent("evt_trial_in1", "invoice.paid",
		stripeInvoicePaid("in_trial_1", "sub_trial", "cus_trial", "ch_trial_1", "subscription_cycle", 2000, nil)))
	stripeWantPrefix(t, "first paid invoice outcome", out, "recorded conversion")
	first := s.conversion("in_trial_1")
	stripeWantString(t, "affiliate", first.GetString("affiliate"), fx.A.ID)
	stripeWantString(t, "click", first.GetString("click"), fx.RowsA.Click)
	stripeWantString(t, "link", first.GetString("link"), fx.RowsA.Link)
	stripeWantString(t, "subscription_id", first.GetString("subscription_id"), "sub_trial")
	stripeWantInt(t, "payment_number", first.GetInt("payment_number"), 1)
	stripeWantInt(t, "amount", first.GetInt("amount"), 2000)

	s.run()
	sale := s.saleCommissions(first.Id)
	if len(sale) != 1 || sale[0]["kind"] != "sale" || sale[0]["affiliate"] != fx.A.ID || sale[0]["amount"].(int) <= 0 {
		t.Fatalf("commissions of the first paid invoice = %v, want one positive sale commission of A", sale)
	}

	// The renewal is payment 2 of the subscription, which recurring: first does not pay.
	s.sendTwice(stripeEvent("evt_trial_in2", "invoice.paid",
		stripeInvoicePaid("in_trial_2", "sub_trial", "cus_trial", "ch_trial_2", "subscription_cycle", 2000, nil)))
	second := s.conversion("in_trial_2")
	stripeWantString(t, "renewal affiliate", second.GetString("affiliate"), fx.A.ID)
	stripeWantInt(t, "renewal payment_number", second.GetInt("payment_number"), 2)
	s.run()
	if c := s.saleCommissions(second.Id); len(c) != 0 {
		t.Errorf("commissions of the renewal = %v, want none (recurring: first)", c)
	}
	if n := len(s.stripeConversions("subscription_id = 'sub_trial'")); n != 2 {
		t.Errorf("%d conversions of the subscription, want 2", n)
	}
	if n := s.count(collections.StripeAttributions); n != 1 {
		t.Errorf("%d stored attributions, want 1", n)
	}
	s.ledgerOK()
}

func TestStripeTrialPromotionCode(t *testing.T) {
	s, fake := newStripeWithAPI(t)
	s.save(collections.Coupons, map[string]any{"code": "bob20", "affiliate": fx.B.ID, "program": fx.ProgramP, "active": true})
	fake.AddPromotionCode("promo_bob", "BOB20")
	// A trial session's payload lists no discounts and its amount_discount is 0: the session is
	// retrieved with them.
	fake.AddCheckoutSession("cs_trial_promo", "promo_bob")

	out := s.sendTwice(stripeEvent("evt_tp_cs", "checkout.session.completed",
		stripeTrialSession("cs_trial_promo", "in_tp_0", "sub_tp", "cus_tp", "")))
	stripeWantPrefix(t, "session outcome", out, "ignored: zero amount; attribution kept")
	stripeWantString(t, "kept coupon", s.stripeAttribution("sub_tp")["coupon"], "bob20")

	s.sendTwice(stripeEvent("evt_tp_in1", "invoice.paid",
		stripeInvoicePaid("in_tp_1", "sub_tp", "cus_tp", "ch_tp_1", "subscription_cycle", 1800, nil)))
	c := s.conversion("in_tp_1")
	stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.B.ID)
	stripeWantInt(t, "payment_number", c.GetInt("payment_number"), 1)
	if meta := c.GetString("metadata"); !strings.Contains(meta, `"path":"coupon"`) {
		t.Errorf("metadata = %s, want attribution path coupon", meta)
	}
}

func TestStripeTrialLongerThanCookieWindow(t *testing.T) {
	s := newStripe(t)
	// The click was 35 days ago, the trial started a day later, the program's cookie lasts 30
	// days: the click counted at the signup, so it credits the payment after the trial.
	signup := time.Now().AddDate(0, 0, -34)
	if _, err := s.app.DB().NewQuery("UPDATE clicks SET created = {:at} WHERE id = {:id}").Bind(dbx.Params{
		"at": signup.AddDate(0, 0, -1).UTC().Format("2006-01-02 15:04:05.000Z"), "id": fx.RowsA.Click}).Execute(); err != nil {
		t.Fatal(err)
	}
	s.update(collections.Programs, fx.ProgramP, map[string]any{"cookie_days": 30})

	s.send(stripeEventAt("evt_long_cs", "checkout.session.completed",
		stripeTrialSession("cs_long", "in_long_0", "sub_long", "cus_long", fx.RowsA.Click), signup))
	s.send(stripeEvent("evt_long_in1", "invoice.paid",
		stripeInvoicePaid("in_long_1", "sub_long", "cus_long", "ch_long_1", "subscription_cycle", 2000, nil)))
	c := s.conversion("in_long_1")
	stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.A.ID)
	stripeWantString(t, "click", c.GetString("click"), fx.RowsA.Click)
}

func TestStripeTrialEventOrder(t *testing.T) {
	s, fake := newStripeWithAPI(t)
	s.save(collections.Coupons, map[string]any{"code": "bob20", "affiliate": fx.B.ID, "program": fx.ProgramP, "active": true})
	fake.AddPromotionCode("promo_bob", "BOB20")
	fake.AddCheckoutSession("cs_order")

	// The trial's $0 invoice overtakes the session: its promotion code is kept, then the
	// session completes the row with its click; neither overwrites the other.
	trialInvoice := stripeInvoicePaid("in_order_0", "sub_order", "cus_order", "", "subscription_create", 0, nil)
	trialInvoice["discount"] = stripeDiscount("di_order", "promo_bob")
	out := s.sendTwice(stripeEvent("evt_order_in0", "invoice.paid", trialInvoice))
	stripeWantString(t, "trial invoice outcome", out, "ignored: nothing paid; attribution kept for subscription sub_order")
	s.sendTwice(stripeEvent("evt_order_cs", "checkout.session.completed",
		stripeTrialSession("cs_order", "in_order_0", "sub_order", "cus_order", fx.RowsA.Click)))
	kept := s.stripeAttribution("sub_order")
	stripeWantString(t, "kept coupon", kept["coupon"], "bob20")
	stripeWantString(t, "kept click", kept["click"], fx.RowsA.Click)

	// The click ranks above the coupon.
	s.send(stripeEvent("evt_order_in1", "invoice.paid",
		stripeInvoicePaid("in_order_1", "sub_order", "cus_order", "ch_order_1", "subscription_cycle", 2000, nil)))
	c := s.conversion("in_order_1")
	stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.A.ID)
	stripeWantInt(t, "payment_number", c.GetInt("payment_number"), 1)

	// A paid invoice whose own metadata names an affiliate keeps it.
	s.send(stripeEvent("evt_order_in2", "invoice.paid", stripeInvoicePaid("in_order_2", "sub_order", "cus_order", "ch_order_2",
		"subscription_cycle", 2000, map[string]string{"pba_affiliate": s.affiliateCode(fx.B.ID)})))
	stripeWantString(t, "affiliate named by the invoice", s.conversion("in_order_2").GetString("affiliate"), fx.B.ID)
}

func TestStripeSetupSessionKeepsCustomerAttribution(t *testing.T) {
	s := newStripe(t)
	setup := map[string]any{"id": "cs_setup", "object": "checkout.session", "mode": "setup",
		"payment_status": "no_payment_required", "status": "complete", "currency": "usd",
		"client_reference_id": fx.RowsB.Click, "customer": "cus_setup"}
	out := s.sendTwice(stripeEvent("evt_setup", "checkout.session.completed", setup))
	stripeWantString(t, "outcome", out, "ignored: zero amount; attribution kept for customer cus_setup")

	// The merchant later charges the saved card through an invoice of its own.
	s.send(stripeEvent("evt_setup_in", "invoice.paid",
		stripeInvoicePaid("in_setup", "", "cus_setup", "ch_setup", "manual", 4200, nil)))
	c := s.conversion("in_setup")
	stripeWantString(t, "affiliate", c.GetString("affiliate"), fx.B.ID)
	stripeWantString(t, "click", c.GetString("click"), fx.RowsB.Click)
}
