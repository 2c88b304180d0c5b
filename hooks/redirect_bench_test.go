package hooks_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// BenchmarkRedirect measures GET /r/{code} end to end in process: the direct path, the click's
// policy (hash, bot, rate, ceiling), the group commit it waits for and the 302. 64 concurrent
// visitors keep the writer's batches full, as a busy server's do. The rate limit and the
// ceiling are at their defaults, and visitors rotate over 65,536 addresses, so the limits
// count every click but refuse none: the clicks are unflagged and stored in full.
func BenchmarkRedirect(b *testing.B) {
	cfg := fx.Config
	cfg.ClickRateLimit, cfg.ClickIPCeiling = hooks.DefaultClickRateLimit, hooks.DefaultClickIPCeiling
	app := fx.AppWith(b, cfg)
	b.Cleanup(app.Cleanup)
	h := pbatest.Serve(b, app)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32) // × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			req := httptest.NewRequest(http.MethodGet, "/r/"+linkA, nil)
			req.RemoteAddr = fmt.Sprintf("10.%d.%d.1:4000", i/256%256, i%256)
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusFound {
				b.Errorf("%d %s", w.Code, w.Body)
				return
			}
		}
	})
}
