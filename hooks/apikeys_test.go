package hooks_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// createAPIKey makes a key through POST /api/pba/api-keys as the superuser and returns the
// answer's key and id.
func createAPIKey(t *testing.T, h http.Handler, name string, scopes ...string) (key, id string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"scopes":["%s"]}`, name, strings.Join(scopes, `","`))
	res := pbatest.Request(h, http.MethodPost, "/api/pba/api-keys", fx.Superuser.Token, body)
	if res.Code != 201 {
		t.Fatalf("create key %s: %d %s", name, res.Code, res.Body)
	}
	key, _ = res.JSON["key"].(string)
	id, _ = res.JSON["id"].(string)
	if !strings.HasPrefix(key, "pba_") || len(key) != 44 || res.JSON["prefix"] != key[:12] {
		t.Fatalf("create key: %s", res.Body)
	}
	return key, id
}

// TestAPIKeys: a key is shown once and stored hashed; it opens the routes of its scopes and
// nothing else; revoked, it opens nothing; last_used is written at most once a minute; the
// program secret still works on the sale routes.
func TestAPIKeys(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	h := pbatest.Serve(t, app)

	sales, salesID := createAPIKey(t, h, "shop server", collections.ScopeSalesWrite, collections.ScopeSalesRead)
	stats, _ := createAPIKey(t, h, "dashboard", collections.ScopeStatsRead)
	bearer := func(k string) string { return "Bearer " + k }

	t.Run("bad input names the field", func(t *testing.T) {
		for body, field := range map[string]string{
			`{"name":"","scopes":["sales:read"]}`:                    "name",
			`{"name":"x","scopes":[]}`:                               "scopes",
			`{"name":"x","scopes":["sales:read","everything"]}`:      "scopes",
			`{"name":"x","scopes":["sales:read","sales:read"]}`:      "scopes",
			`{"name":"x","scopes":["sales:read"],"hash":"deadbeef"}`: "hash",
			`{"name":"x","scopes":"sales:read"}`:                     "scopes",
		} {
			res := pbatest.Request(h, http.MethodPost, "/api/pba/api-keys", fx.Superuser.Token, body)
			if data, _ := res.JSON["data"].(map[string]any); res.Code != 400 || data[field] == nil {
				t.Errorf("%s: %d %s, want 400 naming %s", body, res.Code, res.Body, field)
			}
		}
		// Keys cannot make keys, nor affiliates.
		for _, auth := range []string{bearer(sales), fx.A.Token, ""} {
			if res := pbatest.Request(h, http.MethodPost, "/api/pba/api-keys", auth, `{"name":"x","scopes":["sales:read"]}`); res.Code != 401 && res.Code != 403 {
				t.Errorf("create a key as %.12q: %d", auth, res.Code)
			}
		}
	})

	t.Run("shown once, stored hashed", func(t *testing.T) {
		res := pbatest.Request(h, http.MethodGet, "/api/collections/api_keys/records/"+salesID, fx.Superuser.Token, "")
		if res.Code != 200 || strings.Contains(res.Body.String(), sales) || res.JSON["hash"] != nil || res.JSON["prefix"] != sales[:12] {
			t.Fatalf("records API view: %d %s", res.Code, res.Body)
		}
		// The records API cannot create a key (it would have to show or take the key).
		if res := pbatest.Request(h, http.MethodPost, "/api/collections/api_keys/records", fx.Superuser.Token, `{"name":"x","scopes":["sales:read"]}`); res.Code != 400 {
			t.Errorf("records API create: %d %s", res.Code, res.Body)
		}
		if res := pbatest.Request(h, http.MethodPatch, "/api/collections/api_keys/records/"+salesID, fx.Superuser.Token, `{"hash":"00"}`); res.Code != 400 {
			t.Errorf("records API hash change: %d %s", res.Code, res.Body)
		}
		// The key is nowhere in the data dir: not in the database, its WAL or the logs.
		if _, err := app.DB().NewQuery("PRAGMA wal_checkpoint").Execute(); err != nil {
			t.Fatal(err)
		}
		err := filepath.Walk(app.DataDir(), func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(sales)) || bytes.Contains(b, []byte(sales[4:])) {
				t.Errorf("%s holds the key", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var hash string
		if err := app.DB().Select("hash").From("api_keys").Where(dbx.HashExp{"id": salesID}).Row(&hash); err != nil || len(hash) != 64 {
			t.Fatalf("hash %q %v", hash, err)
		}
	})

	t.Run("scopes", func(t *testing.T) {
		sale := `{"external_id":"key-sale-1","amount":2500,"currency":"usd","affiliate_code":"` + affiliateCode(t, app, fx.A.ID) + `"}`
		res := pbatest.Request(h, http.MethodPost, "/api/pba/conversions", bearer(sales), sale)
		if res.Code != 201 || res.JSON["program"] != fx.ProgramP {
			t.Fatalf("sale with sales:write: %d %s", res.Code, res.Body)
		}
		res = pbatest.Request(h, http.MethodPatch, "/api/pba/conversions/api/key-sale-1", bearer(sales), `{"refunded_amount":500,"reason":"partial"}`)
		if res.Code != 200 {
			t.Fatalf("update with sales:write: %d %s", res.Code, res.Body)
		}
		var actor string
		if err := app.DB().NewQuery("SELECT actor FROM conversion_events WHERE conversion = {:c} ORDER BY rowid DESC LIMIT 1").
			Bind(dbx.Params{"c": res.JSON["id"]}).Row(&actor); err != nil || !strings.Contains(actor, "shop server") || strings.Contains(actor, sales) {
			t.Errorf("the update's history names %q (%v), want the key's name", actor, err)
		}
		// The postback takes the key in the header instead of ?key=.
		res = pbatest.Request(h, http.MethodGet, "/api/pba/postback?txid=key-pb-1&amount=10.00&currency=usd&affiliate_code="+affiliateCode(t, app, fx.B.ID), bearer(sales), "")
		if res.Code != 201 {
			t.Fatalf("postback with sales:write: %d %s", res.Code, res.Body)
		}
		// Imports stay the superusers'.
		res = pbatest.Request(h, http.MethodPost, "/api/pba/conversions", bearer(sales), `{"external_id":"key-imp","amount":1,"currency":"usd","affiliate_code":"x","imported":true}`)
		if res.Code != 403 {
			t.Errorf("imported with a key: %d %s", res.Code, res.Body)
		}
		// Wrong scope: 403 naming the scope; a route without one refuses keys.
		res = pbatest.Request(h, http.MethodPost, "/api/pba/conversions", bearer(stats), sale)
		if data, _ := res.JSON["data"].(map[string]any); res.Code != 403 || data["scope"] == nil || !strings.Contains(res.Body.String(), "sales:write") {
			t.Errorf("sale with stats:read: %d %s", res.Code, res.Body)
		}
		if res := pbatest.Request(h, http.MethodGet, "/api/pba/stats?program="+fx.ProgramP, bearer(stats), ""); res.Code != 200 {
			t.Errorf("stats with stats:read: %d %s", res.Code, res.Body)
		}
		for _, path := range []string{"/api/pba/ledger/check", "/api/pba/config", "/api/collections/conversions/records", "/api/pba/terms"} {
			if res := pbatest.Request(h, http.MethodGet, path, bearer(stats), ""); res.Code != 403 || res.JSON["message"] == nil {
				t.Errorf("GET %s with a key: %d %s, want 403 with a message", path, res.Code, res.Body)
			}
		}
		if res := pbatest.Request(h, http.MethodGet, "/api/pba/stats", "Bearer pba_"+strings.Repeat("x", 40), ""); res.Code != 401 {
			t.Errorf("unknown key: %d %s", res.Code, res.Body)
		}
		// The program secret still works on the sale routes, and only there.
		if res := pbatest.Request(h, http.MethodPost, "/api/pba/conversions", "Bearer "+fx.SecretP, strings.Replace(sale, "key-sale-1", "secret-sale-1", 1)); res.Code != 201 {
			t.Errorf("sale with the program secret: %d %s", res.Code, res.Body)
		}
		if res := pbatest.Request(h, http.MethodGet, "/api/pba/postback?key="+fx.SecretP+"&txid=secret-pb-1&amount=1.00&currency=usd&affiliate_code="+affiliateCode(t, app, fx.A.ID), "", ""); res.Code != 201 {
			t.Errorf("postback with the program secret: %d %s", res.Code, res.Body)
		}
		if res := pbatest.Request(h, http.MethodGet, "/api/pba/sales", "Bearer "+fx.SecretP, ""); res.Code != 401 {
			t.Errorf("sales list with the program secret: %d %s", res.Code, res.Body)
		}
	})

	t.Run("last_used at most once a minute", func(t *testing.T) {
		read := func() string {
			var s string
			if err := app.DB().Select("last_used").From("api_keys").Where(dbx.HashExp{"id": salesID}).Row(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		first := read()
		if first == "" {
			t.Fatal("last_used not written")
		}
		if _, err := app.DB().NewQuery("UPDATE api_keys SET last_used = '2020-01-01 00:00:00.000Z' WHERE id = {:id}").Bind(dbx.Params{"id": salesID}).Execute(); err != nil {
			t.Fatal(err)
		}
		if res := pbatest.Request(h, http.MethodGet, "/api/pba/sales", bearer(sales), ""); res.Code != 200 {
			t.Fatalf("sales: %d %s", res.Code, res.Body)
		}
		if got := read(); got != "2020-01-01 00:00:00.000Z" {
			t.Errorf("last_used written again within the minute: %s", got)
		}
	})

	t.Run("revoked", func(t *testing.T) {
		res := pbatest.Request(h, http.MethodPatch, "/api/collections/api_keys/records/"+salesID, fx.Superuser.Token, `{"revoked":true}`)
		if res.Code != 200 || res.JSON["revoked_at"] == "" {
			t.Fatalf("revoke: %d %s", res.Code, res.Body)
		}
		if res := pbatest.Request(h, http.MethodGet, "/api/pba/sales", bearer(sales), ""); res.Code != 401 {
			t.Errorf("revoked key: %d %s", res.Code, res.Body)
		}
		if res := pbatest.Request(h, http.MethodPatch, "/api/collections/api_keys/records/"+salesID, fx.Superuser.Token, `{"revoked":false}`); res.Code != 400 {
			t.Errorf("un-revoke: %d %s", res.Code, res.Body)
		}
	})
}

// affiliateCode is an affiliate's code.
func affiliateCode(t *testing.T, app interface {
	DB() dbx.Builder
}, id string) string {
	t.Helper()
	var code string
	if err := app.DB().Select("code").From(collections.Affiliates).Where(dbx.HashExp{"id": id}).Row(&code); err != nil {
		t.Fatal(err)
	}
	return code
}
