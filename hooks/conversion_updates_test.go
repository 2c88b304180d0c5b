package hooks_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// Problem 1 of the "Money paths" issue: a superuser sets a sale's status to refunded in the
// dashboard (no refunded_amount). The sale is refunded in full, exactly as a full Stripe refund:
// its unpaid commission is voided, a paid one clawed back from the next payout.
func TestDashboardStatusRefundedIsAFullRefund(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	unpaid, paid := env.unpaidAndPaidSales()
	for _, id := range []string{unpaid, paid} {
		res := pbatest.Request(env.handler, http.MethodPatch, conversionRecords+id, fx.Superuser.Token, `{"status":"refunded"}`)
		if res.Code != 200 || res.JSON["refunded_amount"] != float64(10000) {
			t.Fatalf("status refunded of %s: %d %v, want 200 with refunded_amount 10000", id, res.Code, res.JSON)
		}
	}
	env.run()
	env.run()
	if c := env.commissionOf(unpaid); c.GetString("status") != "void" {
		t.Fatalf("unpaid commission of a refunded sale: %v", c.FieldsData())
	}
	if net, rows := netCommission(t, env.app, paid); net != 0 || rows != 2 {
		t.Fatalf("paid sale refunded: net %d in %d rows, want 0 in 2 (sale, clawback)", net, rows)
	}
	env.payAll(fx.A.ID)
	if n, _ := env.app.CountRecords(collections.Payouts, dbxEq("affiliate", fx.A.ID), dbxEq("amount", 2000)); n != 0 {
		t.Fatal("a refunded sale's commission was paid out")
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after refunding")
}

// updatesAPI is the merchant API's update form: POST /api/pba/conversions/{source}/{external_id}.
func updatesAPI(source, externalID string) string {
	return conversionsAPI + "/" + source + "/" + url.PathEscape(externalID)
}

// Problem 2: a merchant without Stripe reports a refund or a cancellation. The postback takes
// status=refunded and status=rejected on a txid it recorded, and the API has an update form.
func TestMerchantReportsRefundsAndCancellations(t *testing.T) {
	env := newEngineEnv(t)
	past := time.Now().AddDate(0, 0, -40).UTC().Format(time.RFC3339)
	pb := func(query string) *pbatest.Response {
		return pbatest.Request(env.handler, http.MethodGet, postbackAPI+"key="+url.QueryEscape(fx.SecretP)+"&"+query, "", "")
	}
	for _, txid := range []string{"pb-ref", "pb-rej"} {
		if res := pb("affiliate_code=affiliate-a&currency=usd&amount=100.00&occurred_at=" + past + "&txid=" + txid); res.Code != 201 {
			t.Fatalf("postback %s: %d %s", txid, res.Code, res.Body)
		}
	}
	api := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"affiliate_code":"affiliate-b","external_id":"api-1","amount":10000,"currency":"usd","occurred_at":%q}`, past))
	if api.Code != 201 {
		t.Fatalf("api sale: %d %s", api.Code, api.Body)
	}
	// Past their hold, which runs from recording.
	env.recordedWhenOccurred()
	env.run()

	if res := pb("txid=pb-ref&status=refunded"); res.Code != 200 || res.JSON["status"] != "refunded" || res.JSON["refunded_amount"] != float64(10000) {
		t.Fatalf("postback status=refunded: %d %s", res.Code, res.Body)
	}
	if res := pb("affiliate_code=affiliate-a&currency=usd&amount=100.00&txid=pb-rej&status=rejected"); res.Code != 200 || res.JSON["status"] != "rejected" {
		t.Fatalf("postback re-sent with status=rejected: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPost, updatesAPI("api", "api-1"), bearer(), `{"status":"refunded"}`); res.Code != 200 ||
		res.JSON["status"] != "refunded" {
		t.Fatalf("API update: %d %s", res.Code, res.Body)
	}
	env.run()
	for _, id := range []string{env.conversionID("postback", "pb-ref"), env.conversionID("postback", "pb-rej"), env.conversionID("api", "api-1")} {
		if net, _ := netCommission(t, env.app, id); net != 0 {
			t.Errorf("conversion %s keeps a commission of %d", id, net)
		}
	}
	env.ledgerOK()
}

// conversionID is the id of the sale recorded under (source, external id).
func (e *engineEnv) conversionID(source, externalID string) string {
	e.t.Helper()
	r, err := e.app.FindFirstRecordByFilter(collections.Conversions, "source = {:s} && external_id = {:x}",
		map[string]any{"s": source, "x": externalID})
	if err != nil {
		e.t.Fatalf("conversion %s/%s: %v", source, externalID, err)
	}
	return r.Id
}

// history is the sale's history rows, oldest first.
func (e *engineEnv) history(conversion string) []*core.Record {
	e.t.Helper()
	rows, err := e.app.FindRecordsByFilter(collections.ConversionEvents, "conversion = {:c}", "@rowid", 0, 0, dbx.Params{"c": conversion})
	if err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// update sends body to the API's update form of source/externalID.
func (e *engineEnv) update(method, source, externalID, auth, body string) *pbatest.Response {
	return pbatest.Request(e.handler, method, updatesAPI(source, externalID), auth, body)
}

// outcome is what the answer says the update did.
func outcome(res *pbatest.Response) string {
	u, _ := res.JSON["update"].(map[string]any)
	return fmt.Sprint(u["outcome"])
}

// postbackUpdate sends a postback of program P.
func (e *engineEnv) postback(query string) *pbatest.Response {
	return pbatest.Request(e.handler, http.MethodGet, postbackAPI+"key="+url.QueryEscape(fx.SecretP)+"&"+query, "", "")
}

func TestUpdateAPI(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	past := time.Now().AddDate(0, 0, -40).UTC().Format(time.RFC3339)
	create := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"affiliate_code":"affiliate-a","external_id":"order/7","amount":10000,"currency":"usd","occurred_at":%q}`, past))
	if create.Code != 201 {
		t.Fatalf("create: %d %s", create.Code, create.Body)
	}
	id := create.JSON["id"].(string)
	// Past their hold, which runs from recording.
	env.recordedWhenOccurred()
	env.run() // commission 2000, payable

	cases := []struct {
		name, auth, source, externalID, body string
		status                               int
		field                                string
	}{
		{"no auth", "", "api", "order/7", `{"status":"rejected"}`, 401, ""},
		{"wrong secret", "Bearer nope", "api", "order/7", `{"status":"rejected"}`, 401, ""},
		{"affiliate token", fx.A.Token, "api", "order/7", `{"status":"rejected"}`, 401, ""},
		{"another program's secret", "Bearer " + fx.ProgramQSecret, "api", "order/7", `{"status":"rejected"}`, 404, "external_id"},
		{"unknown sale", bearer(), "api", "order/8", `{"status":"rejected"}`, 404, "external_id"},
		{"recorded under another source", bearer(), "postback", "order/7", `{"status":"rejected"}`, 404, "external_id"},
		{"unknown source", bearer(), "shopify", "order/7", `{"status":"rejected"}`, 400, "source"},
		{"stripe sales follow stripe", bearer(), "stripe", "order/7", `{"status":"rejected"}`, 400, "source"},
		{"amount as a string", bearer(), "api", "order/7", `{"refunded_amount":"2500"}`, 400, "refunded_amount"},
		{"decimal amount", bearer(), "api", "order/7", `{"refunded_amount":25.5}`, 400, "refunded_amount"},
		{"negative amount", bearer(), "api", "order/7", `{"refunded_amount":-1}`, 400, "refunded_amount"},
		{"more than the sale", bearer(), "api", "order/7", `{"refunded_amount":10001}`, 400, "refunded_amount"},
		{"unknown status", bearer(), "api", "order/7", `{"status":"paid"}`, 400, "status"},
		{"status not a string", bearer(), "api", "order/7", `{"status":1}`, 400, "status"},
		{"nothing to change", bearer(), "api", "order/7", `{"reason":"why not"}`, 400, "status"},
		{"bad time", bearer(), "api", "order/7", `{"status":"rejected","updated_at":"yesterday"}`, 400, "updated_at"},
		{"future time", bearer(), "api", "order/7", fmt.Sprintf(`{"status":"rejected","updated_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)), 400, "updated_at"},
		{"sequence as a string", bearer(), "api", "order/7", `{"status":"rejected","sequence":"3"}`, 400, "sequence"},
		{"sequence zero", bearer(), "api", "order/7", `{"status":"rejected","sequence":0}`, 400, "sequence"},
		{"both order keys", bearer(), "api", "order/7", `{"status":"rejected","sequence":3,"updated_at":"2026-01-01T00:00:00Z"}`, 400, "sequence"},
		{"unknown field", bearer(), "api", "order/7", `{"status":"rejected","amount":5}`, 400, "amount"},
		{"not JSON", bearer(), "api", "order/7", `status=rejected`, 400, "body"},
	}
	for _, tc := range cases {
		res := env.update(http.MethodPost, tc.source, tc.externalID, tc.auth, tc.body)
		if res.Code != tc.status || (tc.field != "" && !strings.Contains(res.Body.String(), `"`+tc.field+`":{`)) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, res.Code, res.Body, tc.status, tc.field)
		}
	}
	if c := mustFind(t, env.app, collections.Conversions, id); c.GetString("status") != "approved" || c.GetInt("refunded_amount") != 0 || len(env.history(id)) != 0 {
		t.Fatalf("refused updates changed the sale: %v", c.FieldsData())
	}

	// A partial refund (cumulative minor units), its replay, a smaller (stale) one, then in full.
	res := env.update(http.MethodPost, "api", "order/7", bearer(), `{"refunded_amount":2500}`)
	if res.Code != 200 || outcome(res) != "applied" || res.JSON["status"] != "approved" || res.JSON["refunded_amount"] != float64(2500) || res.JSON["id"] != id {
		t.Fatalf("partial refund: %d %s", res.Code, res.Body)
	}
	if res := env.update(http.MethodPatch, "api", "order/7", bearer(), `{"refunded_amount":2500}`); res.Code != 200 || outcome(res) != "unchanged" {
		t.Fatalf("replayed refund: %d %s", res.Code, res.Body)
	}
	if res := env.update(http.MethodPost, "api", "order/7", bearer(), `{"refunded_amount":1000}`); res.Code != 200 || outcome(res) != "stale" ||
		res.JSON["refunded_amount"] != float64(2500) || !strings.Contains(res.Body.String(), "cumulative") {
		t.Fatalf("smaller refund: %d %s", res.Code, res.Body)
	}
	env.run()
	if c := env.commissionOf(id); c.GetInt("amount") != 1500 || c.GetString("status") != "payable" {
		t.Fatalf("commission after a quarter refunded: %v", c.FieldsData())
	}
	env.ledgerOK()
	// A superuser may update any program's sale; the history names who.
	if res := env.update(http.MethodPost, "api", "order/7", fx.Superuser.Token, `{"status":"refunded","reason":"customer returned it"}`); res.Code != 200 ||
		res.JSON["status"] != "refunded" || res.JSON["refunded_amount"] != float64(10000) || res.JSON["reason"] != "customer returned it" {
		t.Fatalf("refund in full: %d %s", res.Code, res.Body)
	}
	env.run()
	env.run()
	if c := env.commissionOf(id); c.GetString("status") != "void" {
		t.Fatalf("commission after a full refund: %v", c.FieldsData())
	}
	// A refunded sale is not approved again: a keyed approval is acknowledged, the sale stays refunded.
	if res := env.update(http.MethodPost, "api", "order/7", bearer(), `{"status":"approved","sequence":1}`); res.Code != 200 || res.JSON["status"] != "refunded" {
		t.Fatalf("approving a refunded sale: %d %s", res.Code, res.Body)
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after the API's updates")

	h := env.history(id)
	if len(h) != 4 {
		t.Fatalf("history: %d rows, want 4 (partial refund, its application, full refund, its application)", len(h))
	}
	want := []struct {
		door, actor, before, after      string
		refBefore, refAfter, commission int
	}{
		{"api", "", "approved", "approved", 0, 2500, 0},
		{"engine", "", "approved", "approved", 2500, 2500, -500},
		{"api", fx.Superuser.Email, "approved", "refunded", 2500, 10000, 0},
		{"engine", "", "refunded", "refunded", 10000, 10000, -1500},
	}
	for i, w := range want {
		r := h[i]
		if r.GetString("door") != w.door || r.GetString("actor") != w.actor || r.GetString("status_before") != w.before || r.GetString("status_after") != w.after ||
			r.GetInt("refunded_before") != w.refBefore || r.GetInt("refunded_after") != w.refAfter || r.GetInt("commission_change") != w.commission ||
			r.GetString("affiliate") != fx.A.ID || r.GetString("program") != fx.ProgramP {
			t.Errorf("history row %d: %v, want %+v", i, r.FieldsData(), w)
		}
	}
	if !strings.Contains(h[2].GetString("note"), "customer returned it") {
		t.Errorf("history note: %q", h[2].GetString("note"))
	}
}

// Reordered and replayed updates: an update older than the last status change applied (by
// sequence or updated_at) is acknowledged and ignored, a replay changes nothing, and without an
// order key a status only moves forward.
func TestUpdateOrdering(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	past := time.Now().AddDate(0, 0, -40).UTC().Format(time.RFC3339)
	for _, txid := range []string{"seq", "time", "plain"} {
		if res := env.postback("affiliate_code=affiliate-a&currency=usd&amount=100&occurred_at=" + past + "&txid=" + txid); res.Code != 201 {
			t.Fatalf("postback %s: %d %s", txid, res.Code, res.Body)
		}
	}
	// Past their hold, which runs from recording.
	env.recordedWhenOccurred()
	env.run()
	seq := env.conversionID("postback", "seq")
	steps := []struct {
		name, body, outcome, status string
	}{
		{"seq 3 rejects", `{"status":"rejected","sequence":3}`, "applied", "rejected"},
		{"seq 2 arrives late", `{"status":"approved","sequence":2}`, "stale", "rejected"},
		{"seq 3 again, other values", `{"status":"approved","sequence":3}`, "stale", "rejected"},
		{"seq 3 replayed", `{"status":"rejected","sequence":3}`, "unchanged", "rejected"},
		{"seq 4 approves again", `{"status":"approved","sequence":4}`, "applied", "approved"},
		{"seq 3 replayed after 4", `{"status":"rejected","sequence":3}`, "stale", "approved"},
		{"a refund is never stale by its key", `{"refunded_amount":4000,"sequence":1}`, "applied", "approved"},
		{"seq 2 holds, too late", `{"status":"pending","sequence":2}`, "stale", "approved"},
	}
	for _, s := range steps {
		res := env.update(http.MethodPost, "postback", "seq", bearer(), s.body)
		if res.Code != 200 || outcome(res) != s.outcome || res.JSON["status"] != s.status {
			t.Fatalf("%s: %d %s, want %s, %s", s.name, res.Code, res.Body, s.outcome, s.status)
		}
		env.run()
	}
	if c := mustFind(t, env.app, collections.Conversions, seq); c.GetInt("sender_sequence") != 4 || c.GetInt("refunded_amount") != 4000 {
		t.Fatalf("stored order key and refund: %v", c.FieldsData())
	}
	if net, _ := netCommission(t, env.app, seq); net != 1200 { // 20% of 10000, less 40% refunded
		t.Fatalf("net commission after reject, approve and a 40%% refund: %d, want 1200", net)
	}

	// The same through the postback, by updated_at; a replay of the original sale changes nothing.
	t1, t2 := "2026-11-24T10:00:00Z", "2026-11-24T10:00:05Z"
	for _, s := range []struct{ query, outcome, status string }{
		{"txid=time&status=cancelled&updated_at=" + t2, "applied", "rejected"},
		{"txid=time&status=approved&updated_at=" + t1, "stale", "rejected"},
		{"affiliate_code=affiliate-a&currency=usd&amount=100&txid=time", "", "rejected"},
		{"txid=time&status=approved&updated_at=" + t2, "stale", "rejected"},
	} {
		res := env.postback(s.query)
		if res.Code != 200 || res.JSON["status"] != s.status || (s.outcome != "" && outcome(res) != s.outcome) {
			t.Fatalf("postback %s: %d %s, want %s %s", s.query, res.Code, res.Body, s.outcome, s.status)
		}
	}

	// Without an order key: arrival order, forward only.
	for _, s := range []struct{ query, outcome, status string }{
		{"txid=plain&status=pending", "stale", "approved"},    // approved → pending needs a key
		{"txid=plain&status=rejected", "applied", "rejected"}, //
		{"txid=plain&status=approved", "stale", "rejected"},   // a late retry of the approval
		{"txid=plain&status=refunded", "applied", "rejected"}, // the refund counts, the rejection stays
		{"txid=plain&status=rejected", "unchanged", "rejected"},
	} {
		res := env.postback(s.query)
		if res.Code != 200 || outcome(res) != s.outcome || res.JSON["status"] != s.status {
			t.Fatalf("postback %s: %d %s, want %s %s", s.query, res.Code, res.Body, s.outcome, s.status)
		}
	}
	env.run()
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after reordered updates")
}

// Partial refunds through the postback: refund= is the cumulative refunded amount as a decimal,
// converted exactly with the currency's decimals.
func TestPostbackRefunds(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	past := time.Now().AddDate(0, 0, -40).UTC().Format(time.RFC3339)
	if res := env.postback("affiliate_code=affiliate-b&currency=usd&amount=80.00&occurred_at=" + past + "&txid=r-1"); res.Code != 201 {
		t.Fatalf("sale: %d %s", res.Code, res.Body)
	}
	// Past their hold, which runs from recording.
	env.recordedWhenOccurred()
	env.run()
	id := env.conversionID("postback", "r-1")
	env.payAll(fx.B.ID) // its commission of 1600 is paid

	for _, s := range []struct {
		query    string
		code     int
		outcome  string
		refunded float64
		status   string
	}{
		{"txid=r-1&refund=20.00&currency=usd", 200, "applied", 2000, "approved"},
		{"txid=r-1&refund=20&currency=usd", 200, "unchanged", 2000, "approved"},
		{"txid=r-1&refund=5.5&currency=usd", 200, "stale", 2000, "approved"},
		{"affiliate_code=affiliate-b&currency=usd&amount=80.00&txid=r-1&refund=60.00", 200, "applied", 6000, "approved"},
		{"txid=r-1&refund=80&currency=usd", 200, "applied", 8000, "refunded"},
	} {
		res := env.postback(s.query)
		if res.Code != s.code || outcome(res) != s.outcome || res.JSON["refunded_amount"] != s.refunded || res.JSON["status"] != s.status {
			t.Fatalf("postback %s: %d %s, want %s %v %s", s.query, res.Code, res.Body, s.outcome, s.refunded, s.status)
		}
		env.run()
	}
	claws, _ := env.app.FindAllRecords(collections.Commissions, dbxEq("conversion", id), dbxEq("kind", "clawback"))
	if net, _ := netCommission(t, env.app, id); net != 0 || len(claws) != 3 {
		t.Fatalf("paid sale refunded in three steps: net %d in %d clawbacks, want 0 in 3", net, len(claws))
	}

	for _, s := range []struct {
		query string
		code  int
		field string
	}{
		{"txid=nope&refund=1&currency=usd", 404, "txid"},
		{"txid=nope&status=refunded", 404, "txid"},
		{"txid=r-1&refund=80.001&currency=usd", 400, "refund"},
		{"txid=r-1&refund=80.01&currency=usd", 400, "refunded_amount"}, // more than the sale
		{"txid=r-1&refund=1", 400, "currency"},
		{"txid=r-1", 400, "amount"},
		{"txid=r-1&status=maybe", 400, "status"},
		{"affiliate_code=affiliate-b&currency=usd&amount=81.00&txid=r-1&status=rejected", 409, "external_id"},
	} {
		res := env.postback(s.query)
		if res.Code != s.code || !strings.Contains(res.Body.String(), `"`+s.field+`":{`) {
			t.Errorf("postback %s: %d %s, want %d naming %s", s.query, res.Code, res.Body, s.code, s.field)
		}
	}
	// Another program's key does not reach P's sales.
	if res := pbatest.Request(env.handler, http.MethodGet, postbackAPI+"key="+url.QueryEscape(fx.ProgramQSecret)+"&txid=r-1&status=approved", "", ""); res.Code != 404 {
		t.Fatalf("Q's key on P's sale: %d %s", res.Code, res.Body)
	}
	// A sale first reported refunded is recorded, then refunded, in one request.
	res := env.postback("affiliate_code=affiliate-a&currency=usd&amount=12.34&occurred_at=" + past + "&txid=r-2&status=refunded")
	if res.Code != 201 || res.JSON["status"] != "refunded" || res.JSON["refunded_amount"] != float64(1234) {
		t.Fatalf("a sale reported refunded: %d %s", res.Code, res.Body)
	}
	env.run()
	if n, _ := env.app.CountRecords(collections.Commissions, dbxEq("conversion", res.JSON["id"])); n != 0 {
		t.Fatal("a sale refunded at once earned a commission")
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after postback refunds")
}

// The dashboard's rules for refunds: status refunded means in full, refunds are cumulative, a
// refunded sale is not approved again, and the history keeps each change with the superuser.
func TestDashboardRefundRules(t *testing.T) {
	env := newEngineEnv(t)
	id := env.sale("affiliate-a", 10000, time.Now().AddDate(0, 0, -40))
	// Past their hold, which runs from recording.
	env.recordedWhenOccurred()
	env.run()
	patch := func(body string) *pbatest.Response {
		return pbatest.Request(env.handler, http.MethodPatch, conversionRecords+id, fx.Superuser.Token, body)
	}
	if res := patch(`{"refunded_amount":3000}`); res.Code != 200 || res.JSON["status"] != "approved" || res.JSON["refunded_amount"] != float64(3000) {
		t.Fatalf("partial refund: %d %v", res.Code, res.JSON)
	}
	for body, field := range map[string]string{`{"refunded_amount":2000}`: "refunded_amount", `{"refunded_amount":10001}`: "refunded_amount"} {
		if res := patch(body); res.Code != 400 || res.JSON["data"].(map[string]any)[field] == nil {
			t.Fatalf("%s: %d %v, want 400 naming %s", body, res.Code, res.JSON, field)
		}
	}
	if res := patch(`{"status":"refunded","refunded_amount":5000,"reason":"returned"}`); res.Code != 200 || res.JSON["refunded_amount"] != float64(10000) {
		t.Fatalf("status refunded with a partial amount: %d %v", res.Code, res.JSON)
	}
	if _, ok := patch(`{"reason":"returned in full"}`).JSON["@pbaActor"]; ok {
		t.Fatal("the records API answered the hook's actor key")
	}
	if res := patch(`{"status":"approved"}`); res.Code != 400 || res.JSON["data"].(map[string]any)["status"] == nil {
		t.Fatalf("approving a refunded sale: %d %v", res.Code, res.JSON)
	}
	// Rejected, then approved again: back to refunded, where it was.
	if res := patch(`{"status":"rejected"}`); res.Code != 200 {
		t.Fatalf("reject: %d %v", res.Code, res.JSON)
	}
	if res := patch(`{"status":"approved"}`); res.Code != 200 || res.JSON["status"] != "refunded" {
		t.Fatalf("approve a rejected refunded sale: %d %v", res.Code, res.JSON)
	}
	env.run()
	if net, _ := netCommission(t, env.app, id); net != 0 {
		t.Fatalf("net commission of a refunded sale: %d", net)
	}
	var dashboard []string
	for _, r := range env.history(id) {
		if r.GetString("door") == "dashboard" {
			if r.GetString("actor") != fx.Superuser.Email {
				t.Errorf("dashboard change without its superuser: %v", r.FieldsData())
			}
			dashboard = append(dashboard, r.GetString("status_before")+"→"+r.GetString("status_after"))
		}
	}
	if got := strings.Join(dashboard, " "); got != "approved→approved approved→refunded refunded→rejected rejected→refunded" {
		t.Fatalf("dashboard history: %s", got)
	}
	env.ledgerOK()
}

// conversion_events is read by superusers and by the affiliate whose sale it is (without the
// actor), and written by no one through the API.
func TestSaleHistoryAccess(t *testing.T) {
	env := newEngineEnv(t)
	id := env.sale("affiliate-a", 10000, time.Now().Add(-time.Hour))
	pbatest.Request(env.handler, http.MethodPatch, conversionRecords+id, fx.Superuser.Token, `{"status":"rejected"}`)
	rows := env.history(id)
	if len(rows) != 1 {
		t.Fatalf("%d history rows", len(rows))
	}
	list := "/api/collections/conversion_events/records"
	for who, want := range map[string]string{fx.Superuser.Token: `"totalItems":1`, fx.A.Token: `"totalItems":1`, fx.B.Token: `"totalItems":0`, "": `"totalItems":0`} {
		res := pbatest.Request(env.handler, http.MethodGet, list, who, "")
		if res.Code != 200 || !strings.Contains(res.Body.String(), want) {
			t.Errorf("list as %.12s: %d %s, want %s", who, res.Code, res.Body, want)
		}
	}
	if res := pbatest.Request(env.handler, http.MethodGet, list+"/"+rows[0].Id, fx.A.Token, ""); res.Code != 200 || strings.Contains(res.Body.String(), fx.Superuser.Email) {
		t.Errorf("the affiliate's view: %d %s (the actor is hidden)", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodGet, list+"/"+rows[0].Id, fx.Superuser.Token, ""); !strings.Contains(res.Body.String(), fx.Superuser.Email) {
		t.Errorf("the superuser's view: %s", res.Body)
	}
	for _, req := range []struct{ method, path, body string }{
		{http.MethodPost, list, fmt.Sprintf(`{"conversion":%q,"door":"system","status_before":"approved","status_after":"approved"}`, id)},
		{http.MethodPatch, list + "/" + rows[0].Id, `{"note":"edited"}`},
		{http.MethodDelete, list + "/" + rows[0].Id, ""},
	} {
		for _, who := range []string{fx.Superuser.Token, fx.A.Token} {
			if res := pbatest.Request(env.handler, req.method, req.path, who, req.body); res.Code < 400 {
				t.Errorf("%s %s as %.12s: %d %s", req.method, req.path, who, res.Code, res.Body)
			}
		}
	}
	if after := env.history(id); len(after) != 1 || after[0].GetString("note") != rows[0].GetString("note") {
		t.Fatalf("the history changed through the API: %v", after)
	}
}

// A refund or a rejection through a merchant door moves pba/live as a dashboard edit does.
func TestLiveCountersFollowMerchantUpdates(t *testing.T) {
	env := newEngineEnv(t)
	rejected := env.sale("affiliate-a", 10000, time.Now().AddDate(0, 0, -40))
	env.sale("affiliate-b", 8000, time.Now().AddDate(0, 0, -40))
	// Past their hold, which runs from recording.
	env.recordedWhenOccurred()
	env.run()
	time.Sleep(time.Second) // the sales' own deltas go out before the feed starts
	wait := liveFeed(t, env.app)
	env.update(http.MethodPost, "api", mustFind(t, env.app, collections.Conversions, rejected).GetString("external_id"), bearer(), `{"status":"rejected"}`)
	wait(fmt.Sprintf(`%q:{"clicks":0,"unique_clicks":0,"conversions":-1,"revenue":-10000,"commission":-2000}`, fx.A.ID))
	env.update(http.MethodPost, "api", "e-2", bearer(), `{"refunded_amount":2000}`)
	env.run()
	wait(fmt.Sprintf(`%q:{"clicks":0,"unique_clicks":0,"conversions":0,"revenue":-2000,"commission":-400}`, fx.B.ID))
}

// The calls of the README's "Sales and refunds from any shop", as written there.
func TestReadmeSalesAndRefunds(t *testing.T) {
	env := newEngineEnv(t)
	click := env.freshClick()
	api := func(method, path, body string) *pbatest.Response {
		t.Helper()
		res := pbatest.Request(env.handler, method, path, bearer(), body)
		if res.Code != 200 && res.Code != 201 {
			t.Fatalf("%s %s %s: %d %s", method, path, body, res.Code, res.Body)
		}
		return res
	}
	api(http.MethodPost, "/api/pba/conversions", `{"click_id":"`+click+`","external_id":"order-1001","amount":4999,"currency":"usd"}`)
	if res := api(http.MethodPost, "/api/pba/conversions/api/order-1001", `{"refunded_amount":1500,"sequence":2}`); res.JSON["refunded_amount"] != float64(1500) {
		t.Fatalf("partial refund: %s", res.Body)
	}
	if res := api(http.MethodPost, "/api/pba/conversions/api/order-1001", `{"status":"refunded","sequence":3}`); res.JSON["refunded_amount"] != float64(4999) {
		t.Fatalf("refund: %s", res.Body)
	}
	if res := api(http.MethodPost, "/api/pba/conversions/api/order-1001", `{"status":"rejected","reason":"order cancelled","sequence":4}`); res.JSON["status"] != "rejected" || outcome(res) != "applied" {
		t.Fatalf("reject: %s", res.Body)
	}
	key := "/api/pba/postback?key=" + url.QueryEscape(fx.SecretP)
	for _, step := range []struct{ query, status string }{
		{"&click_id=" + click + "&txid=order-1002&amount=49.99&currency=usd", "approved"},
		{"&txid=order-1002&refund=15.00&currency=usd", "approved"},
		{"&txid=order-1002&status=refunded&sequence=3", "refunded"},
		{"&txid=order-1002&status=rejected&sequence=4", "rejected"},
	} {
		if res := api(http.MethodGet, key+step.query, ""); res.JSON["status"] != step.status {
			t.Fatalf("postback %s: %s", step.query, res.Body)
		}
	}
	env.run()
	env.ledgerOK()
}

// Concurrent deliveries of one sale's updates: each is checked and saved in its own transaction,
// so the update with the highest sequence wins whatever the interleaving.
func TestConcurrentUpdates(t *testing.T) {
	env := newEngineEnv(t)
	id := env.sale("affiliate-a", 10000, time.Now().Add(-time.Hour))
	env.run()
	ext := mustFind(t, env.app, collections.Conversions, id).GetString("external_id")
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for seq := 1; seq <= 40; seq++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := []string{"approved", "pending", "rejected"}[seq%3] // 40 % 3 = 1: pending wins
			body := fmt.Sprintf(`{"status":%q,"refunded_amount":%d,"sequence":%d}`, status, seq*10, seq)
			codes <- env.update(http.MethodPost, "api", ext, bearer(), body).Code
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Fatalf("concurrent update: %d", code)
		}
	}
	c := mustFind(t, env.app, collections.Conversions, id)
	if c.GetString("status") != "pending" || c.GetInt("sender_sequence") != 40 || c.GetInt("refunded_amount") != 400 {
		t.Fatalf("after 40 concurrent updates: %v, want pending, sequence 40, 400 refunded", c.FieldsData())
	}
	env.run()
	env.ledgerOK()
}
