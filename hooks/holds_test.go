package hooks_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

const conversionRecordsAPI = "/api/collections/conversions/records"

// refusedNaming fails the test unless res is status naming field in its data.
func refusedNaming(t *testing.T, what string, res *pbatest.Response, status int, field string) {
	t.Helper()
	if res.Code != status || !strings.Contains(res.Body.String(), `"`+field+`":{`) {
		t.Errorf("%s: %d %s, want %d naming %q", what, res.Code, res.Body, status, field)
	}
}

// manualSale is a conversion as an admin creates it with the records API.
func manualSale(externalID string, at time.Time, extra string) string {
	return fmt.Sprintf(`{"affiliate":%q,"program":%q,"source":"manual","external_id":%q,"amount":1000,"currency":"usd",`+
		`"status":"approved","occurred_at":%q%s}`, fx.A.ID, fx.ProgramP, externalID, at.UTC().Format(time.RFC3339), extra)
}

// A sale claimed to have happened in 1970 would skip the program's hold (payable at once) and
// open a stats_daily row for 1970: every way in refuses it and stores nothing.
func TestBackdatedSaleRefused(t *testing.T) {
	env := newConvEnv(t)
	epoch := "1970-01-01T00:00:00Z"
	refusedNaming(t, "API", pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		`{"affiliate_code":"affiliate-a","external_id":"old-1","amount":1000,"currency":"usd","occurred_at":"`+epoch+`"}`), 400, "occurred_at")
	refusedNaming(t, "postback", pbatest.Request(env.handler, http.MethodGet, postbackAPI+"key="+url.QueryEscape(fx.SecretP)+
		"&affiliate_code=affiliate-a&txid=old-2&amount=10&currency=usd&occurred_at="+epoch, "", ""), 400, "occurred_at")
	refusedNaming(t, "records API", pbatest.Request(env.handler, http.MethodPost, conversionRecordsAPI, fx.Superuser.Token,
		manualSale("old-3", time.Unix(0, 0), "")), 400, "occurred_at")
	// Just outside the program's 60 cookie days is as old as 1970.
	refusedNaming(t, "API, past cookie_days", pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"affiliate_code":"affiliate-a","external_id":"old-4","amount":1000,"currency":"usd","occurred_at":%q}`,
			time.Now().AddDate(0, 0, -61).UTC().Format(time.RFC3339))), 400, "occurred_at")

	if n := len(env.conversions()); n != 0 {
		t.Fatalf("refused sales stored %d conversions", n)
	}
	if rows, err := env.app.FindAllRecords(collections.StatsDaily, dbxEq("day", "1970-01-01")); err != nil || len(rows) != 0 {
		t.Fatalf("stats_daily rows for 1970: %d %v", len(rows), err)
	}
}

// A sale cannot have happened before the click it names.
func TestSaleBeforeItsClickRefused(t *testing.T) {
	env := newConvEnv(t)
	click := env.freshClick()
	before := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	refusedNaming(t, "API", pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"click_id":%q,"affiliate_code":"affiliate-b","external_id":"early-1","amount":1000,"currency":"usd","occurred_at":%q}`, click, before)),
		400, "occurred_at")
	refusedNaming(t, "records API", pbatest.Request(env.handler, http.MethodPost, conversionRecordsAPI, fx.Superuser.Token,
		manualSale("early-2", time.Now().Add(-time.Hour), fmt.Sprintf(`,"click":%q`, click))), 400, "occurred_at")
	if n := len(env.conversions()); n != 0 {
		t.Fatalf("refused sales stored %d conversions", n)
	}
	// After the click it is fine.
	if res := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"click_id":%q,"external_id":"late-1","amount":1000,"currency":"usd"}`, click)); res.Code != 201 {
		t.Fatalf("sale after its click: %d %s", res.Code, res.Body)
	}
}

// payableAfterRecording checks that conv's commission is pending and held for the program's
// hold_days from the moment the conversion was recorded, whatever its occurred_at says.
func payableAfterRecording(t *testing.T, env *clickEnv, conv string, holdDays int) {
	t.Helper()
	rec, err := env.app.FindRecordById(collections.Conversions, conv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.app.FindFirstRecordByFilter(collections.Commissions, "conversion = {:c} && kind = 'sale'", map[string]any{"c": conv})
	if err != nil {
		t.Fatalf("commission of %s: %v", conv, err)
	}
	want := rec.GetDateTime(collections.FieldCreated).Time().AddDate(0, 0, holdDays)
	if got := c.GetDateTime(collections.CommissionPayableAt).Time(); !got.Equal(want) || c.GetString(collections.FieldStatus) != "pending" {
		t.Fatalf("commission %s payable_at %v, want recorded %v + %d days = %v",
			c.GetString(collections.FieldStatus), got, rec.GetDateTime(collections.FieldCreated), holdDays, want)
	}
}

// A sale reported late but within the attribution window is accepted; its hold still runs in
// full from when it was recorded.
func TestHoldRunsFromRecording(t *testing.T) {
	env := newEngineEnv(t)
	program, err := env.app.FindRecordById(collections.Programs, fx.ProgramP)
	if err != nil {
		t.Fatal(err)
	}
	holdDays := program.GetInt(collections.ProgramHoldDays) // 30
	res := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"affiliate_code":"affiliate-a","external_id":"late-report","amount":1000,"currency":"usd","occurred_at":%q}`,
			time.Now().AddDate(0, 0, -(holdDays+10)).UTC().Format(time.RFC3339)))
	if res.Code != 201 {
		t.Fatalf("sale within cookie_days: %d %s", res.Code, res.Body)
	}
	conv := res.JSON["id"].(string)
	env.run()
	payableAfterRecording(t, env.clickEnv, conv, holdDays)
	env.run()
	if s := env.commissionOf(conv).GetString(collections.FieldStatus); s != "pending" {
		t.Fatalf("released before its hold: %s", s)
	}
	env.ledgerOK()
}

