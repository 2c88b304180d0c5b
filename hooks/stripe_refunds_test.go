package hooks_test

import (
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Refunds and disputes: what a charge.refunded or charge.dispute.* event does to a sale and
// its commission, in either order with the sale.

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

	// Both refunds are in the sale's history, through the Stripe door.
	rows, err := s.app.FindRecordsByFilter(collections.ConversionEvents, "conversion = {:c}", "@rowid", 0, 0, dbx.Params{"c": c.Id})
	if err != nil || len(rows) != 2 {
		t.Fatalf("history: %d rows, %v", len(rows), err)
	}
	for i, want := range []struct {
		before, after string
		refunded      int
		note          string
	}{{"approved", "approved", 2000, "charge.refunded evt_ref_1"}, {"approved", "refunded", 5000, "charge.refunded evt_ref_2"}} {
		r := rows[i]
		if r.GetString("door") != "stripe" || r.GetString("status_before") != want.before || r.GetString("status_after") != want.after ||
			r.GetInt("refunded_after") != want.refunded || r.GetString("note") != want.note {
			t.Errorf("history row %d: %v, want %+v", i, r.FieldsData(), want)
		}
	}
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
