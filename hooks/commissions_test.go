package hooks_test

import (
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// engineEnv is a served app with helpers to feed the commission engine.
type engineEnv struct {
	*convEnv
	n int
}

func newEngineEnv(t *testing.T) *engineEnv {
	env := &engineEnv{convEnv: newConvEnv(t)}
	// The fixture's own commissions are paid by a paid payout: keep them, they are part of the ledger.
	return env
}

// run runs the commission engine once, as the superuser.
func (e *clickEnv) run() map[string]any {
	e.t.Helper()
	res := pbatest.Request(e.handler, http.MethodPost, "/api/pba/commissions/run", fx.Superuser.Token, "")
	if res.Code != 200 {
		e.t.Fatalf("engine run: %d %v", res.Code, res.JSON)
	}
	return res.JSON
}

// ledgerOK fails the test unless the ledger check finds nothing wrong.
func (e *clickEnv) ledgerOK() {
	e.t.Helper()
	res := pbatest.Request(e.handler, http.MethodGet, "/api/pba/ledger/check", fx.Superuser.Token, "")
	if res.Code != 200 || res.JSON["ok"] != true {
		e.t.Fatalf("ledger check: %d %v", res.Code, res.JSON)
	}
}

// sale records an approved conversion for the affiliate code, occurred at `at`.
func (e *engineEnv) sale(code string, amount int, at time.Time) string {
	e.t.Helper()
	e.n++
	rec := pbatest.Request(e.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"affiliate_code":%q,"external_id":"e-%d","amount":%d,"currency":"usd","occurred_at":%q}`,
			code, e.n, amount, at.UTC().Format(time.RFC3339)))
	if rec.Code != 201 {
		e.t.Fatalf("sale: %d %s", rec.Code, rec.Body)
	}
	return rec.JSON["id"].(string)
}

// pastSale is sale, recorded at `at` as well: as the server would have recorded it had it been
// reported when it happened, so its hold (which runs from recording) has run since then.
// recordedWhenOccurred backdates every sale's recording (created) to its occurred_at, as if
// each had been recorded when it happened: sales of weeks ago are then past their hold, which
// runs from recording.
func (e *engineEnv) recordedWhenOccurred() {
	e.t.Helper()
	if _, err := e.app.DB().NewQuery("UPDATE conversions SET created = occurred_at WHERE created > occurred_at").Execute(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *engineEnv) pastSale(code string, amount int, at time.Time) string {
	e.t.Helper()
	id := e.sale(code, amount, at)
	if _, err := e.app.DB().NewQuery("UPDATE conversions SET created = {:at} WHERE id = {:id}").
		Bind(dbx.Params{"at": at.UTC().Format("2006-01-02 15:04:05.000Z"), "id": id}).Execute(); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *engineEnv) commissionOf(conversion string) *core.Record {
	e.t.Helper()
	r, err := e.app.FindFirstRecordByFilter(collections.Commissions, "conversion = {:c} && (kind = 'sale' || kind = 'recurring')",
		map[string]any{"c": conversion})
	if err != nil {
		e.t.Fatalf("commission of %s: %v", conversion, err)
	}
	return r
}

func (e *engineEnv) setConversion(id string, data map[string]any) {
	e.save(collections.Conversions, id, data)
}

// payAll simulates a payout run for one affiliate: every payable commission goes into one paid
// payout whose amount is their sum (the payouts issue builds the real run).
func (e *engineEnv) payAll(affiliate string) {
	e.t.Helper()
	// Payable and in no payout yet: those in a pending payout (a run's) are that payout's.
	payable, err := e.app.FindAllRecords(collections.Commissions, dbxEq("affiliate", affiliate), dbxEq("status", "payable"), dbxEq("payout", ""))
	if err != nil {
		e.t.Fatal(err)
	}
	var sum int64
	for _, c := range payable {
		sum += int64(c.GetInt("amount"))
	}
	if len(payable) == 0 || sum <= 0 {
		return
	}
	err = e.app.RunInTransaction(func(tx core.App) error {
		col, _ := tx.FindCollectionByNameOrId(collections.Payouts)
		p := core.NewRecord(col)
		p.Load(map[string]any{"affiliate": affiliate, "amount": sum, "currency": "usd", "method": "manual", "status": "paid", "paid_at": time.Now()})
		if err := tx.Save(p); err != nil {
			return err
		}
		// As the payout run and settleCommissions do: record saves cannot move commissions
		// into payouts (guardCommissionEdit).
		for _, c := range payable {
			_, err := tx.DB().NewQuery("UPDATE commissions SET payout = {:p}, status = 'paid' WHERE id = {:id}").
				Bind(dbx.Params{"p": p.Id, "id": c.Id}).Execute()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestCommissionLifecycle(t *testing.T) {
	env := newEngineEnv(t)
	now := time.Now().UTC()
	conv := env.sale("affiliate-a", 12345, now.Add(-time.Hour))
	env.run()
	c := env.commissionOf(conv)
	// 20% of 12345 = 2469 exactly; payable after the 30-day hold from when the sale was recorded.
	if c.GetInt("amount") != 2469 || c.GetString("status") != "pending" || c.GetString("kind") != "sale" {
		t.Fatalf("commission: %v", c.FieldsData())
	}
	recorded, _ := env.app.FindRecordById(collections.Conversions, conv)
	if want := recorded.GetDateTime("created").Time().AddDate(0, 0, 30); !c.GetDateTime("payable_at").Time().Equal(want) {
		t.Fatalf("payable_at %v, want %v", c.GetDateTime("payable_at"), want)
	}
	if !strings.Contains(c.GetString("rule"), `"source":"program"`) || !strings.Contains(c.GetString("rule"), `"amount":2469`) {
		t.Fatalf("rule snapshot: %s", c.GetString("rule"))
	}
	if out := env.run(); out["created"].(float64) != 0 {
		t.Fatalf("second run created again: %v", out)
	}
	// A sale whose hold has passed is payable on the next run.
	old := env.pastSale("affiliate-b", 1000, now.AddDate(0, 0, -31))
	env.run()
	if s := env.commissionOf(old).GetString("status"); s != "payable" {
		t.Fatalf("after the hold: %s", s)
	}
	// stats_daily carries the commission on the sale's day.
	stats, err := env.app.FindFirstRecordByFilter(collections.StatsDaily, "affiliate = {:a} && day = {:d} && link = ''",
		map[string]any{"a": fx.B.ID, "d": now.AddDate(0, 0, -31).Format(time.DateOnly)})
	if err != nil || stats.GetInt("commission") != 200 || stats.GetInt("revenue") != 1000 {
		t.Fatalf("stats: %v %v", stats, err)
	}
	env.ledgerOK()
}

func TestCommissionOverridesAndTiers(t *testing.T) {
	env := newEngineEnv(t)
	env.save(collections.Affiliates, fx.A.ID, map[string]any{"tier": fx.TierP}) // Gold: 30%
	env.save(collections.Affiliates, fx.B.ID, map[string]any{"commission_override": 5000})
	a := env.sale("affiliate-a", 1000, time.Now().Add(-time.Minute))
	b := env.sale("affiliate-b", 1000, time.Now().Add(-time.Minute))
	env.run()
	if got := env.commissionOf(a).GetInt("amount"); got != 300 {
		t.Fatalf("tier rate: %d, want 300", got)
	}
	if got := env.commissionOf(b).GetInt("amount"); got != 500 {
		t.Fatalf("override: %d, want 500", got)
	}
}

func TestRefundsReduceVoidOrClawBack(t *testing.T) {
	env := newEngineEnv(t)
	gaps := statsCommissionGaps(t, env.app)
	past := time.Now().AddDate(0, 0, -40)
	partial := env.pastSale("affiliate-a", 10000, past) // commission 2000
	full := env.pastSale("affiliate-a", 5000, past)     // commission 1000
	paid := env.pastSale("affiliate-b", 10000, past)    // commission 2000
	env.run()
	env.payAll(fx.B.ID)
	if s := env.commissionOf(paid).GetString("status"); s != "paid" {
		t.Fatalf("paid: %s", s)
	}

	env.setConversion(partial, map[string]any{"refunded_amount": 2500})
	env.setConversion(full, map[string]any{"refunded_amount": 5000, "status": "refunded"})
	env.setConversion(paid, map[string]any{"refunded_amount": 5000})
	env.run()
	env.run() // idempotent
	if c := env.commissionOf(partial); c.GetInt("amount") != 1500 || c.GetString("status") != "payable" {
		t.Fatalf("partial refund: %v", c.FieldsData())
	}
	if c := env.commissionOf(full); c.GetString("status") != "void" {
		t.Fatalf("full refund: %v", c.FieldsData())
	}
	claws, _ := env.app.FindAllRecords(collections.Commissions, dbxEq("conversion", paid), dbxEq("kind", "clawback"))
	if len(claws) != 1 || claws[0].GetInt("amount") != -1000 || claws[0].GetString("status") != "payable" {
		t.Fatalf("clawback after payout: %d rows %v", len(claws), claws)
	}
	// The rest of the refund claws back the rest, once.
	env.setConversion(paid, map[string]any{"refunded_amount": 10000, "status": "refunded"})
	env.run()
	env.run()
	claws, _ = env.app.FindAllRecords(collections.Commissions, dbxEq("conversion", paid), dbxEq("kind", "clawback"))
	if len(claws) != 2 || claws[0].GetInt("amount")+claws[1].GetInt("amount") != -2000 {
		t.Fatalf("full clawback: %v", claws)
	}
	env.ledgerOK()
	statsConsistent(t, env.app, gaps, "after refunds")
	// The dashboard's figure for the sales' day: 1500 left of A's 3000 (partial refund, void),
	// 0 net for B (2000 paid, 2000 clawed back).
	day := past.UTC().Format(time.DateOnly)
	for affiliate, want := range map[string]int{fx.A.ID: 1500, fx.B.ID: 0} {
		stats, err := env.app.FindFirstRecordByFilter(collections.StatsDaily, "affiliate = {:a} && day = {:d} && link = ''",
			map[string]any{"a": affiliate, "d": day})
		if err != nil || stats.GetInt("commission") != want {
			t.Fatalf("stats_daily commission of %s on %s: %v %v, want %d", affiliate, day, stats, err, want)
		}
	}
	// And its revenue: A's 15000 less 2500 and 5000 refunded, B's 10000 fully refunded.
	for affiliate, want := range map[string]int{fx.A.ID: 7500, fx.B.ID: 0} {
		stats, err := env.app.FindFirstRecordByFilter(collections.StatsDaily, "affiliate = {:a} && day = {:d} && link = ''",
			map[string]any{"a": affiliate, "d": day})
		if err != nil || stats.GetInt("revenue") != want {
			t.Fatalf("stats_daily revenue of %s on %s: %v %v, want %d", affiliate, day, stats, err, want)
		}
	}
}

func TestDisputeHoldsCommission(t *testing.T) {
	env := newEngineEnv(t)
	conv := env.pastSale("affiliate-a", 1000, time.Now().AddDate(0, 0, -40))
	env.setConversion(conv, map[string]any{"status": "pending", "reason": "dispute"})
	env.run()
	if _, err := env.app.FindFirstRecordByFilter(collections.Commissions, "conversion = {:c}", map[string]any{"c": conv}); err == nil {
		t.Fatal("a disputed sale earned before the dispute was resolved")
	}
	env.setConversion(conv, map[string]any{"status": "approved", "reason": ""})
	env.run()
	if s := env.commissionOf(conv).GetString("status"); s != "payable" {
		t.Fatalf("resolved dispute: %s", s)
	}
	// A dispute after the commission exists holds it in pending.
	held := env.pastSale("affiliate-a", 1000, time.Now().AddDate(0, 0, -40))
	env.run()
	env.save(collections.Commissions, env.commissionOf(held).Id, map[string]any{"status": "pending"})
	env.setConversion(held, map[string]any{"status": "pending", "reason": "dispute"})
	env.run()
	if s := env.commissionOf(held).GetString("status"); s != "pending" {
		t.Fatalf("disputed commission released: %s", s)
	}
}

func TestTierEvaluation(t *testing.T) {
	env := newEngineEnv(t)
	lastMonth := time.Now().UTC().AddDate(0, -1, 0)
	period := lastMonth.Format("2006-01")
	first := time.Date(lastMonth.Year(), lastMonth.Month(), 2, 12, 0, 0, 0, time.UTC)
	env.sale("affiliate-a", 60000, first)
	env.sale("affiliate-a", 60000, first.Add(time.Hour))                        // 120000 ≥ Gold's 100000
	env.save(collections.Affiliates, fx.B.ID, map[string]any{"tier": fx.TierP}) // B did nothing: moves down

	res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/tiers/evaluate?period="+period, fx.Superuser.Token, "")
	if res.Code != 200 || len(res.JSON["moves"].([]any)) != 2 {
		t.Fatalf("evaluate: %d %v", res.Code, res.JSON)
	}
	if a := mustFind(t, env.app, collections.Affiliates, fx.A.ID); a.GetString("tier") != fx.TierP {
		t.Fatalf("A not moved up: %q", a.GetString("tier"))
	}
	if b := mustFind(t, env.app, collections.Affiliates, fx.B.ID); b.GetString("tier") != "" {
		t.Fatalf("B not moved down: %q", b.GetString("tier"))
	}
	moves, _ := env.app.FindAllRecords("tier_changes", dbxEq("affiliate", fx.A.ID))
	if len(moves) != 1 || moves[0].GetString("to_tier") != fx.TierP || moves[0].GetString("period") != period ||
		!strings.Contains(moves[0].GetString("reason"), "2 sales") || moves[0].GetString("by") != fx.Superuser.Email {
		t.Fatalf("recorded move: %v", moves)
	}
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/tiers/evaluate?period="+period, fx.Superuser.Token, ""); res.Code != 200 || res.JSON["moves"] != nil {
		t.Fatalf("second evaluation moved again: %v", res.JSON)
	}
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/tiers/evaluate?period=last-month", fx.Superuser.Token, ""); res.Code != 400 {
		t.Fatalf("bad period: %d", res.Code)
	}
}

func TestMilestoneBonusOncePerMonth(t *testing.T) {
	env := newEngineEnv(t)
	saveRecord(t, env.app, "bonuses", map[string]any{"program": fx.ProgramP, "name": "4 sales", "min_conversions": 4, "amount": 5000, "active": true})
	now := time.Now().UTC().Add(-time.Minute)
	for i := 0; i < 2; i++ { // with the fixture's sale of today: 3 this month
		env.sale("affiliate-a", 1000, now)
	}
	env.run()
	if n, _ := env.app.CountRecords(collections.Commissions, dbxEq("kind", "bonus")); n != 0 {
		t.Fatal("bonus before the milestone")
	}
	for i := 0; i < 3; i++ {
		env.sale("affiliate-a", 1000, now)
		env.run()
	}
	bonuses, _ := env.app.FindAllRecords(collections.Commissions, dbxEq("kind", "bonus"))
	if len(bonuses) != 1 || bonuses[0].GetInt("amount") != 5000 || bonuses[0].GetString("affiliate") != fx.A.ID {
		t.Fatalf("bonus: %v", bonuses)
	}
	env.ledgerOK()
}

func TestAdjustments(t *testing.T) {
	env := newEngineEnv(t)
	post := func(body string) *pbatest.Response {
		return pbatest.Request(env.handler, http.MethodPost, "/api/collections/commissions/records", fx.Superuser.Token, body)
	}
	base := fmt.Sprintf(`"affiliate":%q,"program":%q,"kind":"adjustment","amount":-700`, fx.A.ID, fx.ProgramP)
	if rec := post("{" + base + "}"); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"note"`) {
		t.Fatalf("adjustment without a reason: %d %s", rec.Code, rec.Body)
	}
	if rec := post("{" + base + `,"note":"duplicate order 1001","currency":"eur"}`); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"currency"`) {
		t.Fatalf("adjustment in another currency: %d %s", rec.Code, rec.Body)
	}
	rec := post("{" + base + `,"note":"duplicate order 1001"}`)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"status":"payable"`) || !strings.Contains(rec.Body.String(), `"currency":"usd"`) {
		t.Fatalf("adjustment: %d %s", rec.Code, rec.Body)
	}
	env.ledgerOK()
}

