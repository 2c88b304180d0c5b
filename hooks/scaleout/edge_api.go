package scaleout

import (
	"net/http"
	"time"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/pocketbase/pocketbase/tools/router"

	"github.com/pbaffiliate/pbaffiliate/hooks"
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
	rt.POST("/api/pba/clicks", n.handleTrackClick).Bind(apis.BodyLimit(trackClickBodyLimit))
	if n.public != nil {
		for _, name := range []string{"track.js", "pba.css"} {
			rt.GET("/"+name, func(e *core.RequestEvent) error { return e.FileFS(n.public, name) })
		}
	}
	rt.Any("/", func(e *core.RequestEvent) error { return e.NotFoundError("", nil) })
	return rt.BuildMux()
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
