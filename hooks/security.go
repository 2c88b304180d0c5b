package hooks

import (
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
)

// proxyHeaders are the headers reverse proxies put the client's address in.
var proxyHeaders = []string{"X-Forwarded-For", "X-Real-Ip", "Cf-Connecting-Ip", "Fly-Client-Ip", "True-Client-Ip"}

// secretParams are query parameters that carry a secret: the postback's program key, the
// unsubscribe token, PocketBase's file tokens. The request log never stores their values.
var secretParams = []string{"key", "token", "secret"}

// redactedValue replaces a secret in the request log.
const redactedValue = "REDACTED"

// ContentSecurityPolicy is the policy of every page the server answers (the landing page,
// /portal/, /admin/, and whatever else pb_public holds; the unsubscribe and link-not-found
// pages): scripts, styles, images and connections from this server only, no inline script or
// style, no plugins, never inside a frame. The pages' meta tags repeat it (a meta tag cannot
// carry frame-ancestors).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const (
	// pageReferrerPolicy sends full URLs to this server and nothing to other sites. A handler
	// that sets its own (the /r/ redirect) keeps it.
	pageReferrerPolicy = "same-origin"
	// hstsValue asks browsers to use HTTPS for a year, for this host only: other subdomains
	// of the business may not serve HTTPS.
	hstsValue = "max-age=31536000"
)

// registerSecurity adds the router middlewares of docs/operations.md: the pages' security
// headers, secrets kept out of the request log, and a warning when the server runs behind a
// proxy it does not trust (every per-IP rate limit then counts the proxy).
func registerSecurity(app core.App) {
	var warned atomic.Bool
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		se.Router.Bind(&hook.Handler[*core.RequestEvent]{
			Id: "pbaSecurityHeaders",
			// Right after PocketBase's own security headers, before the rate limiter: a 429
			// or any other error page carries them too.
			Priority: apis.DefaultSecurityHeadersMiddlewarePriority + 1,
			Func: func(e *core.RequestEvent) error {
				setSecurityHeaders(e.Response.Header(), e.Request, e.App.Settings().TrustedProxy.Headers)
				return e.Next()
			},
		})
		se.Router.Bind(&hook.Handler[*core.RequestEvent]{
			Id: "pbaRedactLoggedSecrets",
			// Just inside PocketBase's activity logger, which logs e.Request's URL and referer
			// after the rest of the chain (rate limiter, auth, handler) returned: every
			// answer, 429s and errors included, is logged with the secrets replaced.
			Priority: apis.DefaultActivityLoggerMiddlewarePriority + 1,
			Func: func(e *core.RequestEvent) error {
				defer func() { e.Request = redactSecrets(e.Request) }()
				return e.Next()
			},
		})
		se.Router.Bind(&hook.Handler[*core.RequestEvent]{
			Id:       "pbaUntrustedProxy",
			Priority: apis.DefaultRateLimitMiddlewarePriority - 1, // before the limiter counts the request
			Func: func(e *core.RequestEvent) error {
				if !warned.Load() {
					if header := untrustedProxyHeader(e.Request, e.RemoteIP(), e.App.Settings().TrustedProxy.Headers); header != "" && warned.CompareAndSwap(false, true) {
						e.App.Logger().Warn("Requests arrive through a proxy whose address header is not trusted: "+
							"per-IP rate limits and click IPs count the proxy, not the client. "+
							"Set Settings > Application > Trusted proxy (see docs/operations.md).",
							"proxy", e.RemoteIP(), "header", header)
					}
				}
				return e.Next()
			},
		})
		return se.Next()
	})
}

// untrustedProxyHeader returns the proxy header a request from a private or loopback address
// carries while no proxy header is trusted, or "". A public client sending such a header is
// not a proxy of ours, so it says nothing.
func untrustedProxyHeader(r *http.Request, remoteIP string, trusted []string) string {
	if len(trusted) > 0 {
		return ""
	}
	addr, err := netip.ParseAddr(remoteIP)
	if err != nil || !(addr.IsLoopback() || addr.IsPrivate()) {
		return ""
	}
	for _, h := range proxyHeaders {
		if r.Header.Get(h) != "" {
			return h
		}
	}
	return ""
}

// redactSecrets returns r, or a shallow copy of it whose URL query and Referer header carry
// REDACTED in place of every secret parameter's value. The order and every other parameter
// stay, so the log still shows what was asked.
func redactSecrets(r *http.Request) *http.Request {
	query, qok := redactQuery(r.URL.RawQuery)
	referer, rok := "", false
	if ref := r.Header.Get("Referer"); ref != "" {
		if u, err := url.Parse(ref); err == nil {
			if u.RawQuery, rok = redactQuery(u.RawQuery); rok {
				referer = u.String()
			}
		}
	}
	if !qok && !rok {
		return r
	}
	out := r.WithContext(r.Context())
	if qok {
		u := *r.URL
		u.RawQuery = query
		out.URL = &u
	}
	if rok {
		out.Header = r.Header.Clone()
		out.Header.Set("Referer", referer)
	}
	return out
}

// redactQuery replaces the values of secret parameters in a raw query; ok reports a change.
func redactQuery(raw string) (string, bool) {
	if raw == "" {
		return raw, false
	}
	parts := strings.Split(raw, "&")
	changed := false
	for i, part := range parts {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if slices.Contains(secretParams, strings.ToLower(name)) {
			parts[i] = url.QueryEscape(name) + "=" + redactedValue
			changed = true
		}
	}
	return strings.Join(parts, "&"), changed
}

// SetRouterSecurityHeaders sets what the router's middlewares set on every answer (PocketBase's
// security headers, then setSecurityHeaders), for redirect nodes (hooks/scaleout), which
// answer without PocketBase's router.
func SetRouterSecurityHeaders(h http.Header, r *http.Request, trustedProxyHeaders []string) {
	h.Set("X-XSS-Protection", "1; mode=block")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	setSecurityHeaders(h, r, trustedProxyHeaders)
}

// setSecurityHeaders sets the headers of a response to r: the content security and referrer
// policies on everything but PocketBase's dashboard (/_/, which has needs of its own), and
// HSTS on everything served over HTTPS (ServedOverHTTPS). Set before the handler runs, so a
// handler may still replace them.
func setSecurityHeaders(h http.Header, r *http.Request, trustedProxyHeaders []string) {
	if r.URL.Path != "/_" && !strings.HasPrefix(r.URL.Path, "/_/") {
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Referrer-Policy", pageReferrerPolicy)
	}
	if ServedOverHTTPS(r, trustedProxyHeaders) {
		h.Set("Strict-Transport-Security", hstsValue)
	}
}

// ServedOverHTTPS reports whether the client reached the server over HTTPS: TLS on this
// connection (`serve your.domain`), or X-Forwarded-Proto: https from a proxy the settings
// trust (trusted-proxy headers set). Without trusted headers anyone could send
// X-Forwarded-Proto, and HSTS sent over plain HTTP on a server without HTTPS would lock
// browsers out of it.
func ServedOverHTTPS(r *http.Request, trustedProxyHeaders []string) bool {
	if r.TLS != nil {
		return true
	}
	return len(trustedProxyHeaders) > 0 && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}
