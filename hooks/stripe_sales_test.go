package hooks_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
)

// Sales: checkout sessions, invoices and payment intents become conversions, credited to a
// click, a sticky customer or a promotion code.

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

	t.Run("zero amount records nothing but keeps the customer's attribution", func(t *testing.T) {
		obj := stripeCheckoutPayment("cs_6", "pi_6", fx.RowsA.Click, 0)
		obj["payment_status"] = "no_payment_required"
		s.send(stripeEvent("evt_cs6", "checkout.session.completed", obj))
		stripeWantString(t, "outcome", s.outcome("evt_cs6"), "ignored: zero amount; attribution kept for customer cus_cs_6")
		if n := len(s.stripeConversions("external_id = 'pi_6'")); n != 0 {
			t.Fatalf("%d conversions for a $0 session", n)
		}

		delete(obj, "client_reference_id")
		obj["id"] = "cs_6b"
		s.send(stripeEvent("evt_cs6b", "checkout.session.completed", obj))
		stripeWantString(t, "outcome naming nobody", s.outcome("evt_cs6b"), "ignored: zero amount")
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
	if res.Code != http.StatusOK {
		t.Fatalf("an unknown promotion code: %d %s, want it acknowledged (200)", res.Code, res.Body)
	}
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
