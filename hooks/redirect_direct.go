package hooks

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/router"
)

// redirectPrefix is the path of the affiliate links, GET /r/{code}.
const redirectPrefix = "/r/"

// directRedirects serves GET /r/{code} ahead of PocketBase's router and hands every other
// request to next (the router). The link path is the product's front door: each request
// through the router's chain of global middlewares (activity log, CORS, security headers, body
// limit, auth token, rate limit) costs about a tenth of the redirect's CPU, and none of them
// does anything for an anonymous navigation answered with a 302.
//
// What the router would do still happens, or the router serves the request after all:
//   - a request with an Authorization header (an API client; browsers following a link send
//     none) goes through the router, whose auth middleware the self-click flag relies on;
//   - a request matched by an admin-configured rate-limit rule goes through the router, which
//     enforces the rule;
//   - a path that is not exactly /r/{code}, /r/{code}/ or /r/?query (an old platform's link,
//     tracking.go legacyParams) goes through the router, which answers it as before;
//   - errors are logged and answered as the router's error handler answers them, and a panic
//     becomes a logged 500.
func (t *tracker) directRedirects(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, ok := strings.CutPrefix(r.URL.Path, redirectPrefix)
		code = strings.TrimSuffix(code, "/") // /r/{code}/ is the same link
		if !ok || code == "" && r.URL.RawQuery == "" || strings.IndexByte(code, '/') >= 0 ||
			(r.Method != http.MethodGet && r.Method != http.MethodHead) ||
			r.Header.Get("Authorization") != "" || t.rateLimitRuleApplies(r) {
			next.ServeHTTP(w, r)
			return
		}
		e := &core.RequestEvent{App: t.app}
		e.Request, e.Response = r, w
		defer func() {
			if rec := recover(); rec != nil {
				t.logRedirectError(r, http.StatusInternalServerError, fmt.Errorf("panic: %v", rec))
				router.ErrorHandler(w, r, router.NewInternalServerError("", nil))
			}
		}()
		if err := t.redirect(e, code); err != nil {
			apiErr := router.ToApiError(err)
			t.metrics.countStatus(apiErr.Status) // the router's counter does not see this path
			t.logRedirectError(r, apiErr.Status, err)
			router.ErrorHandler(w, r, apiErr)
		}
	})
}

// rateLimitRuleApplies reports whether one of the admin's enabled rate-limit rules covers
// this request, as PocketBase's rate limiter matches them (method and path, then path
// prefixes; guest audience).
func (t *tracker) rateLimitRuleApplies(r *http.Request) bool {
	limits := &t.app.Settings().RateLimits
	if !limits.Enabled || len(limits.Rules) == 0 {
		return false
	}
	// The audience of a request without an auth token (those with one never get here).
	_, found := limits.FindRateLimitRule([]string{r.Method + " " + r.URL.Path, r.URL.Path},
		core.RateLimitRuleAudienceAll, core.RateLimitRuleAudienceGuest)
	return found
}

// logRedirectError records a failed redirect in the app's logs, as the router's activity
// logger would.
func (t *tracker) logRedirectError(r *http.Request, status int, err error) {
	t.app.Logger().Error("redirect failed", "url", r.URL.RequestURI(), "method", r.Method, "status", status, "error", err)
}