// TestEngineRunsDoNotOverlapOrDouble runs the engine from several goroutines at once.
func TestEngineRunsDoNotOverlapOrDouble(t *testing.T) {
	env := newEngineEnv(t)
	for i := 0; i < 30; i++ {
		env.sale("affiliate-a", 1000+i, time.Now().Add(-time.Minute))
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); env.run() }()
	}
	wg.Wait()
	env.run()
	n, _ := env.app.CountRecords(collections.Commissions, dbxEq("kind", "sale"))
	if n != 30+2 { // plus the fixture's two
		t.Fatalf("%d sale commissions, want 32", n)
	}
	env.ledgerOK()
}

// TestEngineFailureMidBatchLeavesNothing: a conversion the engine cannot price (its program
// is gone) sits in the middle of a batch; the batch rolls back whole, and once fixed, a rerun
// creates every commission exactly once.
func TestEngineFailureMidBatchLeavesNothing(t *testing.T) {
	env := newEngineEnv(t)
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, env.sale("affiliate-a", 1000, time.Now().Add(-time.Duration(20-i)*time.Minute)))
	}
	if _, err := env.app.DB().NewQuery("UPDATE conversions SET program = 'missing00000000' WHERE id = {:id}").
		Bind(map[string]any{"id": ids[5]}).Execute(); err != nil {
		t.Fatal(err)
	}
	if code := pbatest.Request(env.handler, http.MethodPost, "/api/pba/commissions/run", fx.Superuser.Token, "").Code; code != 500 {
		t.Fatalf("run with a broken conversion: %d, want 500", code)
	}
	if n, _ := env.app.CountRecords(collections.Commissions, dbxEq("kind", "sale")); n != 2 {
		t.Fatalf("a failed batch left %d sale commissions (want only the fixture's 2)", n-2)
	}
	env.app.DB().NewQuery("UPDATE conversions SET program = {:p} WHERE id = {:id}").Bind(map[string]any{"p": fx.ProgramP, "id": ids[5]}).Execute()
	env.run()
	env.run()
	if n, _ := env.app.CountRecords(collections.Commissions, dbxEq("kind", "sale")); n != 12 {
		t.Fatalf("%d sale commissions after the fix, want 12", n)
	}
	env.ledgerOK()
}

