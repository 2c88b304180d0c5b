package scaleout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pocketbase/pocketbase/tools/router"
	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Edge is a redirect node: it resolves /r/{code} and track.js's POST /api/pba/clicks from the
// catalog it watches in the codes bucket and answers once the click is stored in the click
// stream; its door visits go to the stream each second. It keeps no state of its own: a new
// node catches up from the bucket in one pass.
type Edge struct {
	cfg      hooks.Config
	js       jetstream.JetStream
	catalog  *edgewire.Catalog
	ids      store.OrderedIDs
	hasher   *clickpolicy.IPHasher
	ipHeader string // a header a trusted proxy sets to the client's address; "" trusts the TCP peer
	log      *slog.Logger
	ready    chan struct{}
	origins  []string     // CORS origins of the API, as `serve --origins`
	public   fs.FS        // pb_public: track.js and pba.css; nil serves neither
	api      http.Handler // everything but /r/ (newAPI)
	doors    doorCounter
	metrics  *edgeMetrics
	// policy predicts the primary's ceiling from this node's own clicks: past it, the node
	// answers as the primary does (no click named, 429 to track.js); the primary, which sees
	// every node's clicks, still decides what is stored.
	policy *hooks.ClickClassifier
	// limits is the primary's rate limits as last seen in the catalog, with their counters
	// (overRateLimit).
	limits atomic.Pointer[edgeLimits]
}

// EdgeOption sets an optional part of a node.
type EdgeOption func(*Edge)

// WithOrigins sets the CORS origins of POST /api/pba/clicks (the primary's `serve --origins`;
// default "*").
func WithOrigins(origins []string) EdgeOption { return func(n *Edge) { n.origins = origins } }

// WithPublic serves track.js and pba.css (the 404 page's style) from public, the primary's
// pb_public, so a merchant's page can load track.js from an edge and post its clicks there.
func WithPublic(public fs.FS) EdgeOption { return func(n *Edge) { n.public = public } }

// NewEdge makes a node publishing with js; cfg gives the IP salt (the primary's, so hashes
// match), the fallback URL and the country header.
func NewEdge(js jetstream.JetStream, cfg hooks.Config, ipHeader string, log *slog.Logger, opts ...EdgeOption) (*Edge, error) {
	if cfg.IPSalt == "" {
		return nil, errors.New("edge: PBA_IP_SALT must be set (the primary's salt, so visitors' IP hashes match)")
	}
	n := &Edge{cfg: cfg, js: js, catalog: edgewire.NewCatalog(), hasher: clickpolicy.NewIPHasher([]byte(cfg.IPSalt)),
		ipHeader: ipHeader, log: log, ready: make(chan struct{}), policy: hooks.NewClickClassifier(cfg)}
	n.doors = doorCounter{js: js, ids: &n.ids}
	n.metrics = newEdgeMetrics(func() float64 { return float64(n.catalog.Len()) })
	n.doors.failures = n.metrics.publishFailures.WithLabelValues("doors").Inc
	for _, o := range opts {
		o(n)
	}
	api, err := n.newAPI()
	if err != nil {
		return nil, err
	}
	n.api = api
	return n, nil
}

// Ready is closed once the node has read the whole bucket.
func (n *Edge) Ready() <-chan struct{} { return n.ready }

