package hooks_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// BenchmarkAssetList: an affiliate's GET /api/pba/assets with 20 assets (each body parsed and
// rendered as text and HTML per request), against GET /api/pba/balance in the same run as the
// yardstick of a small authenticated route.
func BenchmarkAssetList(b *testing.B) {
	app := fx.App(b)
	defer app.Cleanup()
	for i := range 20 {
		_, err := pbatest.Save(app, collections.Assets, map[string]any{"program": fx.ProgramP, "kind": "email", "title": fmt.Sprint("asset ", i), "active": true,
			"destination": "https://example.com/spring",
			"body":        `<p>Hi, I'm {{.Name}}. {{.Program}} has a spring sale: <a href="{{.Link}}">shop now</a>{{if .Coupon}} with my code <b>{{.Coupon}}</b>{{end}}.</p><p>Code: {{.Code}}</p>`})
		if err != nil {
			b.Fatal(err)
		}
	}
	app.Settings().RateLimits.Enabled = false // a benchmark is one client asking fast
	h := pbatest.Serve(b, app)
	for _, route := range []string{"/api/pba/assets", "/api/pba/balance"} {
		b.Run(route, func(b *testing.B) {
			for b.Loop() {
				if res := pbatest.Request(h, http.MethodGet, route, fx.A.Token, ""); res.Code != 200 {
					b.Fatalf("%d %s", res.Code, res.Body)
				}
			}
		})
	}
}