func TestLedgerCheckIsForSuperusers(t *testing.T) {
	env := newEngineEnv(t)
	if code := pbatest.Request(env.handler, http.MethodGet, "/api/pba/ledger/check", fx.A.Token, "").Code; code != 403 && code != 401 {
		t.Fatalf("affiliate: %d", code)
	}
	// A broken invariant is reported.
	env.app.DB().NewQuery("UPDATE payouts SET amount = amount + 1 WHERE id = {:id}").Bind(map[string]any{"id": fx.RowsA.Payout}).Execute()
	res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/ledger/check", fx.Superuser.Token, "")
	if res.Code != 200 || res.JSON["ok"] != false || !strings.Contains(fmt.Sprint(res.JSON["problems"]), fx.RowsA.Payout) {
		t.Fatalf("broken ledger not reported: %v", res.JSON)
	}
}

// TestLedgerProperty replays random sequences of sales, refunds, partial refunds, disputes,
// payouts, adjustments, admins' rejections and engine runs, and merchants' updates of their
// sales (API and postback, with and without a sequence, partial refunds, reordered and replayed
// deliveries, a dashboard's status refunded), checking the ledger invariant after every step.
func TestLedgerProperty(t *testing.T) {
	steps := 10000
	if testing.Short() || raceEnabled {
		// make test also runs the full 10,000 steps without the race detector; under it the
		// steps are ~10x slower and the hooks package is CI's long pole.
		steps = 400
	}
	env := newEngineEnv(t)
	env.save(collections.Programs, fx.ProgramP, map[string]any{"hold_days": 0})
	// The merchant sends thousands of updates from one server: its address is excluded from
	// the rate limits, as docs/operations.md advises for bulk senders.
	settings := env.app.Settings()
	settings.RateLimits.ExcludedIPs = []string{pbatest.ClientIP}
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	rng := rand.New(rand.NewSource(42))
	type sale struct {
		id, source, ext string
		seq             int64 // the sender's last sequence (a step may send an older one)
	}
	var sales []*sale
	var sent []func() *pbatest.Response // merchant updates sent, replayed later
	refunded := map[string]int{}        // the largest refunded_amount seen per sale: it never decreases
	statuses := []string{"approved", "pending", "rejected", "refunded"}
	affiliates := []string{"affiliate-a", "affiliate-b"}
	ids := map[string]string{"affiliate-a": fx.A.ID, "affiliate-b": fx.B.ID}
	postbackKey := "key=" + url.QueryEscape(fx.SecretP)
	// merchant sends an update of s through its door (the postback for postback sales, the API
	// update form for the API's) and keeps it for a replay.
	merchant := func(s *sale, status string, refund int, seq int64) {
		var send func() *pbatest.Response
		if s.source == "postback" {
			q := postbackKey + "&txid=" + s.ext
			if status != "" {
				q += "&status=" + status
			}
			if refund >= 0 {
				q += fmt.Sprintf("&currency=usd&refund=%d.%02d", refund/100, refund%100)
			}
			if seq > 0 {
				q += fmt.Sprintf("&sequence=%d", seq)
			}
			send = func() *pbatest.Response { return pbatest.Request(env.handler, http.MethodGet, postbackAPI+q, "", "") }
		} else {
			fields := []string{}
			if status != "" {
				fields = append(fields, fmt.Sprintf(`"status":%q`, status))
			}
			if refund >= 0 {
				fields = append(fields, fmt.Sprintf(`"refunded_amount":%d`, refund))
			}
			if seq > 0 {
				fields = append(fields, fmt.Sprintf(`"sequence":%d`, seq))
			}
			body := "{" + strings.Join(fields, ",") + "}"
			send = func() *pbatest.Response {
				return pbatest.Request(env.handler, http.MethodPost, updatesAPI(s.source, s.ext), bearer(), body)
			}
		}
		if res := send(); res.Code != 200 {
			t.Fatalf("merchant update of %s: %d %s", s.id, res.Code, res.Body)
		}
		sent = append(sent, send)
	}
	dashboardPayouts := map[string]int{}
	for step := 0; step < steps; step++ {
		op := rng.Intn(16)
		var touched string
		switch {
		case op < 3 || len(sales) == 0: // sale, through the API or the postback
			s := &sale{source: "api"}
			aff, amount, at := affiliates[rng.Intn(2)], 100+rng.Intn(100000), time.Now().Add(-time.Hour)
			if rng.Intn(2) == 0 {
				s.id = env.sale(aff, amount, at)
				s.ext = fmt.Sprintf("e-%d", env.n)
			} else {
				env.n++
				s.source, s.ext = "postback", fmt.Sprintf("p-%d", env.n)
				res := pbatest.Request(env.handler, http.MethodGet, postbackAPI+postbackKey+fmt.Sprintf("&affiliate_code=%s&txid=%s&amount=%d.%02d&currency=usd&occurred_at=%s",
					aff, s.ext, amount/100, amount%100, at.UTC().Format(time.RFC3339)), "", "")
				if res.Code != 201 {
					t.Fatalf("postback sale: %d %s", res.Code, res.Body)
				}
				s.id = res.JSON["id"].(string)
			}
			sales = append(sales, s)
		case op == 3: // partial refund
			c := mustFind(t, env.app, collections.Conversions, sales[rng.Intn(len(sales))].id)
			if left := c.GetInt("amount") - c.GetInt("refunded_amount"); left > 1 && c.GetString("status") == "approved" {
				env.setConversion(c.Id, map[string]any{"refunded_amount": c.GetInt("refunded_amount") + 1 + rng.Intn(left-1)})
			}
			touched = c.Id
		case op == 4: // full refund
			c := mustFind(t, env.app, collections.Conversions, sales[rng.Intn(len(sales))].id)
			env.setConversion(c.Id, map[string]any{"refunded_amount": c.GetInt("amount"), "status": "refunded"})
			touched = c.Id
		case op == 5: // dispute opened or resolved
			c := mustFind(t, env.app, collections.Conversions, sales[rng.Intn(len(sales))].id)
			switch c.GetString("status") {
			case "approved":
				env.setConversion(c.Id, map[string]any{"status": "pending", "reason": "dispute"})
			case "pending":
				env.setConversion(c.Id, map[string]any{"status": "approved", "reason": ""})
			}
		case op == 6: // payout
			env.payAll(ids[affiliates[rng.Intn(2)]])
		case op == 8: // an admin rejects a sale, or approves a rejected one again
			c := mustFind(t, env.app, collections.Conversions, sales[rng.Intn(len(sales))].id)
			switch c.GetString("status") {
			case "approved", "pending", "refunded":
				env.setConversion(c.Id, map[string]any{"status": "rejected"})
			case "rejected":
				env.setConversion(c.Id, map[string]any{"status": "approved", "reason": ""})
			}
		case op == 7: // adjustment
			saveRecord(t, env.app, collections.Commissions, map[string]any{"affiliate": ids[affiliates[rng.Intn(2)]], "program": fx.ProgramP,
				"kind": "adjustment", "amount": nonZero(rng.Intn(2001) - 1000), "note": fmt.Sprintf("step %d", step)})
		case op == 9: // the merchant changes the status with a sequence, sometimes an older or the same one
			s := sales[rng.Intn(len(sales))]
			s.seq += int64(rng.Intn(3))
			merchant(s, statuses[rng.Intn(4)], -1, max(1, s.seq-int64(rng.Intn(2))))
			touched = s.id
		case op == 10: // the merchant changes the status without an order key
			s := sales[rng.Intn(len(sales))]
			merchant(s, statuses[rng.Intn(4)], -1, 0)
			touched = s.id
		case op == 11: // a partial refund by the merchant (cumulative; sometimes smaller: stale)
			s := sales[rng.Intn(len(sales))]
			c := mustFind(t, env.app, collections.Conversions, s.id)
			amount, now := c.GetInt("amount"), c.GetInt("refunded_amount")
			refund := now + rng.Intn(amount-now+1)/2
			if rng.Intn(4) == 0 {
				refund = rng.Intn(now + 1)
			}
			merchant(s, "", refund, 0)
			touched = s.id
		case op == 12 && len(sent) > 0: // a late or repeated delivery of an earlier update
			if res := sent[max(0, len(sent)-1-rng.Intn(20))](); res.Code != 200 {
				t.Fatalf("replayed update: %d %s", res.Code, res.Body)
			}
		case op == 14: // a payout run, then the dashboard marks each new manual payout paid (with a reference) or cancels it
			res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "")
			if res.Code != 200 {
				t.Fatalf("payout run: %d %s", res.Code, res.Body)
			}
			for _, line := range payoutLines(res.JSON) {
				payout, _ := line["payout"].(string)
				if payout == "" {
					continue
				}
				body := `{"status":"canceled"}`
				if rng.Intn(2) == 0 {
					body = fmt.Sprintf(`{"status":"paid","reference":"step-%d"}`, step)
				}
				dashboardPayouts[body[11:15]]++ // "canc" or "paid"
				if res := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+payout, fx.Superuser.Token, body); res.Code != 200 {
					t.Fatalf("dashboard payout %s: %d %s", body, res.Code, res.Body)
				}
			}
		case op == 13: // an admin sets status refunded in the dashboard
			s := sales[rng.Intn(len(sales))]
			if res := pbatest.Request(env.handler, http.MethodPatch, conversionRecords+s.id, fx.Superuser.Token, `{"status":"refunded"}`); res.Code != 200 {
				t.Fatalf("dashboard status refunded: %d %s", res.Code, res.Body)
			}
			touched = s.id
		default:
			env.run()
		}
		if touched != "" {
			c := mustFind(t, env.app, collections.Conversions, touched)
			if got := c.GetInt("refunded_amount"); got < refunded[touched] {
				t.Fatalf("step %d: refunded_amount of %s went down from %d to %d", step, touched, refunded[touched], got)
			}
			refunded[touched] = c.GetInt("refunded_amount")
		}
		if step%50 == 0 || step == steps-1 {
			env.ledgerOK()
			rollupsConsistent(t, env.app, gaps, saleGaps, fmt.Sprintf("step %d", step))
			historyConsistent(t, env.app, step)
		} else {
			checkLedgerQuick(t, env.app, step)
		}
	}
	if dashboardPayouts["paid"] == 0 || dashboardPayouts["canc"] == 0 {
		t.Fatalf("the dashboard marked payouts paid %d times and canceled %d: the steps never ran", dashboardPayouts["paid"], dashboardPayouts["canc"])
	}
	t.Logf("dashboard payouts: %d paid, %d canceled", dashboardPayouts["paid"], dashboardPayouts["canc"])
}

