package hooks_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// BenchmarkRouterOverhead measures what a request through PocketBase's router costs with
// pbaffiliate's global middlewares (security headers, log redaction, proxy check, write guard)
// and with the shipped rate limits, against PocketBase alone, on the cheapest route
// (GET /api/health?key=…, so the redaction has work). Clients rotate over 4096 addresses, so
// the limiter counts but never refuses. /r/ is served ahead of the router and pays none of it.
func BenchmarkRouterOverhead(b *testing.B) {
	serve := func(b *testing.B, limits bool, hooked bool) http.Handler {
		app := pbatest.TempApp(b)
		if hooked {
			app = fx.App(b)
			b.Cleanup(app.Cleanup)
		}
		settings := app.Settings()
		settings.RateLimits.Enabled = limits
		if err := app.Save(settings); err != nil {
			b.Fatal(err)
		}
		return pbatest.Serve(b, app)
	}
	for _, c := range []struct {
		name           string
		limits, hooked bool
	}{
		{"pocketbase", false, false},
		{"pbaffiliate_limits_off", false, true},
		{"pbaffiliate_limits_on", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := serve(b, c.limits, c.hooked)
			reqs := make([]*http.Request, 4096)
			for i := range reqs {
				reqs[i] = httptest.NewRequest(http.MethodGet, "/api/health?key=s3cret&x=1", nil)
				reqs[i].RemoteAddr = fmt.Sprintf("10.%d.%d.1:4000", i/256, i%256)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, reqs[i%len(reqs)])
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
