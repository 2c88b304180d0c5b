package hooks_test

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// payoutRecords is where an admin marks a payout paid or canceled (PATCH, as a superuser).
const payoutRecords = "/api/collections/payouts/records/"

func payoutLines(out map[string]any) map[string]map[string]any {
	lines := map[string]map[string]any{}
	for _, p := range out["programs"].([]any) {
		for _, l := range p.(map[string]any)["lines"].([]any) {
			line := l.(map[string]any)
			lines[line["affiliate"].(string)] = line
		}
	}
	return lines
}

func TestManualPayoutRun(t *testing.T) {
	env := newEngineEnv(t)
	past := time.Now().AddDate(0, 0, -40)
	env.pastSale("affiliate-a", 30000, past) // 6000 commission: above the 5000 minimum
	env.pastSale("affiliate-b", 1000, past)  // 200: carried forward
	env.run()

	res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/payouts/preview", fx.Superuser.Token, "")
	lines := payoutLines(res.JSON)
	if res.Code != 200 || lines[fx.A.ID]["action"] != "pay" || lines[fx.A.ID]["amount"].(float64) != 6000 ||
		lines[fx.B.ID]["action"] != "carry_forward" {
		t.Fatalf("preview: %d %v", res.Code, res.JSON)
	}
	if n, _ := env.app.CountRecords(collections.Payouts); n != 2 {
		t.Fatalf("a preview created payouts: %d", n)
	}

	res = pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "")
	lines = payoutLines(res.JSON)
	payoutID, _ := lines[fx.A.ID]["payout"].(string)
	if res.Code != 200 || payoutID == "" {
		t.Fatalf("run: %d %v", res.Code, res.JSON)
	}
	p := mustFind(t, env.app, collections.Payouts, payoutID)
	if p.GetInt("amount") != 6000 || p.GetString("status") != "pending" || p.GetString("method") != "manual" ||
		p.GetString("idempotency_key") == "" || p.GetString("run") == "" {
		t.Fatalf("payout: %v", p.FieldsData())
	}
	env.ledgerOK()
	// A second run finds nothing new to pay for A.
	if out := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "").JSON; payoutLines(out)[fx.A.ID] != nil {
		t.Fatalf("second run paid A again: %v", out)
	}

	// The CSV for the mass payout lists it.
	rec := pbatest.Request(env.handler, http.MethodGet, "/api/pba/export/payouts.csv?format=paypal", fx.Superuser.Token, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "a@fixture.test,60.00,USD,"+payoutID) {
		t.Fatalf("csv: %d %s", rec.Code, rec.Body)
	}

	// Marking it paid needs a reference, then pays the commissions.
	if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+payoutID, fx.Superuser.Token, `{"status":"paid"}`); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"reference"`) {
		t.Fatalf("paid without reference: %d %s", rec.Code, rec.Body)
	}
	if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+payoutID, fx.Superuser.Token, `{"status":"paid","reference":"PAYPAL-123"}`); rec.Code != 200 {
		t.Fatalf("mark paid: %d %s", rec.Code, rec.Body)
	}
	paid, _ := env.app.FindAllRecords(collections.Commissions, dbxEq("payout", payoutID))
	for _, c := range paid {
		if c.GetString("status") != "paid" {
			t.Fatalf("commission %s not paid: %s", c.Id, c.GetString("status"))
		}
	}
	if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+payoutID, fx.Superuser.Token, `{"status":"canceled"}`); rec.Code != 400 {
		t.Fatalf("a paid payout changed status: %d", rec.Code)
	}
	if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+payoutID, fx.Superuser.Token, `{"amount":1}`); rec.Code != 400 {
		t.Fatalf("a payout's amount changed: %d", rec.Code)
	}
	env.ledgerOK()
}

// The mass-payout file carries what affiliates typed (payout email, else email, and the name
// in Wise's): a cell that a spreadsheet would read as a formula is defused in both formats,
// and no cell of either file starts a formula.
func TestPayoutsCSVDefusesTypedCells(t *testing.T) {
	env := newEngineEnv(t)
	const payTo = "=cmd|'/Ccalc'!A0@x.com"
	if res := pbatest.Request(env.handler, http.MethodPatch, "/api/collections/affiliates/records/"+fx.A.ID, fx.A.Token,
		fmt.Sprintf(`{"payout_email":%q,"name":"@SUM(1+1)*cmd"}`, payTo)); res.Code != http.StatusOK {
		t.Fatalf("A's profile: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, "/api/collections/affiliates/records/"+fx.B.ID, fx.B.Token,
		`{"name":"+1 555 cmd"}`); res.Code != http.StatusOK {
		t.Fatalf("B's profile: %d %s", res.Code, res.Body)
	}
	past := time.Now().AddDate(0, 0, -40)
	env.pastSale("affiliate-a", 30000, past)
	env.pastSale("affiliate-b", 30000, past)
	env.run()
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, ""); res.Code != http.StatusOK {
		t.Fatalf("run: %d %s", res.Code, res.Body)
	}
	for format, want := range map[string][]string{
		"paypal": {"'" + payTo, fx.B.Email},
		"wise":   {"'" + payTo, "'@SUM(1+1)*cmd", "'+1 555 cmd", fx.B.Email},
	} {
		res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/export/payouts.csv?format="+format, fx.Superuser.Token, "")
		rows, err := csv.NewReader(res.Body).ReadAll()
		if res.Code != http.StatusOK || err != nil || len(rows) != 3 {
			t.Fatalf("%s: %d, %d rows (%v)", format, res.Code, len(rows), err)
		}
		var cells []string
		for _, row := range rows[1:] {
			for _, cell := range row {
				if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
					t.Errorf("%s: cell %q would run as a formula", format, cell)
				}
				cells = append(cells, cell)
			}
		}
		for _, w := range want {
			if !slices.Contains(cells, w) {
				t.Errorf("%s: no cell %q in %v", format, w, cells)
			}
		}
	}
}

func TestPayoutSkipsAndCancel(t *testing.T) {
	env := newEngineEnv(t)
	past := time.Now().AddDate(0, 0, -40)
	env.pastSale("affiliate-a", 30000, past)
	env.pastSale("affiliate-b", 30000, past)
	env.run()
	env.save(collections.Affiliates, fx.B.ID, map[string]any{"status": "suspended"})
	out := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run?program=default", fx.Superuser.Token, "").JSON
	lines := payoutLines(out)
	if lines[fx.B.ID]["action"] != "skip" || !strings.Contains(fmt.Sprint(lines[fx.B.ID]["reason"]), "suspended") {
		t.Fatalf("suspended affiliate: %v", lines[fx.B.ID])
	}
	payoutID := lines[fx.A.ID]["payout"].(string)
	// Canceling returns the commissions to the pool; the next run pays them again.
	if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+payoutID, fx.Superuser.Token, `{"status":"canceled"}`); rec.Code != 200 {
		t.Fatalf("cancel: %d %s", rec.Code, rec.Body)
	}
	env.ledgerOK()
	out = pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "").JSON
	again := payoutLines(out)[fx.A.ID]
	if again == nil || again["payout"] == payoutID || again["amount"].(float64) != 6000 {
		t.Fatalf("after cancel: %v", again)
	}
	// Failing works the same way, and a failed payout is final: marking it paid afterwards
	// would pay money whose commissions are already back in the pool.
	failedID := again["payout"].(string)
	if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+failedID, fx.Superuser.Token, `{"status":"failed"}`); rec.Code != 200 {
		t.Fatalf("fail: %d %s", rec.Code, rec.Body)
	}
	for _, body := range []string{`{"status":"paid","reference":"TX-1"}`, `{"status":"pending"}`} {
		if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+failedID, fx.Superuser.Token, body); rec.Code != 400 ||
			!strings.Contains(rec.Body.String(), "final") {
			t.Fatalf("failed payout reopened by %s: %d %s", body, rec.Code, rec.Body)
		}
	}
	env.ledgerOK()
	out = pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "").JSON
	if retry := payoutLines(out)[fx.A.ID]; retry == nil || retry["payout"] == failedID || retry["amount"].(float64) != 6000 {
		t.Fatalf("after fail: %v", retry)
	}
	if code := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run?program=nope", fx.Superuser.Token, "").Code; code != 400 {
		t.Fatalf("unknown program: %d", code)
	}
	env.ledgerOK()
}

func TestPayoutNetsClawbacks(t *testing.T) {
	env := newEngineEnv(t)
	past := time.Now().AddDate(0, 0, -40)
	conv := env.pastSale("affiliate-a", 30000, past) // 6000
	env.run()
	env.payAll(fx.A.ID)
	env.setConversion(conv, map[string]any{"refunded_amount": 10000}) // claw back 2000
	env.pastSale("affiliate-a", 40000, past)                          // 8000 new
	env.run()
	out := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "").JSON
	if line := payoutLines(out)[fx.A.ID]; line == nil || line["amount"].(float64) != 6000 {
		t.Fatalf("net payout: %v", line)
	}
	env.ledgerOK()
}

// TestPayoutsReachAffiliatesLive: the engine writes payouts with raw SQL, then announces them,
// so the affiliate's realtime subscription hears of its own payout (and only its own).
func TestPayoutsReachAffiliatesLive(t *testing.T) {
	env := newEngineEnv(t)
	env.pastSale("affiliate-a", 30000, time.Now().AddDate(0, 0, -40))
	env.run()
	a := subscribeTo(env.app, mustFind(t, env.app, collections.Affiliates, fx.A.ID), collections.Payouts+"/*")
	b := subscribeTo(env.app, mustFind(t, env.app, collections.Affiliates, fx.B.ID), collections.Payouts+"/*")
	if code := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "").Code; code != 200 {
		t.Fatalf("run: %d", code)
	}
	select {
	case msg := <-a.Channel():
		if !strings.Contains(string(msg.Data), `"amount":6000`) {
			t.Fatalf("A got %s", msg.Data)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("A did not hear of its payout")
	}
	select {
	case msg := <-b.Channel():
		t.Fatalf("B heard of A's payout: %s", msg.Data)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestPayoutNotifications: a paid or failed payout queues one email to its affiliate.
func TestPayoutNotifications(t *testing.T) {
	env := newEngineEnv(t)
	env.pastSale("affiliate-a", 30000, time.Now().AddDate(0, 0, -40))
	env.run()
	out := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, "").JSON
	payoutID := payoutLines(out)[fx.A.ID]["payout"].(string)
	if rec := pbatest.Request(env.handler, http.MethodPatch, payoutRecords+payoutID, fx.Superuser.Token, `{"status":"paid","reference":"PAYPAL-123"}`); rec.Code != 200 {
		t.Fatalf("mark paid: %d %s", rec.Code, rec.Body)
	}
	env.save(collections.Payouts, payoutID, map[string]any{"error": ""}) // a later edit: no second email
	rows, err := env.app.FindAllRecords("deliveries", dbxEq("affiliate", fx.A.ID), dbxEq("template", "payout_sent"))
	if err != nil || len(rows) != 1 || rows[0].GetString("email") != fx.A.Email || rows[0].GetBool("marketing") {
		t.Fatalf("payout email: %v %v", rows, err)
	}
}