// historyConsistent fails unless every sale's history is a chain of its changes: each row starts
// where the one before ended, and the last ends where the sale is.
func historyConsistent(t *testing.T, app core.App, step int) {
	t.Helper()
	var broken, stale int
	err := app.DB().NewQuery(`SELECT COUNT(*) FROM (SELECT status_before, refunded_before,
			LAG(status_after) OVER w AS s, LAG(refunded_after) OVER w AS r
			FROM conversion_events WINDOW w AS (PARTITION BY conversion ORDER BY rowid))
		WHERE s IS NOT NULL AND (s != status_before OR r != refunded_before)`).Row(&broken)
	if err == nil {
		err = app.DB().NewQuery(`SELECT COUNT(*) FROM conversions v JOIN (SELECT conversion, status_after, refunded_after,
				ROW_NUMBER() OVER (PARTITION BY conversion ORDER BY rowid DESC) AS n FROM conversion_events) e ON e.conversion = v.id AND e.n = 1
			WHERE e.status_after != v.status OR e.refunded_after != v.refunded_amount`).Row(&stale)
	}
	if err != nil || broken != 0 || stale != 0 {
		t.Fatalf("step %d: sale history: %d rows not starting where the last ended, %d sales not where their history ends (%v)", step, broken, stale, err)
	}
}

