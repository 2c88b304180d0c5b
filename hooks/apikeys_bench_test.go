package hooks_test

import (
	"net/http"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// BenchmarkAPIKeyAuth measures what authenticating costs on one route (GET /api/pba/owed) with
// an API key (SHA-256, an indexed lookup, last_used skipped within the minute) against a
// superuser's token (PocketBase's JWT check and record lookup), in the same run. Rate limits
// are off so that neither is refused.
func BenchmarkAPIKeyAuth(b *testing.B) {
	app := fx.App(b)
	b.Cleanup(app.Cleanup)
	settings := app.Settings()
	settings.RateLimits.Enabled = false
	if err := app.Save(settings); err != nil {
		b.Fatal(err)
	}
	h := pbatest.Serve(b, app)
	res := pbatest.Request(h, http.MethodPost, "/api/pba/api-keys", fx.Superuser.Token, `{"name":"bench","scopes":["`+collections.ScopeStatsRead+`"]}`)
	if res.Code != 201 {
		b.Fatalf("create key: %d %s", res.Code, res.Body)
	}
	key := "Bearer " + res.JSON["key"].(string)
	for _, c := range []struct{ name, auth string }{{"superuser_token", fx.Superuser.Token}, {"api_key", key}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if res := pbatest.Request(h, http.MethodGet, "/api/pba/owed", c.auth, ""); res.Code != 200 {
					b.Fatalf("%d %s", res.Code, res.Body)
				}
			}
		})
	}
}