// Watch applies the codes bucket to the catalog until ctx ends: every key once, then each
// change as it is published.
func (n *Edge) Watch(ctx context.Context) error {
	kv, err := n.js.KeyValue(ctx, CodesBucket)
	if err != nil {
		return fmt.Errorf("edge: codes bucket: %w", err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("edge: watch codes: %w", err)
	}
	go func() {
		defer w.Stop()
		initial := true
		for u := range w.Updates() {
			if u == nil { // the end of the bucket's current contents
				if initial {
					initial = false
					close(n.ready)
				}
				continue
			}
			n.metrics.catalogChanged()
			switch u.Operation() {
			case jetstream.KeyValuePut:
				if err := n.catalog.Put(u.Key(), u.Value()); err != nil {
					n.log.Error("edge: unreadable code entry", "key", u.Key(), "error", err)
				}
			default: // deleted or purged
				n.catalog.Delete(u.Key())
			}
		}
	}()
	return nil
}

// ServeHTTP answers GET/HEAD /r/{code} (and /r/?via=CODE) as the primary does, outside any
// router as on the primary (redirect_direct.go); everything else goes to the node's API.
func (n *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code, ok := strings.CutPrefix(r.URL.Path, "/r/")
	code = strings.TrimSuffix(code, "/")
	if !ok || strings.IndexByte(code, '/') >= 0 || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		n.api.ServeHTTP(w, r)
		return
	}
	if err := n.overRateLimit(r); err != nil {
		// An admin's rule covering /r/ bites as on the primary, where such requests go
		// through the router (hooks/redirect_direct.go).
		hooks.SetRouterSecurityHeaders(w.Header(), r, n.trustedHeaders())
		router.ErrorHandler(w, r, err)
		return
	}
	query := r.URL.Query()
	if code == "" {
		code = hooks.LegacyCode(query)
	}
	target, ok := n.catalog.Resolve(strings.ToLower(code))
	if !ok {
		n.metrics.redirects.WithLabelValues(edgeUnknown).Inc()
		n.unknown(w, r)
		return
	}
	if reason := hooks.InactiveReason(target.Status, target.Active, target.Archived); reason != "" {
		// The program's own destination, no click and no cookie, counted (redirect_doors.go).
		location, err := target.ProgramDestination.Target("", "")
		if err != nil {
			n.log.Warn("edge: program destination no longer allowed", "program", target.ProgramID, "error", err)
			n.metrics.redirects.WithLabelValues(edgeUnknown).Inc()
			n.unknown(w, r)
			return
		}
		n.metrics.redirects.WithLabelValues(edgeInactive).Inc()
		n.doors.add(reason, target.ProgramID, target.AffiliateID, target.LinkID)
		sendOn(w, location)
		return
	}
	visitor := ""
	if c, err := r.Cookie(hooks.VisitorCookie); err == nil && hooks.ValidVisitor(c.Value) {
		visitor = c.Value
	}
	click := n.newClick(r, target, query.Get("sub"), r.Referer(), visitor)
	over := n.overCeiling(click)
	named := click.ID
	if over {
		named = "" // counted, not stored: there is no click to name (as on the primary)
	}
	location, err := target.Destination.Target(query.Get("to"), named)
	if err != nil { // the program's domains changed under the link, as on the primary
		n.log.Warn("edge: link destination no longer allowed", "link", target.LinkID, "error", err)
		n.metrics.redirects.WithLabelValues(edgeUnknown).Inc()
		n.unknown(w, r)
		return
	}
	if err := n.publish(r.Context(), click); err != nil {
		n.metrics.redirects.WithLabelValues(edgeUnavailable).Inc()
		unavailable(w, r, n.log, err)
		return
	}
	n.metrics.redirects.WithLabelValues(edgePublished).Inc()
	// Secure over TLS to this node or to the trusted proxy in front of it (--ip-header names
	// one): the primary's rule, so a node behind a TLS-terminating load balancer marks them too.
	if !over {
		secure := hooks.ServedOverHTTPS(r, n.trustedHeaders())
		hooks.SetClickCookies(w.Header(), click.ID, click.Visitor, click.NewVisitor, target.CookieDays, secure)
	}
	sendOn(w, location)
}