// checkLedgerQuick is the invariant's core without the HTTP round trip, for every step.
func checkLedgerQuick(t *testing.T, app core.App, step int) {
	t.Helper()
	var bad int
	err := app.DB().NewQuery(`SELECT
		(SELECT COUNT(*) FROM commissions c LEFT JOIN payouts p ON p.id = c.payout WHERE c.status = 'paid' AND (p.id IS NULL OR p.status != 'paid')) +
		(SELECT COUNT(*) FROM payouts p WHERE p.status = 'paid' AND p.amount != (SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE payout = p.id AND status != 'void')) +
		(SELECT COUNT(*) FROM commissions WHERE status != 'void' AND ((kind IN ('sale','recurring','bonus') AND amount <= 0) OR (kind = 'clawback' AND amount >= 0))) +
		(SELECT COUNT(*) FROM conversions WHERE refunded_amount > amount OR (status = 'refunded' AND refunded_amount != amount) OR
			(status IN ('approved', 'pending') AND amount > 0 AND refunded_amount >= amount))`).Row(&bad)
	if err != nil || bad != 0 {
		t.Fatalf("step %d: ledger broken (%d problems, %v)", step, bad, err)
	}
}

// statsCommissionGaps is store.CommissionGaps: the engine must never change it, so tests
// compare it before and after (the fixture's own rows need not start at zero).
func statsCommissionGaps(t *testing.T, app core.App) map[string]int64 {
	t.Helper()
	gaps, err := store.CommissionGaps(app)
	if err != nil {
		t.Fatal(err)
	}
	return gaps
}

