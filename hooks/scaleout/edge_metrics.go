package scaleout

import (
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of pba_edge_redirects_total and pba_edge_track_clicks_total. A node does not know
// whether the primary will store a click flagged or count it past the IP's ceiling: that is
// decided at ingestion, so its clicks are "published".
const (
	edgePublished   = "published"   // in the click stream, answered
	edgeUnknown     = "unknown"     // no such code (fallback or 404)
	edgeInactive    = "inactive"    // a paused link, affiliate or program: sent on, counted as a door
	edgeUnavailable = "unavailable" // the publish failed: 503
)

// edgeMetrics are a node's Prometheus metrics, in a registry of its own (several nodes may
// run in one test process).
type edgeMetrics struct {
	registry        *prometheus.Registry
	redirects       *prometheus.CounterVec
	trackClicks     *prometheus.CounterVec
	publish         prometheus.Histogram
	publishFailures *prometheus.CounterVec
	catalogUpdated  prometheus.Gauge
	rateLimited     *prometheus.CounterVec
}

func newEdgeMetrics(codes func() float64) *edgeMetrics {
	m := &edgeMetrics{registry: prometheus.NewRegistry()}
	m.redirects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pba_edge_redirects_total",
		Help: "GET /r/{code} requests answered by this node, by outcome."}, []string{"outcome"})
	m.trackClicks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pba_edge_track_clicks_total",
		Help: "POST /api/pba/clicks requests with a code answered by this node, by outcome."}, []string{"outcome"})
	m.publish = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pba_edge_publish_seconds",
		Help:    "Time from publishing a click to JetStream's acknowledgement (the redirect waits for it).",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)}) // 0.2 ms … 1.6 s
	m.publishFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pba_edge_publish_failures_total",
		Help: "Publishes JetStream did not acknowledge: clicks (answered 503) and door count batches (retried)."}, []string{"what"})
	m.catalogUpdated = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pba_edge_catalog_updated_timestamp_seconds",
		Help: "Unix time of the last change applied from the codes bucket (its age: time() minus this)."})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pba_edge_rate_limited_total",
		Help: "Requests answered 429 by the primary's rate-limit rules, by rule label."}, []string{"rule"})
	codesGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pba_edge_catalog_codes",
		Help: "Codes the node resolves (links, affiliates' own codes and imported legacy codes)."}, codes)
	for _, vec := range []*prometheus.CounterVec{m.redirects, m.trackClicks} {
		for _, o := range []string{edgePublished, edgeUnknown, edgeInactive, edgeUnavailable} {
			vec.WithLabelValues(o) // every outcome present from the start, at 0
		}
	}
	m.publishFailures.WithLabelValues("click")
	m.publishFailures.WithLabelValues("doors")
	m.registry.MustRegister(m.redirects, m.trackClicks, m.publish, m.publishFailures, m.catalogUpdated, m.rateLimited, codesGauge,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *edgeMetrics) catalogChanged() { m.catalogUpdated.Set(float64(time.Now().UnixNano()) / 1e9) }

// MetricsHandler serves the node's metrics in Prometheus' text format. With a token, only a
// request with `Authorization: Bearer <token>` is answered (401 otherwise), as the primary's
// PBA_METRICS_TOKEN; `edge --metrics ADDR` serves it on a listener of its own, not on the
// public address.
func (n *Edge) MetricsHandler(token string) http.Handler {
	h := promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "A bearer token is required.", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