// Importing history: a superuser marks old sales imported; they are kept with their date and
// held from when they were recorded. Nobody else may mark a sale imported.
func TestImportedSale(t *testing.T) {
	env := newEngineEnv(t)
	old := time.Date(2020, 3, 1, 12, 0, 0, 0, time.UTC)
	body := func(id string) string {
		return fmt.Sprintf(`{"affiliate_code":"affiliate-a","external_id":%q,"amount":1000,"currency":"usd","occurred_at":%q,"imported":true}`,
			id, old.Format(time.RFC3339))
	}
	refusedNaming(t, "program secret", pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(), body("imp-0")), 403, "imported")
	refusedNaming(t, "postback", pbatest.Request(env.handler, http.MethodGet, postbackAPI+"key="+url.QueryEscape(fx.SecretP)+
		"&affiliate_code=affiliate-a&txid=imp-0&amount=10&currency=usd&imported=true&occurred_at="+old.Format(time.RFC3339), "", ""), 403, "imported")
	refusedNaming(t, "affiliate, records API", pbatest.Request(env.handler, http.MethodPost, conversionRecordsAPI, fx.A.Token,
		manualSale("imp-0", old, `,"imported":true`)), 403, "imported")
	if n := len(env.conversions()); n != 0 {
		t.Fatalf("refused imports stored %d conversions", n)
	}

	viaAPI := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, fx.Superuser.Token, body("imp-1"))
	if viaAPI.Code != 201 || viaAPI.JSON["imported"] != true || !strings.HasPrefix(viaAPI.JSON["occurred_at"].(string), "2020-03-01") {
		t.Fatalf("superuser import through the API: %d %s", viaAPI.Code, viaAPI.Body)
	}
	// A superuser naming the program (by slug) imports as well.
	named := strings.Replace(body("imp-3"), `{`, `{"program":"`+mustFind(t, env.app, collections.Programs, fx.ProgramP).GetString(collections.ProgramSlug)+`",`, 1)
	if res := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, fx.Superuser.Token, named); res.Code != 201 || res.JSON["imported"] != true || res.JSON["program"] != fx.ProgramP {
		t.Fatalf("superuser import naming the program: %d %s", res.Code, res.Body)
	}
	viaRecords := pbatest.Request(env.handler, http.MethodPost, conversionRecordsAPI, fx.Superuser.Token, manualSale("imp-2", old, `,"imported":true`))
	if viaRecords.Code != 200 || viaRecords.JSON["imported"] != true {
		t.Fatalf("superuser import through the records API: %d %s", viaRecords.Code, viaRecords.Body)
	}
	env.run()
	for _, conv := range []string{viaAPI.JSON["id"].(string), viaRecords.JSON["id"].(string)} {
		payableAfterRecording(t, env.clickEnv, conv, 30)
	}
	env.ledgerOK()
}