// statsConsistent fails when stats_daily's commission drifted from the commissions since before.
func statsConsistent(t *testing.T, app core.App, before map[string]int64, when string) {
	t.Helper()
	after := statsCommissionGaps(t, app)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("%s: stats_daily.commission drifted from the commissions:\nbefore %v\nafter  %v", when, before, after)
	}
}

// statsSaleGaps is store.SaleGaps as text: edits must never change it (the fixture's own
// rows need not start at zero).
func statsSaleGaps(t *testing.T, app core.App) string {
	t.Helper()
	gaps, err := store.SaleGaps(app)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(gaps)
}

// rollupsConsistent fails when stats_daily drifted from the facts since gaps and saleGaps
// were taken: its commission from the commissions, its conversions and revenue from the sales.
func rollupsConsistent(t *testing.T, app core.App, gaps map[string]int64, saleGaps, when string) {
	t.Helper()
	statsConsistent(t, app, gaps, when)
	if g := statsSaleGaps(t, app); g != saleGaps {
		t.Fatalf("%s: stats_daily conversions/revenue drifted from the sales:\nbefore %s\nafter  %s", when, saleGaps, g)
	}
	derivedRollupsConsistent(t, app, rand.New(rand.NewSource(int64(len(when)))), when)
}

func dbxEq(field string, value any) dbx.HashExp { return dbx.HashExp{field: value} }

