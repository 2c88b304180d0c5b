package hooks_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/subscriptions"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// conversionRecords is where an admin in the dashboard edits a conversion (PATCH, as a superuser).
const conversionRecords = "/api/collections/conversions/records/"

// netCommission is the sum of a sale's non-void commissions, clawbacks and reinstatements.
func netCommission(t *testing.T, app core.App, conversion string) (net int, rows int) {
	t.Helper()
	all, err := app.FindAllRecords(collections.Commissions, dbxEq("conversion", conversion))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		if c.GetString("status") != "void" {
			net += c.GetInt("amount")
		}
	}
	return net, len(all)
}

// unpaidAndPaidSales records two sales of 100.00 made 40 days ago, each earning 2000: A's is
// payable, B's paid.
func (e *engineEnv) unpaidAndPaidSales() (unpaid, paid string) {
	e.t.Helper()
	past := time.Now().AddDate(0, 0, -40)
	unpaid, paid = e.pastSale("affiliate-a", 10000, past), e.pastSale("affiliate-b", 10000, past)
	e.run()
	e.payAll(fx.B.ID)
	return unpaid, paid
}

// Rejecting a sale takes its commission back: voided while unpaid, clawed back from the next
// payout once paid. Approving it again gives it back, once, however often it goes back and forth.
func TestRejectingASaleReversesItsCommission(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	unpaid, paid := env.unpaidAndPaidSales()
	for _, id := range []string{unpaid, paid} {
		if res := pbatest.Request(env.handler, http.MethodPatch, conversionRecords+id, fx.Superuser.Token, `{"status":"rejected","reason":"fraud review"}`); res.Code != 200 {
			t.Fatalf("reject %s: %d %v", id, res.Code, res.JSON)
		}
	}
	env.run()
	env.run()
	if c := env.commissionOf(unpaid); c.GetString("status") != "void" {
		t.Fatalf("unpaid commission of a rejected sale: %v", c.FieldsData())
	}
	if net, rows := netCommission(t, env.app, paid); net != 0 || rows != 2 {
		t.Fatalf("paid sale rejected: net %d in %d rows, want 0 in 2 (sale, clawback)", net, rows)
	}
	claw, err := env.app.FindFirstRecordByFilter(collections.Commissions, "conversion = {:c} && kind = 'clawback'", map[string]any{"c": paid})
	if err != nil || claw.GetInt("amount") != -2000 || claw.GetString("status") != "payable" {
		t.Fatalf("clawback of the paid sale: %v %v", claw, err)
	}
	env.payAll(fx.A.ID)
	if n, _ := env.app.CountRecords(collections.Payouts, dbxEq("affiliate", fx.A.ID), dbxEq("amount", 2000)); n != 0 {
		t.Fatal("a rejected sale's commission was paid out")
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after rejecting")

	// Approved again: the void commission is revived, the clawback reinstated.
	for _, id := range []string{unpaid, paid} {
		if res := pbatest.Request(env.handler, http.MethodPatch, conversionRecords+id, fx.Superuser.Token, `{"status":"approved","reason":""}`); res.Code != 200 {
			t.Fatalf("approve %s: %d %v", id, res.Code, res.JSON)
		}
	}
	env.run()
	env.run()
	if c := env.commissionOf(unpaid); c.GetString("status") != "payable" || c.GetInt("amount") != 2000 {
		t.Fatalf("revived commission: %v", c.FieldsData())
	}
	if net, rows := netCommission(t, env.app, paid); net != 2000 || rows != 3 {
		t.Fatalf("paid sale approved again: net %d in %d rows, want 2000 in 3", net, rows)
	}
	// And once more each way: still one reversal per change.
	pbatest.Request(env.handler, http.MethodPatch, conversionRecords+paid, fx.Superuser.Token, `{"status":"rejected"}`)
	env.run()
	if net, _ := netCommission(t, env.app, paid); net != 0 {
		t.Fatalf("second rejection: net %d", net)
	}
	pbatest.Request(env.handler, http.MethodPatch, conversionRecords+paid, fx.Superuser.Token, `{"status":"approved"}`)
	env.run()
	if net, rows := netCommission(t, env.app, paid); net != 2000 || rows != 5 {
		t.Fatalf("second approval: net %d in %d rows", net, rows)
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after approving again")
}

// A refund applied while a sale is rejected does not claw back a second time, and approving the
// sale again reinstates only what the refund left.
func TestRefundOfARejectedSale(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	paid := env.sale("affiliate-b", 10000, time.Now().AddDate(0, 0, -40))
	env.run()
	env.payAll(fx.B.ID)
	env.setConversion(paid, map[string]any{"status": "rejected"})
	env.setConversion(paid, map[string]any{"refunded_amount": 5000})
	env.run()
	env.run()
	if net, _ := netCommission(t, env.app, paid); net != 0 {
		t.Fatalf("rejected, then refunded: net %d, want 0", net)
	}
	env.setConversion(paid, map[string]any{"status": "approved"})
	env.run()
	if net, _ := netCommission(t, env.app, paid); net != 1000 {
		t.Fatalf("approved again after a half refund: net %d, want 1000", net)
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after the refund")
}

// The fields a commission was computed from are locked once it exists; before that, an edit
// moves the sale's place in stats_daily.
func TestCommissionedSaleFieldsLocked(t *testing.T) {
	env := newEngineEnv(t)
	saleGaps := statsSaleGaps(t, env.app)
	conv := env.sale("affiliate-a", 10000, time.Now().AddDate(0, 0, -40))
	// Not commissioned yet: amount and day can be corrected, and the rollups follow.
	if res := pbatest.Request(env.handler, http.MethodPatch, conversionRecords+conv, fx.Superuser.Token, fmt.Sprintf(`{"amount":12000,"occurred_at":%q}`,
		time.Now().AddDate(0, 0, -41).UTC().Format(time.RFC3339))); res.Code != 200 {
		t.Fatalf("correct an uncommissioned sale: %d %v", res.Code, res.JSON)
	}
	if g := statsSaleGaps(t, env.app); g != saleGaps {
		t.Fatalf("stats_daily after a correction:\nbefore %s\nafter  %s", saleGaps, g)
	}
	env.run()
	for field, value := range map[string]string{"amount": "5000", "affiliate": fmt.Sprintf("%q", fx.B.ID), "currency": `"eur"`} {
		res := pbatest.Request(env.handler, http.MethodPatch, conversionRecords+conv, fx.Superuser.Token, fmt.Sprintf(`{%q:%s}`, field, value))
		data, _ := res.JSON["data"].(map[string]any)
		if res.Code != 400 || data[field] == nil {
			t.Fatalf("edit %s of a commissioned sale: %d %v", field, res.Code, res.JSON)
		}
	}
	if c := mustFind(t, env.app, collections.Conversions, conv); c.GetInt("amount") != 12000 {
		t.Fatalf("a refused edit changed the sale: %v", c.FieldsData())
	}
	// Its status still changes.
	if res := pbatest.Request(env.handler, http.MethodPatch, conversionRecords+conv, fx.Superuser.Token, `{"status":"rejected"}`); res.Code != 200 {
		t.Fatalf("reject: %d %v", res.Code, res.JSON)
	}
}

// An admin's stale copy of a sale cannot undo what the engine wrote since it was loaded.
func TestStaleConversionSaveKeepsEngineFields(t *testing.T) {
	env := newEngineEnv(t)
	paid := env.sale("affiliate-b", 10000, time.Now().AddDate(0, 0, -40))
	env.run()
	env.payAll(fx.B.ID)
	stale := mustFind(t, env.app, collections.Conversions, paid)
	env.setConversion(paid, map[string]any{"refunded_amount": 5000})
	env.run() // applies the refund: refund_applied = 5000, a 1000 clawback
	stale.Set("reason", "note from an old tab")
	stale.Set("refunded_amount", 5000)
	if err := env.app.Save(stale); err != nil {
		t.Fatal(err)
	}
	env.run()
	if net, _ := netCommission(t, env.app, paid); net != 1000 {
		t.Fatalf("net %d after a stale save, want 1000 (the refund applied once)", net)
	}
}

// liveFeed subscribes a superuser to pba/live; wait returns once the messages received so
// far contain want, failing the test after two seconds.
func liveFeed(t *testing.T, app core.App) (wait func(want string)) {
	t.Helper()
	c := subscriptions.NewDefaultClient()
	c.Set(apis.RealtimeClientAuthKey, mustFindEmail(t, app, core.CollectionNameSuperusers, fx.Superuser.Email))
	c.Subscribe(hooks.LiveTopic)
	app.SubscriptionsBroker().Register(c)
	t.Cleanup(func() { app.SubscriptionsBroker().Unregister(c.Id()) })
	var got strings.Builder
	return func(want string) {
		t.Helper()
		deadline := time.After(2 * time.Second)
		for !strings.Contains(got.String(), want) {
			select {
			case msg := <-c.Channel():
				got.Write(msg.Data)
			case <-deadline:
				t.Fatalf("pba/live: no %s in %s", want, got.String())
			}
		}
	}
}

// Rejections and refunds take their share back from the live counters.
func TestLiveCountersFollowRejectionsAndRefunds(t *testing.T) {
	env := newEngineEnv(t)
	rejected := env.sale("affiliate-a", 10000, time.Now().AddDate(0, 0, -40))
	refunded := env.sale("affiliate-b", 8000, time.Now().AddDate(0, 0, -40))
	env.run()
	time.Sleep(time.Second) // the sales' own deltas go out before the feed starts (every 250 ms)
	wait := liveFeed(t, env.app)
	pbatest.Request(env.handler, http.MethodPatch, conversionRecords+rejected, fx.Superuser.Token, `{"status":"rejected"}`)
	wait(fmt.Sprintf(`%q:{"clicks":0,"unique_clicks":0,"conversions":-1,"revenue":-10000,"commission":-2000}`, fx.A.ID))
	env.setConversion(refunded, map[string]any{"refunded_amount": 2000})
	env.run()
	wait(fmt.Sprintf(`%q:{"clicks":0,"unique_clicks":0,"conversions":0,"revenue":-2000,"commission":-400}`, fx.B.ID))
}
