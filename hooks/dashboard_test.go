package hooks_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// The paths an admin takes in the PocketBase dashboard that move money or mail, driven as the
// dashboard drives them: the records API as a superuser. Each checks the money, the ledger
// and the mail that must (or must not) follow, once.

// mailsTo counts the deliveries of a template queued for an affiliate.
func mailsTo(t *testing.T, env *engineEnv, affiliate, template string) int {
	t.Helper()
	var n int
	err := env.app.DB().Select("COUNT(*)").From(collections.Deliveries).
		Where(dbx.HashExp{collections.FieldAffiliate: affiliate, collections.DeliveryTemplate: template}).Row(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pendingManualPayout gives affiliate A a pending manual payout of 6000 through a payout run.
func pendingManualPayout(t *testing.T, env *engineEnv) string {
	t.Helper()
	env.save(collections.Programs, fx.ProgramP, map[string]any{"hold_days": 0})
	env.sale("affiliate-a", 30000, time.Now().Add(-time.Hour))
	env.run()
	res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "")
	id, _ := payoutLines(res.JSON)[fx.A.ID]["payout"].(string)
	if res.Code != 200 || id == "" {
		t.Fatalf("payout run: %d %v", res.Code, res.JSON)
	}
	return id
}

func (e *engineEnv) patch(path, body string, want int) {
	e.t.Helper()
	if res := pbatest.Request(e.handler, http.MethodPatch, path, fx.Superuser.Token, body); res.Code != want {
		e.t.Fatalf("PATCH %s %s: %d %s, want %d", path, body, res.Code, res.Body, want)
	}
}

func commissionStatuses(t *testing.T, env *engineEnv, payout string) map[string]int {
	t.Helper()
	out := map[string]int{}
	rows, err := env.app.FindAllRecords(collections.Commissions, dbx.HashExp{"payout": payout})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		out[r.GetString(collections.FieldStatus)]++
	}
	return out
}

// A manual payout marked paid in the dashboard pays its commissions and queues the "payout
// sent" mail exactly once (it used to be lost: the after-success hook wrote through the
// payout save's finished transaction).
func TestDashboardPayoutPaid(t *testing.T) {
	env := newEngineEnv(t)
	payout := pendingManualPayout(t, env)
	if n := mailsTo(t, env, fx.A.ID, "payout_sent"); n != 0 {
		t.Fatalf("payout_sent mails before it was paid: %d", n)
	}
	env.patch(payoutRecords+payout, `{"status":"paid","reference":"PAYPAL-42"}`, 200)
	if got := commissionStatuses(t, env, payout); got["paid"] == 0 || len(got) != 1 {
		t.Fatalf("commissions of the paid payout: %v", got)
	}
	if n := mailsTo(t, env, fx.A.ID, "payout_sent"); n != 1 {
		t.Fatalf("payout_sent mails: %d, want 1", n)
	}
	// Saving the paid payout again (a note) and another run queue nothing more.
	env.patch(payoutRecords+payout, `{"reference":"PAYPAL-42"}`, 200)
	pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "")
	if n := mailsTo(t, env, fx.A.ID, "payout_sent"); n != 1 {
		t.Fatalf("payout_sent mails after a resave and a run: %d, want 1", n)
	}
	env.ledgerOK()
}

// Canceling a pending payout in the dashboard returns its commissions to the pool, sends no
// mail, and the next run pays them in a new payout.
func TestDashboardPayoutCanceled(t *testing.T) {
	env := newEngineEnv(t)
	payout := pendingManualPayout(t, env)
	env.patch(payoutRecords+payout, `{"status":"canceled"}`, 200)
	if got := commissionStatuses(t, env, payout); len(got) != 0 {
		t.Fatalf("a canceled payout kept commissions: %v", got)
	}
	if n := mailsTo(t, env, fx.A.ID, "payout_sent") + mailsTo(t, env, fx.A.ID, "payout_failed"); n != 0 {
		t.Fatalf("payout mails after a cancel: %d", n)
	}
	env.ledgerOK()
	res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "")
	if again, _ := payoutLines(res.JSON)[fx.A.ID]["payout"].(string); again == "" || again == payout {
		t.Fatalf("the next run did not pay the canceled commissions again: %v", res.JSON)
	}
	env.ledgerOK()
}

