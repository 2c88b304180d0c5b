package scaleout

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
)

// BenchmarkRedirectRateLimitCheck is what the rate limits add to every /r/ on an edge with
// the shipped rules (15, none covering /r/): the same lookup the primary makes per redirect
// (hooks/redirect_direct.go).
func BenchmarkRedirectRateLimitCheck(b *testing.B) {
	n, err := NewEdge(nil, hooks.Config{IPSalt: "bench"}, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	limits := edgewire.RateLimits{Enabled: true}
	for _, l := range []string{"*:auth", "*:requestPasswordReset", "*:requestVerification", "*:requestEmailChange",
		"*:requestOTP", "affiliates:create", "*:create", "GET /api/pba/postback", "/api/pba/conversions/",
		"POST /api/pba/clicks", "POST /api/pba/stripe/webhook", "POST /api/pba/resend/webhook", "/api/batch", "/api/"} {
		limits.Rules = append(limits.Rules, edgewire.RateLimitRule{Label: l, MaxRequests: 300, Duration: 10})
	}
	e, err := edgewire.RateLimitsEntry(limits)
	if err != nil {
		b.Fatal(err)
	}
	if err := n.catalog.Put(e.Key, e.Value); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/r/spring-sale", nil)
	b.ReportAllocs()
	for b.Loop() {
		if n.overRateLimit(req) != nil {
			b.Fatal("limited")
		}
	}
}
