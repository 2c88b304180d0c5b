package hooks_test

import (
	"crypto/tls"
	"net/http"
	"testing"
	"testing/fstest"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// Every page the server answers carries the Content-Security-Policy and the Referrer-Policy
// as headers: pages served from a static directory as main.go serves pb_public (whatever the
// directory holds: the header is not per page), the link-not-found page of the direct /r/
// path, the unsubscribe page. PocketBase's dashboard keeps its own. HSTS is sent only when the
// client came over HTTPS: TLS, or X-Forwarded-Proto from a trusted proxy.
func TestSecurityHeaders(t *testing.T) {
	app := fx.App(t)
	t.Cleanup(app.Cleanup)
	pages := fstest.MapFS{
		"index.html":          {Data: []byte("<!doctype html><title>landing</title>")},
		"portal/index.html":   {Data: []byte("<!doctype html><title>portal</title>")},
		"admin/index.html":    {Data: []byte("<!doctype html><title>admin</title>")},
		"admin/assets/app.js": {Data: []byte("console.log(1)")},
	}
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		se.Router.GET("/{path...}", apis.Static(pages, false)) // as main.go serves pb_public
		return se.Next()
	})
	h := pbatest.Serve(t, app)
	get := func(path string, opts ...func(*http.Request)) *pbatest.Response {
		return pbatest.Request(h, http.MethodGet, path, "", "", opts...)
	}
	overTLS := func(r *http.Request) { r.TLS = &tls.ConnectionState{} }
	forwardedHTTPS := pbatest.Header("X-Forwarded-Proto", "https")

	for _, path := range []string{"/", "/portal/", "/admin/", "/admin/assets/app.js", "/r/no-such-code", "/api/pba/unsubscribe?token=bad"} {
		res := get(path)
		if csp := res.Header().Get("Content-Security-Policy"); csp != hooks.ContentSecurityPolicy {
			t.Errorf("%s (%d): Content-Security-Policy %q", path, res.Code, csp)
		}
		if rp := res.Header().Get("Referrer-Policy"); rp != "same-origin" {
			t.Errorf("%s: Referrer-Policy %q", path, rp)
		}
		if hsts := res.Header().Get("Strict-Transport-Security"); hsts != "" {
			t.Errorf("%s over plain HTTP: HSTS %q", path, hsts)
		}
		if hsts := get(path, overTLS).Header().Get("Strict-Transport-Security"); hsts != "max-age=31536000" {
			t.Errorf("%s over TLS: HSTS %q", path, hsts)
		}
		if hsts := get(path, forwardedHTTPS).Header().Get("Strict-Transport-Security"); hsts != "" {
			t.Errorf("%s with X-Forwarded-Proto from an untrusted peer: HSTS %q", path, hsts)
		}
	}
	if res := get("/"); res.Code != http.StatusOK || res.Body.String() != "<!doctype html><title>landing</title>" {
		t.Fatalf("the landing page: %d %s", res.Code, res.Body)
	}
	// The dashboard is PocketBase's page: its own policy, only HSTS from us.
	if res := get("/_/", overTLS); res.Header().Get("Content-Security-Policy") == hooks.ContentSecurityPolicy ||
		res.Header().Get("Strict-Transport-Security") == "" {
		t.Errorf("/_/: CSP %q, HSTS %q", res.Header().Get("Content-Security-Policy"), res.Header().Get("Strict-Transport-Security"))
	}
	// A handler's own referrer policy stands: the /r/ redirect (here through the router).
	if res := get("/r/affiliate-a-main", pbatest.Header("Authorization", fx.A.Token)); res.Code != http.StatusFound ||
		res.Header().Get("Referrer-Policy") != "no-referrer-when-downgrade" {
		t.Errorf("/r/ through the router: %d, Referrer-Policy %q", res.Code, res.Header().Get("Referrer-Policy"))
	}

	// Behind a proxy the settings trust, its X-Forwarded-Proto counts.
	settings := app.Settings()
	settings.TrustedProxy.Headers = []string{"X-Forwarded-For"}
	if err := app.Save(settings); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/portal/", "/r/no-such-code"} {
		if hsts := get(path, forwardedHTTPS).Header().Get("Strict-Transport-Security"); hsts != "max-age=31536000" {
			t.Errorf("%s from a trusted proxy over HTTPS: HSTS %q", path, hsts)
		}
		if hsts := get(path, pbatest.Header("X-Forwarded-Proto", "http")).Header().Get("Strict-Transport-Security"); hsts != "" {
			t.Errorf("%s from a trusted proxy over HTTP: HSTS %q", path, hsts)
		}
	}
}
