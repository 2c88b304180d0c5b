package hooks_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestMerchantAPI: the merchant API's lists filter and page with a cursor (every sale once,
// newest first), bad filters are 400s naming the parameter, and affiliates:write creates and
// approves affiliates through the records API's hooks (the approval mail is queued).
func TestMerchantAPI(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	h := pbatest.Serve(t, app)
	reader, _ := createAPIKey(t, h, "reader", collections.ScopeSalesRead, collections.ScopeAffiliatesRead, collections.ScopePayoutsRead)
	writer, _ := createAPIKey(t, h, "crm", collections.ScopeAffiliatesWrite)
	sales, _ := createAPIKey(t, h, "shop", collections.ScopeSalesWrite)
	read := func(path string) *pbatest.Response {
		t.Helper()
		return pbatest.Request(h, http.MethodGet, path, "Bearer "+reader, "")
	}

	// Seven sales of A over three days (and B's from the fixture), one of them rejected.
	codeA := affiliateCode(t, app, fx.A.ID)
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	for i := range 7 {
		at := day.AddDate(0, 0, i%3).Add(time.Duration(i) * time.Hour).Format(time.RFC3339)
		body := fmt.Sprintf(`{"external_id":"m-%d","amount":%d,"currency":"usd","affiliate_code":%q,"occurred_at":%q}`, i, 1000+i, codeA, at)
		if i == 6 {
			body = strings.Replace(body, `"currency"`, `"status":"rejected","currency"`, 1)
		}
		if res := pbatest.Request(h, http.MethodPost, "/api/pba/conversions", "Bearer "+sales, body); res.Code != 201 {
			t.Fatalf("sale %d: %d %s", i, res.Code, res.Body)
		}
	}

	t.Run("sales: cursor pagination", func(t *testing.T) {
		seen := map[string]bool{}
		var last string
		cursor := ""
		pages := 0
		for {
			res := read("/api/pba/sales?affiliate=" + fx.A.ID + "&limit=3&cursor=" + url.QueryEscape(cursor))
			if res.Code != 200 {
				t.Fatalf("page: %d %s", res.Code, res.Body)
			}
			pages++
			for _, it := range res.JSON["items"].([]any) {
				m := it.(map[string]any)
				id, at := m["id"].(string), m["occurred_at"].(string)
				if seen[id] || m["affiliate"] != fx.A.ID {
					t.Errorf("sale %s twice or not A's: %v", id, m)
				}
				if last != "" && at > last {
					t.Errorf("not newest first: %s after %s", at, last)
				}
				seen[id], last = true, at
			}
			cursor, _ = res.JSON["next_cursor"].(string)
			if cursor == "" {
				break
			}
		}
		var want int
		if err := app.DB().Select("count(*)").From(collections.Conversions).Where(dbx.HashExp{"affiliate": fx.A.ID}).Row(&want); err != nil {
			t.Fatal(err)
		}
		if len(seen) != want || want < 8 || pages != (want+2)/3 {
			t.Errorf("%d sales in %d pages, want %d", len(seen), pages, want)
		}
	})

	t.Run("sales: filters", func(t *testing.T) {
		count := func(q string) int {
			t.Helper()
			res := read("/api/pba/sales?limit=200&" + q)
			if res.Code != 200 {
				t.Fatalf("%s: %d %s", q, res.Code, res.Body)
			}
			return len(res.JSON["items"].([]any))
		}
		if n := count("affiliate=" + fx.A.ID + "&status=rejected"); n != 1 {
			t.Errorf("rejected: %d", n)
		}
		d := day.Format(time.DateOnly)
		if n := count("affiliate=" + fx.A.ID + "&source=api&from=" + d + "&to=" + d); n != 3 {
			t.Errorf("one day: %d, want 3", n)
		}
		var inQ int
		if err := app.DB().Select("count(*)").From(collections.Conversions).Where(dbx.HashExp{"program": fx.ProgramQ}).Row(&inQ); err != nil {
			t.Fatal(err)
		}
		if n := count("program=" + fx.ProgramQ); n != inQ {
			t.Errorf("Q's sales: %d, want %d", n, inQ)
		}
		for q, field := range map[string]string{
			"status=paid": "status", "from=yesterday": "from", "limit=0": "limit", "limit=201": "limit",
			"cursor=%25%25": "cursor", "affiliate=nobody": "affiliate",
		} {
			res := read("/api/pba/sales?" + q)
			if data, _ := res.JSON["data"].(map[string]any); res.Code != 400 || data[field] == nil {
				t.Errorf("%s: %d %s, want 400 naming %s", q, res.Code, res.Body, field)
			}
		}
	})

	t.Run("affiliates and payouts", func(t *testing.T) {
		res := read("/api/pba/affiliates?status=approved&program=" + fx.ProgramP)
		if res.Code != 200 || len(res.JSON["items"].([]any)) != 2 || !strings.Contains(res.Body.String(), fx.A.Email) {
			t.Fatalf("approved affiliates: %d %s", res.Code, res.Body)
		}
		if strings.Contains(res.Body.String(), "password") || strings.Contains(res.Body.String(), "tokenKey") {
			t.Errorf("hidden fields in the answer: %s", res.Body)
		}
		if res := read("/api/pba/affiliates/" + fx.B.ID); res.Code != 200 || res.JSON["email"] != fx.B.Email {
			t.Errorf("one affiliate: %d %s", res.Code, res.Body)
		}
		if res := read("/api/pba/affiliates/nobody"); res.Code != 404 {
			t.Errorf("unknown affiliate: %d", res.Code)
		}
		if res := read("/api/pba/affiliates?email=" + url.QueryEscape(strings.ToUpper(fx.A.Email))); res.Code != 200 || len(res.JSON["items"].([]any)) != 1 {
			t.Errorf("by email: %d %s", res.Code, res.Body)
		}
		if res := read("/api/pba/payouts?affiliate=" + fx.A.ID); res.Code != 200 || len(res.JSON["items"].([]any)) != 1 {
			t.Errorf("A's payouts: %d %s", res.Code, res.Body)
		}
		if res := read("/api/pba/payouts?status=lost"); res.Code != 400 {
			t.Errorf("bad payout status: %d", res.Code)
		}
		// Reading is not writing.
		if res := pbatest.Request(h, http.MethodPatch, "/api/pba/affiliates/"+fx.B.ID, "Bearer "+reader, `{"status":"suspended"}`); res.Code != 403 {
			t.Errorf("PATCH with read scopes: %d", res.Code)
		}
	})

	t.Run("affiliates:write goes through the records API's hooks", func(t *testing.T) {
		write := func(method, path, body string) *pbatest.Response {
			return pbatest.Request(h, method, path, "Bearer "+writer, body)
		}
		res := write(http.MethodPost, "/api/pba/affiliates", `{"name":"Grace Hopper","email":"grace@fixture.test","program":"`+fx.ProgramP+`","tags":["crm"]}`)
		if res.Code != 201 || res.JSON["status"] != collections.AffiliatePending || res.JSON["code"] == "" || res.JSON["email"] != "grace@fixture.test" {
			t.Fatalf("create: %d %s", res.Code, res.Body)
		}
		id := res.JSON["id"].(string)
		res = write(http.MethodPatch, "/api/pba/affiliates/"+id, `{"status":"approved","tier":"`+fx.TierP+`"}`)
		if res.Code != 200 || res.JSON["status"] != collections.AffiliateApproved || res.JSON["tier"] != fx.TierP {
			t.Fatalf("approve: %d %s", res.Code, res.Body)
		}
		var templates []string
		if err := app.DB().Select("template").From(collections.Deliveries).Where(dbx.HashExp{"affiliate": id}).Column(&templates); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(templates, ","), "approved") {
			t.Errorf("deliveries after approval: %v, want the approval mail", templates)
		}
		// The same validation as the records API, each refusal naming its field.
		for body, field := range map[string]string{
			`{"name":"x"}`:                              "email",
			`{"email":"not-an-email"}`:                  "email",
			`{"email":"a@x.test","code":"A B"}`:         "code",
			`{"email":"a@x.test","status":"gone"}`:      "status",
			`{"email":"a@x.test","password":"x"}`:       "password",
			`{"name":"x","email":"` + fx.A.Email + `"}`: "email",
			`{"email":"a@x.test","timezone":"Mars"}`:    "timezone",
		} {
			res := write(http.MethodPost, "/api/pba/affiliates", body)
			if data, _ := res.JSON["data"].(map[string]any); res.Code != 400 || data[field] == nil {
				t.Errorf("create %s: %d %s, want 400 naming %s", body, res.Code, res.Body, field)
			}
		}
		if res := write(http.MethodPatch, "/api/pba/affiliates/"+id, `{}`); res.Code != 400 {
			t.Errorf("empty patch: %d", res.Code)
		}
		if res := write(http.MethodPatch, "/api/pba/affiliates/nobody", `{"status":"approved"}`); res.Code != 404 {
			t.Errorf("unknown affiliate: %d", res.Code)
		}
	})
}
