package hooks_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestPrivacyAffiliate: a superuser exports affiliate A (its data and nobody else's), then
// erases it. Afterwards no column of any table holds A's old email, name, payout email,
// webhook URL or answer, the ledger and the rollups check out as before, A's tokens are
// refused, its mail stops, a second erasure changes nothing, and each request is recorded.
func TestPrivacyAffiliate(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	h := pbatest.Serve(t, app)
	su := fx.Superuser.Token

	// A's personal data, and copies of it where other parts of the product keep text.
	const (
		name       = "Ada Quintessa Lovelace"
		payout     = "ada.payouts@fixture.test"
		webhookURL = "https://hooks.example.org/ada-private-endpoint"
		answer     = "I review knitting patterns on my own blog"
	)
	a, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	a.Set(collections.FieldName, name)
	a.Set(collections.AffiliatePayoutEmail, payout)
	a.Set(collections.AffiliateWebhookURL, webhookURL)
	a.Set(collections.AffiliateStripeAccountID, "acct_ada")
	if err := app.Save(a); err != nil {
		t.Fatal(err)
	}
	sqlExec(t, app, `UPDATE affiliates SET answers = {:answers} WHERE id = {:id}`, dbx.Params{"answers": `{"q1":"` + answer + `"}`, "id": fx.A.ID})
	for _, seed := range []struct {
		collection string
		data       map[string]any
	}{
		{collections.Feedback, map[string]any{"affiliate": fx.A.ID, "program": fx.ProgramP, "rating": 3, "comment": "Write to " + payout}},
		{collections.Deliveries, map[string]any{"affiliate": fx.A.ID, "email": fx.A.Email, "template": "approved", "status": "queued",
			"idempotency_key": "privacy-queued", "data": map[string]any{"name": name}, "next_attempt_at": time.Now().Add(time.Hour)}}, // a retry
		{collections.WebhookDeliveries, map[string]any{"affiliate": fx.A.ID, "event": "conversion.created", "event_id": "privacy-hook",
			"url": webhookURL, "payload": map[string]any{"id": "x"}, "status": "pending"}},
		{collections.Suppressions, map[string]any{"email": fx.A.Email, "reason": "unsubscribe"}},
		// A legacy code an import brought (her handle on the old platform): it goes with her.
		{collections.CodeAliases, map[string]any{"code": "ada.quintessa", "affiliate": fx.A.ID, "source": "rewardful"}},
		{core.CollectionNameAuthOrigins, map[string]any{"collectionRef": a.Collection().Id, "recordRef": fx.A.ID, "fingerprint": "ada-device"}},
		// Elsewhere: B's sale whose customer is A's address, a note and a run report naming A
		// (text and JSON the sweep must find without knowing these collections).
		{collections.Conversions, map[string]any{"affiliate": fx.B.ID, "program": fx.ProgramP, "source": "manual", "external_id": "privacy-b",
			"customer": strings.ToUpper(fx.A.Email), "amount": 100, "currency": "usd", "status": "rejected", "occurred_at": time.Now().UTC()}},
		{"payout_runs", map[string]any{"program": fx.ProgramP, "scheduled_for": time.Now().UTC(), "trigger": "manual", "status": "done",
			"report": map[string]any{"skipped": []any{map[string]any{"who": name, "why": "see " + webhookURL + "?a=1&b=2"}}}}},
		{"conversion_events", map[string]any{"conversion": fx.RowsB.Conversion, "affiliate": fx.B.ID, "program": fx.ProgramP, "door": "system",
			"status_before": "approved", "status_after": "approved", "note": "asked by " + payout}},
		{collections.Incentives, map[string]any{"program": fx.ProgramP, "name": "For two", "kind": "rate_boost", "value": 100, "eligibility": "affiliates",
			"affiliates": []string{fx.B.ID, fx.A.ID}, "starts_at": time.Now().Add(-time.Hour), "ends_at": time.Now().Add(time.Hour), "active": true}},
	} {
		if _, err := pbatest.Save(app, seed.collection, seed.data); err != nil {
			t.Fatal(err)
		}
	}
	needles := []string{strings.ToLower(fx.A.Email), payout, strings.ToLower(name), webhookURL, strings.ToLower(answer), "ada.quintessa"}
	problemsBefore, err := store.RollupProblems(app)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("export", func(t *testing.T) {
		res := pbatest.Request(h, http.MethodGet, "/api/pba/affiliates/"+fx.A.ID+"/export", su, "")
		if res.Code != http.StatusOK || !strings.HasPrefix(res.Header().Get("Content-Disposition"), "attachment;") {
			t.Fatalf("export: %d %q %s", res.Code, res.Header().Get("Content-Disposition"), res.Body)
		}
		body := res.Body.String()
		var doc struct {
			Format    string                      `json:"format"`
			Affiliate map[string]any              `json:"affiliate"`
			Clicks    struct{ Stored int }        `json:"clicks"`
			Records   map[string][]map[string]any `json:"records"`
		}
		if err := json.Unmarshal(res.Body.Bytes(), &doc); err != nil {
			t.Fatalf("export is not JSON: %v", err)
		}
		if doc.Affiliate["email"] != fx.A.Email || doc.Affiliate["name"] != name || doc.Affiliate["payout_email"] != payout ||
			!strings.Contains(body, answer) || doc.Clicks.Stored != 1 {
			t.Fatalf("export lacks A's own data: %+v clicks %d", doc.Affiliate, doc.Clicks.Stored)
		}
		for _, c := range []string{"links", "conversions", "commissions", "payouts", "stats_daily", "feedback", "deliveries",
			"webhook_deliveries", "incentives", core.CollectionNameAuthOrigins} {
			if len(doc.Records[c]) == 0 {
				t.Errorf("export has no %s", c)
			}
		}
		if _, ok := doc.Records[collections.Clicks]; ok {
			t.Error("export lists click rows (visitors' data)")
		}
		for _, leak := range []string{fx.B.Email, fx.B.ID, "tokenKey", `"password"`, "webhook_secret", `"customer"`} {
			if strings.Contains(body, leak) {
				t.Errorf("export holds %q", leak)
			}
		}
	})

	t.Run("erase needs its confirmation", func(t *testing.T) {
		for _, body := range []string{"", `{}`, `{"confirm":"` + fx.B.Email + `"}`} {
			res := pbatest.Request(h, http.MethodPost, "/api/pba/affiliates/"+fx.A.ID+"/erase", su, body)
			if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), `"confirm"`) {
				t.Fatalf("erase with %q: %d %s", body, res.Code, res.Body)
			}
		}
		if r, _ := app.FindRecordById(collections.Affiliates, fx.A.ID); r.Email() != fx.A.Email {
			t.Fatal("a refused erasure changed the affiliate")
		}
	})

	t.Run("erase", func(t *testing.T) {
		res := pbatest.Request(h, http.MethodPost, "/api/pba/affiliates/"+fx.A.ID+"/erase", su, `{"confirm":"`+strings.ToUpper(fx.A.Email)+`"}`)
		if res.Code != http.StatusOK || res.JSON["already_erased"] != false || res.JSON["stripe_account_kept"] != false {
			t.Fatalf("erase: %d %s", res.Code, res.Body)
		}
		if leaks := findPersonalValues(t, app, needles); len(leaks) > 0 {
			t.Fatalf("personal data left after erasure:\n%s", strings.Join(leaks, "\n"))
		}
		after, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.GetString("status") != collections.AffiliateSuspended || after.GetString(collections.AffiliateStripeAccountID) != "" ||
			after.GetString(collections.AffiliatePreferredChannel) != collections.ChannelNone || after.GetDateTime(collections.AffiliateErasedAt).IsZero() {
			t.Fatalf("erased affiliate: %v", after.FieldsData())
		}
		// The ledger's ids and amounts stay: the check and the rollups are as before.
		check := pbatest.Request(h, http.MethodGet, "/api/pba/ledger/check", su, "")
		if check.Code != http.StatusOK || check.JSON["ok"] != true {
			t.Fatalf("ledger check after erasure: %s", check.Body)
		}
		if problems, err := store.RollupProblems(app); err != nil || fmt.Sprint(problems) != fmt.Sprint(problemsBefore) {
			t.Fatalf("rollups after erasure: %v (before %v) %v", problems, problemsBefore, err)
		}
		for _, id := range []string{fx.RowsA.Conversion, fx.RowsA.Commission, fx.RowsA.Payout, fx.RowsA.Link, fx.RowsA.Click} {
			if n := sqlCount(t, app, `SELECT (SELECT COUNT(*) FROM conversions WHERE id = {:id}) + (SELECT COUNT(*) FROM commissions WHERE id = {:id})
				+ (SELECT COUNT(*) FROM payouts WHERE id = {:id}) + (SELECT COUNT(*) FROM links WHERE id = {:id}) + (SELECT COUNT(*) FROM clicks WHERE id = {:id})`,
				dbx.Params{"id": id}); n != 1 {
				t.Errorf("ledger row %s: %d rows", id, n)
			}
		}
		// Sessions: the old token no longer refreshes; the old password no longer signs in.
		if r := pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/auth-refresh", fx.A.Token, ""); r.Code != http.StatusUnauthorized {
			t.Fatalf("refresh of an erased affiliate's token: %d", r.Code)
		}
		login := `{"identity":"` + fx.A.Email + `","password":"` + pbatest.Password + `"}`
		if r := pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/auth-with-password", "", login); r.Code != http.StatusBadRequest {
			t.Fatalf("sign-in as the erased affiliate: %d", r.Code)
		}
		// Mail: the queued mail was canceled; a mail queued now is skipped when the worker runs.
		if s := deliveryStatus(t, app, "privacy-queued"); s != collections.DeliverySkipped {
			t.Fatalf("queued mail to the erased affiliate: %s", s)
		}
		if _, err := pbatest.Save(app, collections.Deliveries, map[string]any{"affiliate": fx.A.ID, "email": after.Email(), "template": "payout_sent",
			"status": "queued", "idempotency_key": "privacy-later", "data": map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		runCronJob(t, app, "pbaMessages") // wakes the server's worker
		for deadline := time.Now().Add(10 * time.Second); deliveryStatus(t, app, "privacy-later") == collections.DeliveryQueued; {
			if time.Now().After(deadline) {
				t.Fatal("the mail worker never handled the mail queued after the erasure")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if s := deliveryStatus(t, app, "privacy-later"); s != collections.DeliverySkipped {
			t.Fatalf("mail queued after the erasure: %s", s)
		}
	})

	t.Run("erase again", func(t *testing.T) {
		before, _ := app.FindRecordById(collections.Affiliates, fx.A.ID)
		res := pbatest.Request(h, http.MethodPost, "/api/pba/affiliates/"+fx.A.ID+"/erase", su, `{"confirm":"`+fx.A.ID+`"}`)
		if res.Code != http.StatusOK || res.JSON["already_erased"] != true {
			t.Fatalf("second erase: %d %s", res.Code, res.Body)
		}
		if swept, _ := res.JSON["swept"].(map[string]any); len(swept) != 0 {
			t.Fatalf("second erase swept %v", swept)
		}
		after, _ := app.FindRecordById(collections.Affiliates, fx.A.ID)
		if !after.GetDateTime(collections.AffiliateErasedAt).Equal(before.GetDateTime(collections.AffiliateErasedAt)) || after.Email() != before.Email() {
			t.Fatal("a second erasure changed the erased affiliate")
		}
	})

	// Erasure is final: no door makes the erased affiliate active again (its links would
	// credit clicks for nobody), nor clears the mark that keeps its mail stopped.
	t.Run("erased cannot be reinstated", func(t *testing.T) {
		for _, try := range []struct{ method, path, body, field string }{
			{http.MethodPatch, "/api/collections/affiliates/records/" + fx.A.ID, `{"status":"approved"}`, "status"},
			{http.MethodPatch, "/api/pba/affiliates/" + fx.A.ID, `{"status":"approved"}`, "status"},
			{http.MethodPatch, "/api/collections/affiliates/records/" + fx.A.ID, `{"status":"pending"}`, "status"},
			{http.MethodPatch, "/api/collections/affiliates/records/" + fx.A.ID, `{"erased_at":""}`, "erased_at"},
			{http.MethodPatch, "/api/collections/affiliates/records/" + fx.A.ID, `{"erased_at":"","status":"approved"}`, "status"},
		} {
			res := pbatest.Request(h, try.method, try.path, su, try.body)
			data, _ := res.JSON["data"].(map[string]any)
			if res.Code != http.StatusBadRequest || data[try.field] == nil {
				t.Fatalf("%s %s %s: %d %s, want 400 naming %s", try.method, try.path, try.body, res.Code, res.Body, try.field)
			}
		}
		after, _ := app.FindRecordById(collections.Affiliates, fx.A.ID)
		if after.GetString("status") != collections.AffiliateSuspended || after.GetDateTime(collections.AffiliateErasedAt).IsZero() {
			t.Fatalf("refused updates changed the erased affiliate: status %s, erased_at %v", after.GetString("status"), after.GetDateTime(collections.AffiliateErasedAt))
		}
		// Other fields an admin keeps (a note) still save.
		if res := pbatest.Request(h, http.MethodPatch, "/api/collections/affiliates/records/"+fx.A.ID, su, `{"notes":"erased on request"}`); res.Code != http.StatusOK {
			t.Fatalf("note on an erased affiliate: %d %s", res.Code, res.Body)
		}
	})

	t.Run("recorded", func(t *testing.T) {
		var kinds []string
		err := app.DB().Select("kind").From(collections.PrivacyRequests).Where(dbx.HashExp{"subject": fx.A.ID, "by": fx.Superuser.Email}).
			OrderBy("created", "rowid").Column(&kinds)
		if err != nil || !slices.Equal(kinds, []string{"export", "erase", "erase"}) {
			t.Fatalf("privacy requests: %v %v", kinds, err)
		}
	})
}

// TestPrivacyVisitorErase: a visitor's clicks (from /r/ with its cookie) and the sale credited
// through one of them are made anonymous; the rollups still agree with the click rows, the
// ledger holds, the visitor's next click is unique again, and the request is recorded.
func TestPrivacyVisitorErase(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	h := pbatest.Serve(t, app)
	su := fx.Superuser.Token
	code := codeOfAffiliate(t, app, fx.A.ID)

	browser := pbatest.Header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Visitor-Browser/1.0")
	first := pbatest.Request(h, http.MethodGet, "/r/"+code, "", "", browser)
	var visitor string
	for _, c := range first.Result().Cookies() {
		if c.Name == "pba_vid" {
			visitor = c.Value
		}
	}
	if first.Code != http.StatusFound || visitor == "" {
		t.Fatalf("first click: %d, visitor %q", first.Code, visitor)
	}
	withVisitor := func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: "pba_vid", Value: visitor})
		browser(r)
	}
	second := pbatest.Request(h, http.MethodGet, "/r/"+code+"?sub=newsletter", "", "", withVisitor)
	var clickID string
	for _, c := range second.Result().Cookies() {
		if c.Name == "pba_click" {
			clickID = c.Value
		}
	}
	sale := pbatest.Request(h, http.MethodPost, "/api/pba/conversions", "Bearer "+fx.SecretP, `{"external_id":"visitor-sale","amount":5000,"currency":"usd","click_id":"`+clickID+`"}`)
	if sale.Code != http.StatusCreated {
		t.Fatalf("sale: %d %s", sale.Code, sale.Body)
	}
	clicksBefore := sqlCount(t, app, `SELECT COUNT(*) FROM clicks`, nil)
	problemsBefore, err := store.RollupProblems(app)
	if err != nil {
		t.Fatal(err)
	}

	if r := pbatest.Request(h, http.MethodPost, "/api/pba/visitors/"+strings.Repeat("x", 65)+"/erase", su, ""); r.Code != http.StatusBadRequest || !strings.Contains(r.Body.String(), `"visitor"`) {
		t.Fatalf("a bad visitor id: %d %s", r.Code, r.Body)
	}
	res := pbatest.Request(h, http.MethodPost, "/api/pba/visitors/"+visitor+"/erase", su, "")
	if res.Code != http.StatusOK || res.JSON["clicks"] != 2.0 || res.JSON["conversions"] != 1.0 {
		t.Fatalf("visitor erase: %d %s", res.Code, res.Body)
	}
	if n := sqlCount(t, app, `SELECT COUNT(*) FROM clicks WHERE id IN ({:v}, {:c}) OR visitor = {:v} OR user_agent LIKE '%Visitor-Browser%' OR sub_id = 'newsletter'`,
		dbx.Params{"v": visitor, "c": clickID}); n != 0 {
		t.Fatalf("%d clicks still tie to the visitor", n)
	}
	if n := sqlCount(t, app, `SELECT COUNT(*) FROM clicks`, nil); n != clicksBefore {
		t.Fatalf("clicks: %d, were %d (the rows stay, anonymous)", n, clicksBefore)
	}
	if n := sqlCount(t, app, `SELECT COUNT(*) FROM conversions v JOIN clicks c ON c.id = v.click
		WHERE v.external_id = 'visitor-sale' AND c.ip_hash = '' AND c.visitor = c.id`, nil); n != 1 {
		t.Fatal("the sale lost its (anonymous) click")
	}
	if problems, err := store.RollupProblems(app); err != nil || fmt.Sprint(problems) != fmt.Sprint(problemsBefore) {
		t.Fatalf("rollups after the visitor's erasure: %v (before %v) %v", problems, problemsBefore, err)
	}
	if check := pbatest.Request(h, http.MethodGet, "/api/pba/ledger/check", su, ""); check.JSON["ok"] != true {
		t.Fatalf("ledger check: %s", check.Body)
	}
	// The unique window forgot the visitor: the same cookie's next click counts as unique.
	pbatest.Request(h, http.MethodGet, "/r/"+code, "", "", withVisitor)
	if n := sqlCount(t, app, `SELECT COUNT(*) FROM clicks WHERE visitor = {:v} AND "unique"`, dbx.Params{"v": visitor}); n != 1 {
		t.Fatal("the visitor's next click is not unique")
	}
	if n := sqlCount(t, app, `SELECT COUNT(*) FROM privacy_requests WHERE kind = 'visitor_erase' AND subject = {:v}`, dbx.Params{"v": visitor}); n != 1 {
		t.Fatal("the visitor's erasure is not recorded")
	}
}