// newClick is the click of a visitor of target, as the primary's newClick builds it from the
// request: a new visitor's id is its click's id, an invalid sub gives way to the link's own,
// the text is capped and the IP hashed. The flags are decided at ingestion.
func (n *Edge) newClick(r *http.Request, target edgewire.Target, sub, referrer, visitor string) edgewire.Click {
	now := time.Now()
	click := edgewire.Click{ID: n.ids.Next(now), Link: target.LinkID, Affiliate: target.AffiliateID,
		Program: target.ProgramID, Visitor: visitor, Created: now.UnixMilli()}
	if click.Visitor == "" {
		click.Visitor, click.NewVisitor = click.ID, true
	}
	if c, err := r.Cookie(hooks.SelfCookie); err == nil && c.Value == target.AffiliateID {
		click.SelfCookie = true
	}
	if !textcheck.Line(sub) || strings.TrimSpace(sub) == "" {
		sub = target.SubID
	}
	text := clickpolicy.ClickText{UserAgent: r.UserAgent(), Referrer: referrer, SubID: sub,
		Country: clickpolicy.Country(r.Header, n.cfg.CountryHeader)}.Capped()
	click.UserAgent, click.Referrer, click.SubID, click.Country = text.UserAgent, text.Referrer, text.SubID, text.Country
	click.IPHash, click.NetworkHash = n.hasher.HashWithNetwork(n.clientIP(r))
	return click
}

// overCeiling reports whether this node's own clicks of click's network this hour put it past
// the primary's ceiling (a flagged click only, as on the primary). The click is published all
// the same, so the primary counts it; a network whose clicks spread over several nodes is
// caught at ingestion instead, where the click is counted and not stored.
func (n *Edge) overCeiling(click edgewire.Click) bool {
	_, admission := n.policy.Classify(click.NetworkHash, click.Link, click.Affiliate, click.UserAgent,
		time.UnixMilli(click.Created), click.SelfCookie)
	return admission == clickpolicy.CountOnly
}

// publish stores click in the stream and returns once JetStream acknowledged it; the click id
// is the message id, so a retried publish is stored once.
func (n *Edge) publish(ctx context.Context, click edgewire.Click) error {
	body, err := edgewire.EncodeClick(click)
	if err != nil {
		return err
	}
	start := time.Now()
	err = n.publishRetrying(ctx, click.ID, body, start.Add(publishBudget))
	n.metrics.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		n.metrics.publishFailures.WithLabelValues("click").Inc()
		return fmt.Errorf("publish click %s: %w", click.ID, err)
	}
	return nil
}