func nonZero(n int) int {
	if n == 0 {
		return 1
	}
	return n
}

// A sale an admin rejected and later approves earns its commission on the next run.
func TestRejectedThenApprovedEarns(t *testing.T) {
	env := newEngineEnv(t)
	conv := env.sale("affiliate-a", 10000, time.Now().UTC().Add(-time.Hour))
	env.setConversion(conv, map[string]any{"status": "rejected"})
	env.run()
	if n, _ := env.app.CountRecords(collections.Commissions, dbxEq("conversion", conv)); n != 0 {
		t.Fatalf("rejected sale earned %d commissions", n)
	}
	env.setConversion(conv, map[string]any{"status": "approved"})
	env.run()
	env.run()
	if c := env.commissionOf(conv); c.GetInt("amount") != 2000 {
		t.Fatalf("approved sale's commission %d, want 2000", c.GetInt("amount"))
	}
	if n, _ := env.app.CountRecords(collections.Commissions, dbxEq("conversion", conv)); n != 1 {
		t.Fatalf("%d commissions, want 1", n)
	}
	env.ledgerOK()
}

// No edit of a commission unbalances the ledger: what a payout holds keeps its payout, status
// and amount, a form loaded before a payout run cannot undo it, and payouts holding
// commissions cannot be deleted.
func TestCommissionEditsGuarded(t *testing.T) {
	env := newEngineEnv(t)
	past := time.Now().AddDate(0, 0, -40)
	paidSale := env.pastSale("affiliate-b", 10000, past)
	env.run()
	env.payAll(fx.B.ID)
	unpaidSale, otherSale := env.pastSale("affiliate-a", 10000, past), env.pastSale("affiliate-a", 5000, past)
	env.run()
	paid, unpaid, other := env.commissionOf(paidSale), env.commissionOf(unpaidSale), env.commissionOf(otherSale)
	patch := func(c *core.Record, body string) (int, map[string]any) {
		res := pbatest.Request(env.handler, http.MethodPatch, "/api/collections/commissions/records/"+c.Id, fx.Superuser.Token, body)
		return res.Code, res.JSON
	}
	for body, field := range map[string]string{`{"payout":""}`: "payout", `{"status":"payable"}`: "status", `{"amount":1}`: "amount",
		`{"kind":"bonus"}`: "kind", fmt.Sprintf(`{"affiliate":%q}`, fx.A.ID): "affiliate"} {
		code, out := patch(paid, body)
		if data, _ := out["data"].(map[string]any); code != 400 || data[field] == nil {
			t.Fatalf("paid commission %s: %d %v, want 400 naming %s", body, code, out, field)
		}
	}
	if code, out := patch(paid, `{"note":"checked by finance"}`); code != 200 {
		t.Fatalf("note on a paid commission: %d %v", code, out)
	}
	if code, out := patch(unpaid, `{"status":"paid"}`); code != 400 {
		t.Fatalf("unpaid commission marked paid: %d %v", code, out)
	}
	if code, out := patch(unpaid, `{"amount":1500}`); code != 200 {
		t.Fatalf("amount of an unpaid commission: %d %v", code, out)
	}
	if code, out := patch(unpaid, `{"status":"void"}`); code != 200 {
		t.Fatalf("void an unpaid commission: %d %v", code, out)
	}

	// A payout run takes the other commission while an admin has it open.
	stale := mustFind(t, env.app, collections.Commissions, other.Id)
	env.payAll(fx.A.ID)
	stale.Set("note", "from a form opened before the run")
	if err := env.app.Save(stale); err == nil {
		t.Fatal("a stale commission undid the payout run")
	}
	if c := mustFind(t, env.app, collections.Commissions, other.Id); c.GetString("status") != "paid" || c.GetString("payout") == "" {
		t.Fatalf("commission after the stale save: %v", c.FieldsData())
	}
	env.ledgerOK()

	// A paid payout cannot be deleted; a canceled one can.
	paidPayout := mustFind(t, env.app, collections.Commissions, other.Id).GetString("payout")
	if res := pbatest.Request(env.handler, http.MethodDelete, "/api/collections/payouts/records/"+paidPayout, fx.Superuser.Token, ""); res.Code != 400 {
		t.Fatalf("delete a paid payout: %d %v", res.Code, res.JSON)
	}
	canceled := saveRecord(t, env.app, collections.Payouts, map[string]any{"affiliate": fx.A.ID, "amount": 100, "currency": "usd",
		"method": "manual", "status": "canceled"})
	if res := pbatest.Request(env.handler, http.MethodDelete, "/api/collections/payouts/records/"+canceled.Id, fx.Superuser.Token, ""); res.Code != 204 {
		t.Fatalf("delete a canceled payout: %d %v", res.Code, res.JSON)
	}
	env.ledgerOK()
}