// A manual payout marked failed in the dashboard (the bank bounced it) returns its
// commissions to the pool and queues the "payout failed" mail exactly once.
func TestDashboardPayoutFailed(t *testing.T) {
	env := newEngineEnv(t)
	payout := pendingManualPayout(t, env)
	env.patch(payoutRecords+payout, `{"status":"failed","error":"account closed"}`, 200)
	if got := commissionStatuses(t, env, payout); len(got) != 0 {
		t.Fatalf("a failed payout kept commissions: %v", got)
	}
	if n := mailsTo(t, env, fx.A.ID, "payout_failed"); n != 1 {
		t.Fatalf("payout_failed mails: %d, want 1", n)
	}
	env.patch(payoutRecords+payout, `{"error":"account closed (confirmed)"}`, 200)
	if n := mailsTo(t, env, fx.A.ID, "payout_failed"); n != 1 {
		t.Fatalf("payout_failed mails after a resave: %d, want 1", n)
	}
	env.ledgerOK()
}

// Approving and rejecting applications in the dashboard mail the applicant once each;
// suspending an approved affiliate mails nothing and keeps its money out of the next run.
func TestDashboardAffiliateDecisions(t *testing.T) {
	env := newEngineEnv(t)
	env.patch("/api/collections/affiliates/records/"+fx.Pending.ID, `{"status":"approved"}`, 200)
	env.patch("/api/collections/affiliates/records/"+fx.Pending.ID, `{"name":"Still approved"}`, 200)
	if n := mailsTo(t, env, fx.Pending.ID, "approved"); n != 1 {
		t.Fatalf("approved mails: %d, want 1", n)
	}
	env.patch("/api/collections/affiliates/records/"+fx.Pending.ID, `{"status":"rejected"}`, 200)
	if n := mailsTo(t, env, fx.Pending.ID, "rejected"); n != 1 {
		t.Fatalf("rejected mails: %d, want 1", n)
	}

	env.save(collections.Programs, fx.ProgramP, map[string]any{"hold_days": 0})
	env.sale("affiliate-b", 30000, time.Now().Add(-time.Hour))
	env.run()
	// The status and payout mails (the new-commission mail of B's sale is queued by the mail
	// worker at its own pace, so it is not counted here).
	mails := func() (n int) {
		t.Helper()
		for _, template := range []string{"approved", "rejected", "payout_sent", "payout_failed"} {
			n += mailsTo(t, env, fx.B.ID, template)
		}
		return n
	}
	before := mails()
	env.patch("/api/collections/affiliates/records/"+fx.B.ID, `{"status":"suspended"}`, 200)
	res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "")
	if line := payoutLines(res.JSON)[fx.B.ID]; line == nil || line["action"] != "skip" || line["payout"] != nil {
		t.Fatalf("a suspended affiliate's run line: %v", line)
	}
	if after := mails(); after != before {
		t.Fatalf("mails to B: %d after suspension and a run, %d before", after, before)
	}
	env.ledgerOK()
}

// A sale a superuser creates in the dashboard (records API) counts in stats_daily like one
// from the API, its commission follows, and the rollups still equal the facts.
func TestDashboardCreatedSale(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	at := time.Now().UTC().Add(-time.Hour)
	day := at.Format(time.DateOnly)
	var before struct {
		Conversions int64 `db:"c"`
		Revenue     int64 `db:"r"`
	}
	read := func() (c, r int64) {
		t.Helper()
		if err := env.app.DB().NewQuery("SELECT IFNULL(SUM(conversions), 0) AS c, IFNULL(SUM(revenue), 0) AS r FROM stats_daily WHERE affiliate = {:a} AND day = {:d}").
			Bind(dbx.Params{"a": fx.A.ID, "d": day}).One(&before); err != nil {
			t.Fatal(err)
		}
		return before.Conversions, before.Revenue
	}
	c0, r0 := read()
	res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/conversions/records", fx.Superuser.Token,
		`{"affiliate":"`+fx.A.ID+`","program":"`+fx.ProgramP+`","source":"manual","external_id":"phone-order-1","amount":12000,"currency":"usd","status":"approved","occurred_at":"`+at.Format("2006-01-02 15:04:05.000Z")+`"}`)
	if res.Code != 200 {
		t.Fatalf("dashboard create: %d %s", res.Code, res.Body)
	}
	if c, r := read(); c != c0+1 || r != r0+12000 {
		t.Fatalf("stats_daily of the day: %d conversions, %d revenue; want %d, %d", c, r, c0+1, r0+12000)
	}
	env.run()
	if c := env.commissionOf(res.JSON["id"].(string)); c.GetInt("amount") != 2400 {
		t.Fatalf("commission of the dashboard's sale: %v", c.FieldsData())
	}
	rollupsConsistent(t, env.app, gaps, saleGaps, "after a dashboard sale")
	env.ledgerOK()
}