// findValues searches every column of every table of the schema, and the request log, for
// the needles (lowercase), naming where each is found.
func findPersonalValues(t *testing.T, app core.App, needles []string) []string {
	t.Helper()
	all, err := app.FindAllCollections()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	search := func(db dbx.Builder, table string) {
		rows, err := db.NewQuery("SELECT * FROM " + table).Rows()
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			row := dbx.NullStringMap{}
			if err := rows.ScanMap(row); err != nil {
				t.Fatal(err)
			}
			for col, v := range row {
				for _, n := range needles {
					if strings.Contains(strings.ToLower(v.String), strings.ToLower(n)) {
						found = append(found, fmt.Sprintf("%s.%s of %s: %q", table, col, row["id"].String, v.String))
					}
				}
			}
		}
	}
	for _, c := range all {
		if !c.IsView() {
			search(app.DB(), c.Name)
		}
	}
	search(app.AuxDB(), "_logs")
	return found
}

func sqlExec(t *testing.T, app core.App, sql string, params dbx.Params) {
	t.Helper()
	if _, err := app.DB().NewQuery(sql).Bind(params).Execute(); err != nil {
		t.Fatal(err)
	}
}

func sqlCount(t *testing.T, app core.App, sql string, params dbx.Params) int {
	t.Helper()
	var n int
	if err := app.DB().NewQuery(sql).Bind(params).Row(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func deliveryStatus(t *testing.T, app core.App, key string) string {
	t.Helper()
	r, err := app.FindFirstRecordByData(collections.Deliveries, "idempotency_key", key)
	if err != nil {
		t.Fatal(err)
	}
	return r.GetString("status")
}

func runCronJob(t *testing.T, app core.App, id string) {
	t.Helper()
	for _, job := range app.Cron().Jobs() {
		if job.Id() == id {
			job.Run()
			return
		}
	}
	t.Fatalf("no cron job %s", id)
}

func codeOfAffiliate(t *testing.T, app core.App, id string) string {
	t.Helper()
	r, err := app.FindRecordById(collections.Affiliates, id)
	if err != nil {
		t.Fatal(err)
	}
	return r.GetString(collections.FieldCode)
}