// derivedRollupsConsistent fails when a rollup derived from stats_daily disagrees with it:
// the hourly rollup per (program, day) on every figure and with the program's currency, the
// dims per (program, day) on clicks (country, referrer) and per (program, affiliate, day)
// (sub), and the leaderboard's board per (program, affiliate) over the whole history and
// over random ranges.
func derivedRollupsConsistent(t *testing.T, app core.App, rng *rand.Rand, when string) {
	t.Helper()
	mismatches, err := store.DerivedRollupMismatches(app)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if len(mismatches) > 0 {
		t.Fatalf("%s: rollups differ from stats_daily: %v", when, mismatches)
	}

	// The board against stats_daily: the whole history, then random ranges.
	var bounds struct {
		First string `db:"first"`
		Last  string `db:"last"`
	}
	if err := app.DB().NewQuery("SELECT COALESCE(MIN(day), '') AS first, COALESCE(MAX(day), '') AS last FROM stats_daily").One(&bounds); err != nil {
		t.Fatal(err)
	}
	if bounds.First == "" {
		return
	}
	first, _ := time.Parse(time.DateOnly, bounds.First)
	last, _ := time.Parse(time.DateOnly, bounds.Last)
	span := int(last.Sub(first).Hours()/24) + 1
	ranges := [][2]string{{bounds.First, bounds.Last}}
	for range 3 {
		f := first.AddDate(0, 0, rng.Intn(span+2)-1)
		ranges = append(ranges, [2]string{f.Format(time.DateOnly), f.AddDate(0, 0, rng.Intn(span+1)).Format(time.DateOnly)})
	}
	// The board learns of a write when its transaction has committed (OnComplete), so a write
	// committing meanwhile (the engine's cron in the background) can be in stats_daily and not
	// yet on the board: a difference must last to count.
	boardDiff := func() string {
		for _, r := range ranges {
			var rows []struct {
				Program   string `db:"program"`
				Affiliate string `db:"affiliate"`
				C         int64  `db:"c"`
				U         int64  `db:"u"`
				N         int64  `db:"n"`
				R         int64  `db:"r"`
				M         int64  `db:"m"`
			}
			err := app.DB().NewQuery(`SELECT program, affiliate, SUM(clicks) c, SUM(unique_clicks) u, SUM(conversions) n, SUM(revenue) r,
			SUM(commission) m FROM stats_daily WHERE day >= {:f} AND day <= {:t} GROUP BY program, affiliate`).
				Bind(dbx.Params{"f": r[0], "t": r[1]}).All(&rows)
			if err != nil {
				t.Fatal(err)
			}
			keys := make([]store.BoardKey, len(rows))
			for i, row := range rows {
				keys[i] = store.BoardKey{Program: row.Program, Affiliate: row.Affiliate}
			}
			sums, err := store.BoardSums(app, keys, r[0], r[1])
			if err != nil {
				t.Fatal(err)
			}
			for i, row := range rows {
				want := store.BoardCounters{Clicks: row.C, Unique: row.U, Conversions: row.N, Revenue: row.R, Commission: row.M}
				if got := sums[keys[i]]; got != want {
					return fmt.Sprintf("%s: board %v over %s..%s = %+v, stats_daily %+v", when, keys[i], r[0], r[1], got, want)
				}
			}
		}
		return ""
	}
	diff := boardDiff()
	for try := 0; diff != "" && try < 20; try++ {
		time.Sleep(100 * time.Millisecond)
		diff = boardDiff()
	}
	if diff != "" {
		t.Fatal(diff)
	}
}