// publishRetrying publishes body under id, again under the same id (stored once: the stream
// de-duplicates within 2 minutes) while the visitor can still wait: a crashed stream leader
// leaves the cluster without one for the 4–9 s of an election, and a slow redirect beats a 503.
func (n *Edge) publishRetrying(ctx context.Context, id string, body []byte, deadline time.Time) error {
	pause := 50 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, min(publishAttempt, time.Until(deadline)))
		_, err := n.js.Publish(attempt, ClickSubject, body, jetstream.WithMsgID(id))
		cancel()
		if err == nil || ctx.Err() != nil || time.Until(deadline) < pause {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// A click's publish: each attempt is bounded by publishAttempt, all of them by publishBudget,
// what a visitor waits at most before a 503 (docs/scaling.md, "Failures, measured").
const (
	publishAttempt = 2 * time.Second
	publishBudget  = 10 * time.Second
)

// unknown answers a code nothing resolves: the fallback URL (counted, as on the primary),
// else the primary's 404 page.
func (n *Edge) unknown(w http.ResponseWriter, r *http.Request) {
	if n.cfg.FallbackURL != "" {
		n.doors.add(collections.InactiveUnknownCode, "", "", "")
		sendOn(w, n.cfg.FallbackURL)
		return
	}
	hooks.WriteNotFoundPage(w, r, n.trustedHeaders())
}

// trustedHeaders are the proxy headers the node believes, for HSTS behind a TLS-ending proxy
// (as the primary's trusted-proxy setting).
func (n *Edge) trustedHeaders() []string {
	if n.ipHeader == "" {
		return nil
	}
	return []string{n.ipHeader}
}

// unavailable answers a click whose publish failed as the primary answers one its writer
// could not take: 503 with Retry-After, in PocketBase's error shape.
func unavailable(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	log.Error("edge: click not stored", "error", err)
	w.Header().Set("Retry-After", "1")
	router.ErrorHandler(w, r, router.NewApiError(http.StatusServiceUnavailable, "The click could not be recorded; please retry.", nil))
}

// clientIP is the visitor's address: the last address of ipHeader when set (the proxy's
// own entry, as PocketBase reads trusted headers), else the TCP peer.
func (n *Edge) clientIP(r *http.Request) string {
	if n.ipHeader != "" {
		if v := r.Header.Values(n.ipHeader); len(v) > 0 {
			ips := strings.Split(v[len(v)-1], ",")
			if ip := net.ParseIP(strings.TrimSpace(ips[len(ips)-1])); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func sendOn(w http.ResponseWriter, location string) {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer-when-downgrade")
	w.WriteHeader(http.StatusFound)
}

// NewEdgeCommand is `pbaffiliate edge --nats URL[,URL…] --http ADDR`; public (pb_public)
// gives it track.js and pba.css.
func NewEdgeCommand(public fs.FS) *cobra.Command {
	var urls, addr, ipHeader string
	var origins []string
	var security Security
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run a stateless redirect node fed by a primary through NATS JetStream (docs/scaling.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if urls == "" {
				return errors.New("edge: --nats is required")
			}
			natsOpts, err := security.Options()
			if err != nil {
				return fmt.Errorf("edge: %w", err)
			}
			// The command line is right from here on: a runtime error (no server, an address
			// taken) prints itself, not the usage text as well.
			cmd.SilenceUsage = true
			log := slog.Default()
			nc, js, err := Connect(urls, "pbaffiliate-edge", natsOpts...)
			if err != nil {
				return err
			}
			defer nc.Close()
			cfg := hooks.ConfigFromEnv()
			node, err := NewEdge(js, cfg, ipHeader, log, WithOrigins(origins), WithPublic(public))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := node.Watch(ctx); err != nil {
				return err
			}
			select {
			case <-node.Ready():
			case <-ctx.Done():
				return nil
			}
			go node.CountDoors(ctx)
			defer func() { // after the last answer: its door visit is published too
				flush, cancel := context.WithTimeout(context.Background(), opTimeout)
				defer cancel()
				if err := node.FlushDoors(flush); err != nil {
					log.Error("edge: door counts lost at shutdown", "error", err)
				}
			}()
			if metricsAddr != "" {
				ms := &http.Server{Addr: metricsAddr, Handler: node.MetricsHandler(cfg.MetricsToken), ReadHeaderTimeout: 10 * time.Second}
				ln, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					return fmt.Errorf("edge: --metrics: %w", err)
				}
				go func() { _ = ms.Serve(ln) }()
				go func() {
					<-ctx.Done()
					_ = ms.Close()
				}()
			}
			srv := &http.Server{Addr: addr, Handler: node, ReadHeaderTimeout: 10 * time.Second}
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdown) // answers in flight finish (their clicks are acknowledged)
			}()
			log.Info("edge: serving redirects", "http", addr, "codes", node.catalog.Len())
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("edge: %w", err)
			}
			<-drained // ListenAndServe returns at once; Shutdown waits for the answers in flight
			return nil
		},
	}
	cmd.Flags().StringVar(&urls, "nats", "", "NATS servers, URL[,URL…] (required; tls:// or --nats-tls-ca for TLS)")
	security.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&metricsAddr, "metrics", "", "serve Prometheus metrics on this address of its own (e.g. 127.0.0.1:9091; PBA_METRICS_TOKEN, when set, is required as a bearer token); off when empty")
	cmd.Flags().StringVar(&addr, "http", "127.0.0.1:8091", "address to serve /r/{code} and POST /api/pba/clicks on")
	cmd.Flags().StringSliceVar(&origins, "origins", []string{"*"}, "CORS allowed origins of POST /api/pba/clicks (as serve --origins)")
	cmd.Flags().StringVar(&ipHeader, "ip-header", "", "header a trusted proxy in front sets to the client address (e.g. X-Forwarded-For)")
	return cmd
}
