package hooks

import (
	"net/http"
	"net/netip"
	"sync/atomic"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
)

// proxyHeaders are the headers reverse proxies put the client's address in.
var proxyHeaders = []string{"X-Forwarded-For", "X-Real-Ip", "Cf-Connecting-Ip", "Fly-Client-Ip", "True-Client-Ip"}

// registerSecurity adds the router middlewares of docs/operations.md: a warning when the server
// runs behind a proxy it does not trust (every per-IP rate limit then counts the proxy).
func registerSecurity(app core.App) {
	var warned atomic.Bool
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
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
