package scaleout

import (
	"errors"
	"net/http"
	"time"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/pocketbase/pocketbase/tools/router"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/ratelimit"
)

// trackClickBodyLimit is the primary's body limit of POST /api/pba/clicks (hooks/routes.go).
const trackClickBodyLimit = 8 << 10

// newAPI is what a node serves besides /r/: POST /api/pba/clicks (track.js) on PocketBase's
// router, with the middlewares the primary's answer passes through (CORS, security headers,
// body limit), so status, body and headers are the primary's; track.js and pba.css when the
// node has the public files; a 404 in PocketBase's shape for anything else.
func (n *Edge) newAPI() (http.Handler, error) {
	rt := router.NewRouter(func(w http.ResponseWriter, r *http.Request) (*core.RequestEvent, router.EventCleanupFunc) {
		e := new(core.RequestEvent)
		e.Response, e.Request = w, r
		return e, nil
	})
	rt.Bind(apis.CORS(apis.CORSConfig{AllowOrigins: n.origins, AllowMethods: apis.DefaultCORSConfig.AllowMethods}))
	rt.Bind(&hook.Handler[*core.RequestEvent]{
		Id: "pbaEdgeSecurityHeaders", Priority: apis.DefaultSecurityHeadersMiddlewarePriority,
		Func: func(e *core.RequestEvent) error {
			hooks.SetRouterSecurityHeaders(e.Response.Header(), e.Request, n.trustedHeaders())
			return e.Next()
		},
	})
	rt.Bind(&hook.Handler[*core.RequestEvent]{
		Id: apis.DefaultRateLimitMiddlewareId, Priority: apis.DefaultRateLimitMiddlewarePriority,
		Func: n.rateLimit,
	})
	rt.POST("/api/pba/clicks", n.handleTrackClick).Bind(apis.BodyLimit(trackClickBodyLimit))
	if n.public != nil {
		for _, name := range []string{"track.js", "pba.css"} {
			rt.GET("/"+name, func(e *core.RequestEvent) error { return e.FileFS(n.public, name) })
		}
	}
	rt.Any("/", func(e *core.RequestEvent) error { return e.NotFoundError("", nil) })
	return rt.BuildMux()
}

// rateLimit is PocketBase's rate-limit middleware on a node (overRateLimit).
func (n *Edge) rateLimit(e *core.RequestEvent) error {
	if err := n.overRateLimit(e.Request); err != nil {
		return err
	}
	return e.Next()
}

// overRateLimit applies the primary's rate-limit rules (the codes bucket's
// edgewire.RateLimitsKey) to r as PocketBase's middleware does on the primary, and returns
// PocketBase's 429 when r is past a rule's limit: the rule whose label is the request's
// "METHOD /path" or "/path" (or the longest matching "/prefix/"), for guests (a node
// authenticates nobody), counted per client address in fixed windows, the settings' excluded
// addresses never limited. A node counts its own requests only: behind a load balancer
// spreading one address over k nodes, that address gets up to k times the limit
// (docs/scaling.md, Differences). Counters start again when the rules change, as PocketBase's.
func (n *Edge) overRateLimit(r *http.Request) *router.ApiError {
	limits := n.catalog.RateLimits()
	if limits == nil || !limits.Enabled || len(limits.Rules) == 0 {
		return nil
	}
	state := n.limits.Load()
	if state == nil || state.of != limits {
		fresh := &edgeLimits{of: limits, config: rateLimitsConfig(limits), counters: ratelimit.NewSet()}
		if n.limits.CompareAndSwap(state, fresh) {
			state = fresh
		} else {
			state = n.limits.Load()
		}
	}
	rule, ok := state.config.FindRateLimitRule([]string{r.Method + " " + r.URL.Path, r.URL.Path},
		core.RateLimitRuleAudienceAll, core.RateLimitRuleAudienceGuest)
	if !ok {
		return nil
	}
	ip := n.clientIP(r)
	if ratelimit.Excluded(limits.ExcludedIPs, ip) ||
		state.counters.Allow(rule.Label+rule.Audience, rule.MaxRequests, rule.Duration, ip, time.Now()) {
		return nil
	}
	n.metrics.rateLimited.WithLabelValues(rule.Label + rule.Audience).Inc()
	return router.NewTooManyRequestsError("", errors.New("triggered rate limit rule: "+rule.String()))
}

// edgeLimits is one version of the primary's rate limits with its counters.
type edgeLimits struct {
	of       *edgewire.RateLimits // the catalog's value these were made from
	config   *core.RateLimitsConfig
	counters *ratelimit.Set
}

// rateLimitsConfig is limits as PocketBase's settings, whose rule lookup the node uses.
func rateLimitsConfig(limits *edgewire.RateLimits) *core.RateLimitsConfig {
	c := &core.RateLimitsConfig{Enabled: limits.Enabled, ExcludedIPs: limits.ExcludedIPs}
	for _, r := range limits.Rules {
		c.Rules = append(c.Rules, core.RateLimitRule{Label: r.Label, Audience: r.Audience, MaxRequests: r.MaxRequests, Duration: r.Duration})
	}
	return c
}

// handleTrackClick is POST /api/pba/clicks on a node: the primary's handler (hooks/tracking.go)
// with the click published to the stream, answered once JetStream acknowledged it.
func (n *Edge) handleTrackClick(e *core.RequestEvent) error {
	body, err := hooks.ReadTrackClick(e)
	if err != nil {
		return err
	}
	outcomes := n.metrics.trackClicks
	target, ok := n.catalog.Resolve(body.Code)
	if !ok {
		outcomes.WithLabelValues(edgeUnknown).Inc()
		return hooks.UnknownTrackCode(e)
	}
	if reason := hooks.InactiveReason(target.Status, target.Active, target.Archived); reason != "" {
		outcomes.WithLabelValues(edgeInactive).Inc()
		n.doors.add(reason, target.ProgramID, target.AffiliateID, target.LinkID)
		return hooks.InactiveTrackCode(e)
	}
	click := n.newClick(e.Request, target, body.Sub, body.Referrer, body.Visitor)
	over := n.overCeiling(click)
	if err := n.publish(e.Request.Context(), click); err != nil {
		outcomes.WithLabelValues(edgeUnavailable).Inc()
		unavailable(e.Response, e.Request, n.log, err)
		return nil
	}
	outcomes.WithLabelValues(edgePublished).Inc()
	if over {
		return hooks.OverCeiling(e, time.UnixMilli(click.Created))
	}
	return hooks.TrackClickRecorded(e, click.ID, click.Visitor, target.CookieDays)
}
