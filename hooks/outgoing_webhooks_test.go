package hooks_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// event is one webhook as a receiver got it, verified.
type event struct {
	id, typ   string
	status    int // what the receiver answered
	timestamp int64
	data      map[string]any
}

// verifiedEvents checks every request recv got against secret with the Standard Webhooks
// library (the spec's own) and decodes them, in arrival order.
func verifiedEvents(t *testing.T, recv *hookReceiver, secret string) []event {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	var out []event
	for i, r := range recv.requests() {
		// The timestamps follow the test's clock, days ahead of the library's: the tolerance is
		// checked against the clock below instead.
		if err := wh.VerifyIgnoringTimestamp(r.body, r.header); err != nil {
			t.Fatalf("request %d (%s) does not verify: %v", i, r.body, err)
		}
		var body struct {
			Type      string         `json:"type"`
			Timestamp string         `json:"timestamp"`
			Data      map[string]any `json:"data"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil || body.Type == "" || body.Data == nil {
			t.Fatalf("request %d body %s: %v", i, r.body, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, body.Timestamp); err != nil {
			t.Fatalf("request %d timestamp %q: %v", i, body.Timestamp, err)
		}
		ts, _ := strconv.ParseInt(r.header.Get("webhook-timestamp"), 10, 64)
		out = append(out, event{id: r.header.Get("webhook-id"), typ: body.Type, status: recv.statusOf(i), timestamp: ts, data: body.Data})
	}
	return out
}

// statusOf is what the receiver answered to its i-th request.
func (r *hookReceiver) statusOf(i int) int {
	if len(r.statuses) == 0 {
		return http.StatusOK
	}
	return r.statuses[min(i+1, len(r.statuses))-1]
}

// drain runs the sender until nothing is pending, moving the clock past every backoff.
func drain(t *testing.T, app core.App, s *hooks.WebhookSenderForTest, clock *pbatest.Clock) {
	t.Helper()
	for range 40 {
		runSender(t, s)
		var pending int
		if err := app.DB().NewQuery("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' AND webhook != ''").Row(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		clock.Advance(hooks.WebhookBackoffMaxForTest * 2)
	}
	t.Fatal("deliveries still pending after 40 runs")
}

// mustStatus fails the test unless res has the status.
func mustStatus(t *testing.T, what string, res *pbatest.Response, status int) *pbatest.Response {
	t.Helper()
	if res.Code != status {
		t.Fatalf("%s: %d %s, want %d", what, res.Code, res.Body, status)
	}
	return res
}

// TestOutgoingWebhooks drives the merchant's webhooks from outside: a superuser registers an
// endpoint in the records API; affiliates, sales, commissions, payouts and feedback change
// through the doors people use; a receiver that fails 3 times then succeeds gets every event
// type, each event exactly once accepted, in order, signed per Standard Webhooks.
func TestOutgoingWebhooks(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	h := pbatest.Serve(t, app)
	hooks.StopWebhookWorkerForTest(app)
	clock := newTestClock()
	sender := hooks.NewWebhookSenderForTest(app, clock.Now, nil)
	su := fx.Superuser.Token
	merchant := "Bearer " + fx.SecretP

	// Payable at once, paid from 1.00, so one afternoon shows the whole life of a sale.
	p, err := app.FindRecordById(collections.Programs, fx.ProgramP)
	if err != nil {
		t.Fatal(err)
	}
	p.Set("hold_days", 0)
	p.Set("min_payout", 100)
	if err := app.Save(p); err != nil {
		t.Fatal(err)
	}

	recv := newHookReceiver(t, 500, 500, 500, 200)
	res := mustStatus(t, "create endpoint", pbatest.Request(h, "POST", "/api/collections/webhooks/records", su,
		`{"url":"`+recv.URL+`/in","active":true,"description":"CRM"}`), 200)
	endpoint, secret := fmt.Sprint(res.JSON["id"]), fmt.Sprint(res.JSON["secret"])
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("generated secret %q", secret)
	}
	mustStatus(t, "an affiliate reads no endpoint", pbatest.Request(h, "GET", "/api/collections/webhooks/records", fx.A.Token, ""), 403)
	mustStatus(t, "a private address is refused", pbatest.Request(h, "POST", "/api/collections/webhooks/records", su,
		`{"url":"ftp://example.com/in","active":true}`), 400)

	// The life of a program, through the doors people use.
	res = mustStatus(t, "signup", pbatest.Request(h, "POST", "/api/collections/affiliates/records", "",
		`{"name":"Xena","email":"xena@fixture.test","password":"xena-password-1","passwordConfirm":"xena-password-1"}`), 200)
	x, xCode := fmt.Sprint(res.JSON["id"]), fmt.Sprint(res.JSON["code"])
	patch := func(collection, id, body string) {
		t.Helper()
		mustStatus(t, "PATCH "+collection+" "+body, pbatest.Request(h, "PATCH", "/api/collections/"+collection+"/records/"+id, su, body), 200)
	}
	patch("affiliates", x, `{"status":"approved"}`)
	patch("affiliates", fx.Pending.ID, `{"status":"rejected"}`)
	a, _ := app.FindRecordById(collections.Affiliates, fx.A.ID)
	sale := func(code, ext string, amount int) string {
		t.Helper()
		res := pbatest.Request(h, "POST", "/api/pba/conversions", merchant,
			fmt.Sprintf(`{"affiliate_code":%q,"external_id":%q,"amount":%d,"currency":"usd"}`, code, ext, amount))
		if res.Code != 200 && res.Code != 201 {
			t.Fatalf("sale %s: %d %s", ext, res.Code, res.Body)
		}
		return fmt.Sprint(res.JSON["id"])
	}
	sale(a.GetString("code"), "wh-1", 4900)
	sale2 := sale(a.GetString("code"), "wh-2", 9900)
	sale(xCode, "wh-3", 5000)
	patch("conversions", sale2, `{"customer":"cus-renamed"}`)
	mustStatus(t, "engine", pbatest.Request(h, "POST", "/api/pba/commissions/run", su, ""), 200)
	mustStatus(t, "refund", pbatest.Request(h, "POST", "/api/pba/conversions/api/wh-1", merchant, `{"refunded_amount":4900}`), 200)
	mustStatus(t, "engine again", pbatest.Request(h, "POST", "/api/pba/commissions/run", su, ""), 200)
	mustStatus(t, "payout run", pbatest.Request(h, "POST", "/api/pba/payouts/run", su, `{"program":"`+fx.ProgramP+`"}`), 200)
	payouts, err := app.FindAllRecords(collections.Payouts)
	if err != nil {
		t.Fatal(err)
	}
	for _, po := range payouts {
		switch {
		case po.GetString("status") != "pending":
		case po.GetString("affiliate") == fx.A.ID:
			patch("payouts", po.Id, `{"status":"paid","reference":"bank-1"}`)
		case po.GetString("affiliate") == x:
			patch("payouts", po.Id, `{"status":"failed"}`)
		}
	}
	mustStatus(t, "feedback", pbatest.Request(h, "POST", "/api/collections/feedback/records", fx.A.Token,
		`{"rating":9,"topic":"portal","comment":"webhooks"}`), 200)
	patch("affiliates", x, `{"status":"suspended"}`)

	// A change rolled back leaves no event: an approval saved in a transaction that fails.
	err = app.RunInTransaction(func(tx core.App) error {
		b, err := tx.FindRecordById(collections.Affiliates, fx.B.ID)
		if err != nil {
			return err
		}
		b.Set("status", "suspended")
		if err := tx.Save(b); err != nil {
			return err
		}
		return errors.New("changed my mind")
	})
	if err == nil || err.Error() != "changed my mind" {
		t.Fatalf("transaction: %v", err)
	}

	var queued []struct {
		ID      string `db:"id"`
		EventID string `db:"event_id"`
	}
	if err := app.DB().NewQuery("SELECT id, event_id FROM webhook_deliveries WHERE webhook = {:w} ORDER BY id").
		Bind(map[string]any{"w": endpoint}).All(&queued); err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	drain(t, app, sender, clock)
	got := verifiedEvents(t, recv, secret)

	t.Run("each event exactly once, in order", func(t *testing.T) {
		var accepted []string
		for i, e := range got {
			if e.timestamp < start.Unix() || e.timestamp > clock.Now().Unix() {
				t.Errorf("request %d timestamp %d outside the test clock", i, e.timestamp)
			}
			if e.status == 200 {
				accepted = append(accepted, e.id)
			}
		}
		want := make([]string, len(queued))
		for i, q := range queued {
			want[i] = q.EventID
		}
		if !slices.Equal(accepted, want) {
			t.Fatalf("accepted %v,\nwant each queued event once in order %v", accepted, want)
		}
		// The first event failed 3 times, and nothing overtook it meanwhile.
		if len(got) != len(want)+3 || got[0].id != got[3].id || got[1].id != got[0].id || got[2].id != got[0].id {
			t.Fatalf("%d requests for %d events; the first four: %v", len(got), len(want), got[:min(4, len(got))])
		}
	})

	t.Run("every event type from its door, once per change", func(t *testing.T) {
		seen := map[string]int{}
		byChange := map[string]bool{}
		for _, e := range got {
			if e.status != 200 {
				continue
			}
			seen[e.typ]++
			key := e.typ + " " + fmt.Sprint(e.data["id"])
			if byChange[key] && e.typ != "sale.updated" {
				t.Errorf("%s emitted twice", key)
			}
			byChange[key] = true
			if amount, ok := e.data["amount"]; ok && (fmt.Sprintf("%T", amount) != "float64" || amount != float64(int64(amount.(float64))) || e.data["currency"] == "") {
				t.Errorf("%s amount %v %v: want integer minor units and a currency", e.typ, amount, e.data["currency"])
			}
		}
		for _, typ := range []string{"affiliate.created", "affiliate.approved", "affiliate.rejected", "affiliate.suspended",
			"sale.created", "sale.updated", "sale.refunded", "commission.created", "commission.payable", "commission.voided",
			"payout.created", "payout.paid", "payout.failed", "feedback.created"} {
			if seen[typ] == 0 {
				t.Errorf("no %s (got %v)", typ, seen)
			}
		}
		if seen["sale.created"] != 3 || seen["affiliate.created"] != 1 || seen["affiliate.suspended"] != 1 || seen["sale.refunded"] != 1 {
			t.Errorf("counts %v: want 3 sale.created, one affiliate.created, one affiliate.suspended (the rolled-back one absent), one sale.refunded", seen)
		}
		for _, e := range got {
			// Every payload is the stored record's event data (the engine builds its commissions'
			// from the values it wrote), as far as the record did not change since.
			if e.typ == "commission.created" && e.data["kind"] == "sale" {
				rec, err := app.FindRecordById(collections.Commissions, fmt.Sprint(e.data["id"]))
				if err != nil {
					t.Fatal(err)
				}
				want := hooks.EventDataForTest(rec)
				want["status"], want["updated"], want["payout"] = e.data["status"], e.data["updated"], e.data["payout"] // moved on since
				w, _ := json.Marshal(want)
				g, _ := json.Marshal(e.data)
				if string(w) != string(g) {
					t.Errorf("commission.created data\n%s\nwant the record's\n%s", g, w)
				}
			}
			if e.typ == "sale.refunded" && (e.data["refunded_amount"] != float64(4900) || e.data["currency"] != "usd") {
				t.Errorf("sale.refunded data %v", e.data)
			}
			if e.typ == "affiliate.approved" && e.data["id"] != x {
				t.Errorf("affiliate.approved data %v", e.data)
			}
		}
	})

	t.Run("re-send and test event", func(t *testing.T) {
		before := len(recv.requests())
		first := queued[0].ID
		mustStatus(t, "resend", pbatest.Request(h, "POST", "/api/pba/webhooks/"+endpoint+"/deliveries/"+first+"/resend", su, ""), 200)
		mustStatus(t, "resend again while queued", pbatest.Request(h, "POST", "/api/pba/webhooks/"+endpoint+"/deliveries/"+first+"/resend", su, ""), 409)
		mustStatus(t, "resend another endpoint's", pbatest.Request(h, "POST", "/api/pba/webhooks/nosuchendpoint1/deliveries/"+first+"/resend", su, ""), 404)
		mustStatus(t, "test event", pbatest.Request(h, "POST", "/api/pba/webhooks/"+endpoint+"/test", su, ""), 201)
		drain(t, app, sender, clock)
		all := verifiedEvents(t, recv, secret)
		if len(all) != before+2 || all[before].id != queued[0].EventID || all[before+1].typ != "webhook.test" {
			t.Fatalf("after resend and test: %d requests (was %d): %v", len(all), before, all[before:])
		}
	})

	t.Run("disabled after persistent failure, admins mailed", func(t *testing.T) {
		dead := newHookReceiver(t, http.StatusServiceUnavailable)
		res := mustStatus(t, "create endpoint", pbatest.Request(h, "POST", "/api/collections/webhooks/records", su,
			`{"url":"`+dead.URL+`","active":true,"events":["feedback.created"]}`), 200)
		id := fmt.Sprint(res.JSON["id"])
		mustStatus(t, "feedback", pbatest.Request(h, "POST", "/api/collections/feedback/records", fx.B.Token, `{"rating":3,"topic":"portal"}`), 200)
		mustStatus(t, "feedback", pbatest.Request(h, "POST", "/api/collections/feedback/records", fx.B.Token, `{"rating":4,"topic":"portal"}`), 200)
		for range hooks.WebhookMaxAttemptsForTest {
			runSender(t, sender)
			clock.Advance(hooks.WebhookBackoffMaxForTest * 2)
		}
		ep, err := app.FindRecordById(collections.Webhooks, id)
		if err != nil {
			t.Fatal(err)
		}
		if ep.GetBool("active") || ep.GetDateTime("disabled_at").IsZero() || !strings.Contains(ep.GetString("disabled_reason"), "HTTP 503") ||
			ep.GetInt("failure_streak") != hooks.WebhookMaxAttemptsForTest {
			t.Fatalf("endpoint after persistent failure: active=%v disabled_at=%v reason=%q streak=%d", ep.GetBool("active"),
				ep.GetDateTime("disabled_at"), ep.GetString("disabled_reason"), ep.GetInt("failure_streak"))
		}
		// The first feedback was given up; the second waited behind it and still waits.
		if n := len(dead.requests()); n != hooks.WebhookMaxAttemptsForTest {
			t.Fatalf("dead receiver got %d requests, want %d (the second event waits behind the first)", n, hooks.WebhookMaxAttemptsForTest)
		}
		mails, err := app.FindAllRecords("deliveries")
		if err != nil {
			t.Fatal(err)
		}
		var to []string
		for _, m := range mails {
			if m.GetString("template") == "webhook_disabled" {
				to = append(to, m.GetString("email"))
			}
		}
		if !slices.Contains(to, fx.Superuser.Email) {
			t.Fatalf("webhook_disabled mail went to %v, want the superuser %s", to, fx.Superuser.Email)
		}
		// Enabled again, it clears the reason and the waiting event goes out.
		dead.mu.Lock()
		dead.statuses = []int{http.StatusOK}
		dead.mu.Unlock()
		patch("webhooks", id, `{"active":true}`)
		runSender(t, sender)
		if ep, _ := app.FindRecordById(collections.Webhooks, id); ep.GetString("disabled_reason") != "" || ep.GetInt("failure_streak") != 0 {
			t.Fatalf("re-enabled endpoint keeps reason %q, streak %d", ep.GetString("disabled_reason"), ep.GetInt("failure_streak"))
		}
		if n := len(dead.requests()); n != hooks.WebhookMaxAttemptsForTest+1 {
			t.Fatalf("after re-enabling: %d requests", n)
		}
	})

	t.Run("superusers read the delivery log, affiliates none of it", func(t *testing.T) {
		res := mustStatus(t, "log", pbatest.Request(h, "GET", "/api/collections/webhook_deliveries/records?filter=webhook='"+endpoint+"'&sort=id", su, ""), 200)
		items, _ := res.JSON["items"].([]any)
		if len(items) == 0 {
			t.Fatal("empty log")
		}
		firstRow, _ := items[0].(map[string]any)
		if firstRow["response_status"] != float64(200) || firstRow["attempts"] != float64(1) || firstRow["last_attempt_at"] == "" {
			t.Fatalf("log row %v", firstRow)
		}
		res = mustStatus(t, "affiliate log", pbatest.Request(h, "GET", "/api/collections/webhook_deliveries/records?filter=webhook!=''", fx.A.Token, ""), 200)
		if items, _ := res.JSON["items"].([]any); len(items) != 0 {
			t.Fatalf("an affiliate sees %d endpoint deliveries", len(items))
		}
	})
}