// An admin's correction of an existing sale's date is held to the same window, unless the
// sale is imported.
func TestOccurredAtEditRefused(t *testing.T) {
	env := newEngineEnv(t)
	conv := env.sale("affiliate-a", 1000, time.Now().Add(-time.Hour))
	refusedNaming(t, "edit to 1970", pbatest.Request(env.handler, http.MethodPatch, conversionRecordsAPI+"/"+conv, fx.Superuser.Token,
		`{"occurred_at":"1970-01-01 00:00:00.000Z"}`), 400, "occurred_at")
	if res := pbatest.Request(env.handler, http.MethodPatch, conversionRecordsAPI+"/"+conv, fx.Superuser.Token,
		`{"occurred_at":"2020-01-01 00:00:00.000Z","imported":true}`); res.Code != 200 {
		t.Fatalf("edit marked imported: %d %s", res.Code, res.Body)
	}
}

// A milestone reached in a past month by a sale reported late is held from now, not from the
// end of that month (which may lie more than hold_days back).
func TestLateBonusHeldFromNow(t *testing.T) {
	env := newEngineEnv(t)
	saveRecord(t, env.app, "bonuses", map[string]any{"program": fx.ProgramP, "name": "first sale", "min_conversions": 1, "amount": 500, "active": true})
	res := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		fmt.Sprintf(`{"affiliate_code":"affiliate-a","external_id":"last-month","amount":1000,"currency":"usd","occurred_at":%q}`,
			time.Now().AddDate(0, 0, -45).UTC().Format(time.RFC3339))) // always in an earlier month
	if res.Code != 201 {
		t.Fatalf("sale: %d %s", res.Code, res.Body)
	}
	ran := time.Now()
	env.run()
	bonuses, err := env.app.FindAllRecords(collections.Commissions, dbxEq("kind", "bonus"))
	if err != nil || len(bonuses) != 1 {
		t.Fatalf("bonus: %v %v", bonuses, err)
	}
	if at := bonuses[0].GetDateTime(collections.CommissionPayableAt).Time(); at.Before(ran.AddDate(0, 0, 30).Add(-time.Second)) {
		t.Fatalf("late bonus payable_at %v, want its 30 days' hold from %v", at, ran)
	}
	env.ledgerOK()
}

// Stripe's signed events are trusted: a payment Stripe delivers long after it happened (retries
// for days, a backlog) keeps its payment time even past the attribution window, and its
// commission is held from when it was recorded like any other.
func TestOldStripeSaleTrusted(t *testing.T) {
	s := newStripe(t)
	obj := stripeCheckoutPayment("cs_old", "pi_old", "", 4900)
	obj["metadata"] = map[string]string{"pba_affiliate": s.affiliateCode(fx.A.ID)}
	var event map[string]any
	if err := json.Unmarshal(stripeEvent("evt_old", "checkout.session.completed", obj), &event); err != nil {
		t.Fatal(err)
	}
	paid := time.Now().AddDate(0, 0, -90) // program P's cookie_days are 60
	event["created"] = paid.Unix()
	body, _ := json.Marshal(event)
	stripeWantPrefix(t, "outcome", s.send(body).JSON["outcome"].(string), "recorded conversion")
	c := s.conversion("pi_old")
	if at := c.GetDateTime(collections.ConversionOccurredAt).Time(); at.Sub(paid).Abs() > time.Second {
		t.Fatalf("occurred_at %v, want the payment time %v", at, paid)
	}
	s.run()
	payableAfterRecording(t, s.clickEnv, c.Id, 30)
}
