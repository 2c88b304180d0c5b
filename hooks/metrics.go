package hooks

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/pocketbase/pocketbase/tools/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/attribution"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Prometheus metrics, served at GET /api/pba/metrics (README "Metrics" lists them).
//
// Each app has its own registry (tests run many apps in one process). The paths that count
// hold a *metrics taken once at registration (metricsOf) and touch only pre-resolved
// counters and histograms: an atomic add, no allocation, no lock, so the redirect path costs
// what it did. What needs SQL (backlogs, payouts by status, the commission engine's lag) is
// counted when Prometheus scrapes (dbCollector), never on the hot paths.
type metrics struct {
	reg *prometheus.Registry

	clickBatch        prometheus.Histogram
	clickCommit       prometheus.Histogram
	clickBatchesLost  prometheus.Counter
	redirects         clickOutcomes // GET /r/{code}
	trackClicks       clickOutcomes // POST /api/pba/clicks
	responses429      prometheus.Counter
	responses503      prometheus.Counter
	sales             *prometheus.CounterVec // source, result
	commissionRun     prometheus.Histogram
	cronLastSuccess   *prometheus.GaugeVec // job
	webhookAttempts   *prometheus.CounterVec
	mailAttempts      *prometheus.CounterVec
	clickQueueDepthFn func() float64
	// Attribution across the gap (click_awaiter.go): sales that waited for their click.
	attributionWaits *prometheus.CounterVec // result
}

// Click outcomes, the values of the outcome label of pba_redirects_total and
// pba_track_clicks_total.
const (
	outcomeStored      = "stored"      // an unflagged click, stored
	outcomeFlagged     = "flagged"     // stored, flagged (bot, rate, self)
	outcomeCounted     = "counted"     // flagged past the IP's ceiling: counted in click_overflow
	outcomeUnknown     = "unknown"     // no such code (fallback or 404)
	outcomeInactive    = "inactive"    // a paused link, affiliate or program: sent on, no click
	outcomeUnavailable = "unavailable" // the click writer could not take it: 503
)

// Results of pba_sales_total: what recording one reported sale came to.
const (
	saleCreated      = "created"
	saleDuplicate    = "duplicate"    // the same source and external id again
	saleInvalid      = "invalid"      // 400: a field is wrong
	saleUnattributed = "unattributed" // 422: no click, coupon or code credits it
	saleConflict     = "conflict"     // 409: a duplicate with another amount or currency
	saleError        = "error"
)

const metricsStoreKey = "pba.metrics"

// metricsOf returns app's metrics, made (and registered) on first use.
func metricsOf(app core.App) *metrics {
	return app.Store().GetOrSet(metricsStoreKey, func() any { return newMetrics(app) }).(*metrics)
}

func newMetrics(app core.App) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := factory{m.reg}
	m.clickBatch = f.histogram("pba_click_batch_size", "Clicks per committed click-writer transaction.",
		prometheus.ExponentialBuckets(1, 2, 10)) // 1 … 512 (PBA_CLICK_BATCH_SIZE is 256 by default)
	m.clickCommit = f.histogram("pba_click_commit_seconds", "Time from a batch's first click to its commit (every redirect waits for it).",
		prometheus.ExponentialBuckets(0.0005, 2, 12)) // 0.5 ms … 1 s
	m.clickBatchesLost = f.counter("pba_click_batches_lost_total", "Click batches that failed twice and were answered 503.")
	m.redirects = f.outcomes("pba_redirects_total", "GET /r/{code} requests by outcome.")
	m.trackClicks = f.outcomes("pba_track_clicks_total", "POST /api/pba/clicks requests by outcome.")
	responses := f.counterVec("pba_http_responses_total", "Responses refusing a request for load: 429 (a rate limit or the click ceiling) and 503 (the click queue is full).", "code")
	m.responses429, m.responses503 = responses.WithLabelValues("429"), responses.WithLabelValues("503")
	m.sales = f.counterVec("pba_sales_total", "Reported sales by source (api, postback, stripe, …) and result (created, duplicate, invalid, unattributed, conflict, error).", "source", "result")
	m.commissionRun = f.histogram("pba_commission_run_seconds", "Duration of a commission engine pass that ran.",
		prometheus.ExponentialBuckets(0.001, 4, 10)) // 1 ms … 4 min
	m.cronLastSuccess = f.gaugeVec("pba_cron_last_success_timestamp_seconds", "Unix time of each job's last successful run (absent until it has run once).", "job")
	m.webhookAttempts = f.counterVec("pba_webhook_attempts_total", "Affiliate webhook delivery attempts by result (sent, retry, failed).", "result")
	m.mailAttempts = f.counterVec("pba_mail_attempts_total", "Mail send attempts by result (sent, retry, failed).", "result")
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pba_click_queue_depth", Help: "Clicks waiting for the click writer.",
	}, func() float64 {
		if m.clickQueueDepthFn == nil {
			return 0
		}
		return m.clickQueueDepthFn()
	}))
	m.attributionWaits = f.counterVec("pba_attribution_waits_total", "Sales that waited for their click to come from a redirect node, by result (found, absent, timeout: answered 503).", "result")
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&dbCollector{app: app}, &clickStreamCollector{app: app})
	return m
}

// factory registers metrics on one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

// clickOutcomes are a door's counters, one per outcome, resolved once (and exported at 0
// from the start), so counting is one atomic add.
type clickOutcomes struct{ stored, flagged, counted, unknown, inactive, unavailable prometheus.Counter }

func (f factory) outcomes(name, help string) clickOutcomes {
	vec := f.counterVec(name, help, "outcome")
	return clickOutcomes{
		stored: vec.WithLabelValues(outcomeStored), flagged: vec.WithLabelValues(outcomeFlagged),
		counted: vec.WithLabelValues(outcomeCounted), unknown: vec.WithLabelValues(outcomeUnknown),
		inactive: vec.WithLabelValues(outcomeInactive), unavailable: vec.WithLabelValues(outcomeUnavailable),
	}
}

// recorded counts a click the writer committed.
func (c *clickOutcomes) recorded(row *clickRow) {
	switch {
	case row.Overflow:
		c.counted.Inc()
	case row.Flag != "":
		c.flagged.Inc()
	default:
		c.stored.Inc()
	}
}

// sale counts one reported sale by its source and what recording it came to.
func (m *metrics) sale(source string, created bool, err error) {
	result := saleCreated
	var verrs validation.Errors
	switch {
	case err == nil && !created:
		result = saleDuplicate
	case err == nil:
	case errors.As(err, &verrs):
		result = saleInvalid
	case errors.Is(err, attribution.ErrNoAttribution):
		result = saleUnattributed
	case errors.Is(err, errConversionConflict):
		result = saleConflict
	default:
		result = saleError
	}
	m.sales.WithLabelValues(source, result).Inc()
}

// jobDone records a successful run of job (a cron job, or an outbox worker's run).
func (m *metrics) jobDone(job string, err error) {
	if err == nil {
		m.cronLastSuccess.WithLabelValues(job).Set(float64(time.Now().UnixMilli()) / 1000)
	}
}

// Results of the delivery attempt counters.
const (
	attemptSent   = "sent"
	attemptRetry  = "retry"  // failed, to be tried again
	attemptFailed = "failed" // failed for good
)

// countRefusals counts the router's 429 and 503 answers, whoever gave them: PocketBase's rate
// limiter, the click ceiling, a full click queue. It wraps every middleware (the rate limiter
// included), so it sees the status of an error the router's error handler writes later.
func (m *metrics) countRefusals() *hook.Handler[*core.RequestEvent] {
	return &hook.Handler[*core.RequestEvent]{
		Id:       "pbaCountRefusals",
		Priority: -100000, // before PocketBase's own middlewares (-99999 and up)
		Func: func(e *core.RequestEvent) error {
			err := e.Next()
			status := e.Status()
			if err != nil {
				status = router.ToApiError(err).Status
			}
			m.countStatus(status)
			return err
		},
	}
}

func (m *metrics) countStatus(status int) {
	switch status {
	case http.StatusTooManyRequests:
		m.responses429.Inc()
	case http.StatusServiceUnavailable:
		m.responses503.Inc()
	}
}

// handle is GET /api/pba/metrics: a superuser, or the bearer of PBA_METRICS_TOKEN when set.
func (m *metrics) handle(token string) func(*core.RequestEvent) error {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return func(e *core.RequestEvent) error {
		if !e.HasSuperuserAuth() && !metricsTokenOK(e.Request.Header.Get("Authorization"), token) {
			if e.Auth == nil {
				return e.UnauthorizedError("A superuser or the metrics token is required.", nil)
			}
			return e.ForbiddenError("Only a superuser or the metrics token may read metrics.", nil)
		}
		h.ServeHTTP(e.Response, e.Request)
		return nil
	}
}

// metricsTokenOK compares "Bearer <token>" in constant time; no token configured never matches.
func metricsTokenOK(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if token == "" || !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// dbCollector counts, when Prometheus scrapes, what lives in the database: backlogs, payouts
// by status and the commission engine's lag. Each query uses an index (a partial one where
// the backlog is small) or a small table.
type dbCollector struct{ app core.App }

var (
	descCommissionLag = prometheus.NewDesc("pba_commission_lag_seconds",
		"Age of the oldest decided sale (approved, rejected, refunded) the commission engine has not handled; 0 when none waits.", nil, nil)
	descPayouts = prometheus.NewDesc("pba_payouts", "Payouts by status.", []string{"status"}, nil)
	descOutbox  = prometheus.NewDesc("pba_outbox", "Outbox rows by outbox (mail, webhook) and status (backlog: queued or pending; failed).",
		[]string{"outbox", "status"}, nil)
	descClickOverflow = prometheus.NewDesc("pba_click_overflow_clicks", "Clicks counted past their IP's ceiling in the current UTC hour.", nil, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCommissionLag, descPayouts, descOutbox, descClickOverflow} {
		ch <- d
	}
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	db := c.app.DB()
	var oldest string
	err := db.NewQuery(`SELECT COALESCE(MIN(created), '') FROM conversions
		WHERE commissioned = FALSE AND status IN ('approved', 'rejected', 'refunded')`).Row(&oldest)
	c.gauge(ch, descCommissionLag, err, func() float64 {
		if oldest == "" {
			return 0
		}
		t, perr := store.ParseDBTime(oldest)
		if perr != nil {
			return 0
		}
		return max(time.Since(t).Seconds(), 0)
	})

	var payouts []struct {
		Status string `db:"status"`
		N      int64  `db:"n"`
	}
	err = db.NewQuery("SELECT status, COUNT(*) AS n FROM " + collections.Payouts + " GROUP BY status").All(&payouts)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPayouts, fmt.Errorf("count payouts: %w", err))
	}
	for _, p := range payouts {
		ch <- prometheus.MustNewConstMetric(descPayouts, prometheus.GaugeValue, float64(p.N), p.Status)
	}

	for _, q := range []struct{ outbox, status, table string }{
		{"mail", collections.DeliveryQueued, collections.Deliveries},
		{"mail", collections.DeliveryFailed, collections.Deliveries},
		{"webhook", collections.WebhookDeliveryPending, collections.WebhookDeliveries},
		{"webhook", collections.WebhookDeliveryFailed, collections.WebhookDeliveries},
	} {
		var n int64
		err := db.NewQuery("SELECT COUNT(*) FROM " + q.table + " WHERE status = {:s}").Bind(dbx.Params{"s": q.status}).Row(&n)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descOutbox, fmt.Errorf("count %s %s: %w", q.table, q.status, err))
			continue
		}
		ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(n), q.outbox, q.status)
	}

	var overflow int64
	err = db.NewQuery("SELECT COALESCE(SUM(clicks), 0) FROM " + collections.ClickOverflow + " WHERE hour = {:h}").
		Bind(dbx.Params{"h": store.DBTime(time.Now().Truncate(time.Hour))}).Row(&overflow)
	c.gauge(ch, descClickOverflow, err, func() float64 { return float64(overflow) })
}

// gauge sends desc's value, or an invalid metric naming err.
func (c *dbCollector) gauge(ch chan<- prometheus.Metric, desc *prometheus.Desc, err error, value func() float64) {
	if err != nil {
		ch <- prometheus.NewInvalidMetric(desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, value())
}

// clickStreamCollector reports, when Prometheus scrapes, how far the primary's consumer of the
// redirect nodes' click stream is behind (hooks/scaleout; nothing on a single box).
type clickStreamCollector struct{ app core.App }

var (
	descStreamLag = prometheus.NewDesc("pba_click_stream_lag_messages",
		"Clicks answered by redirect nodes that the primary has not ingested yet.", nil, nil)
	descStreamLagSeconds = prometheus.NewDesc("pba_click_stream_lag_seconds",
		"Age of the oldest click in the stream the primary has not ingested; 0 when none waits.", nil, nil)
	descIngestBatches = prometheus.NewDesc("pba_click_stream_batches_total",
		"Batches of the click stream the primary ingested (committed) or failed to (delivered again).", []string{"result"}, nil)
	descIngestClicks = prometheus.NewDesc("pba_click_stream_ingested_clicks_total",
		"Clicks from redirect nodes the primary ingested: stored, or counted past their IP's ceiling (a click delivered again counts once).", nil, nil)
	descAttributionWaiting = prometheus.NewDesc("pba_attribution_waiting",
		"Sales waiting for their click to come from a redirect node now.", nil, nil)
)

// clickStreamScrapeTimeout bounds a scrape's requests to the NATS cluster (up to three).
const clickStreamScrapeTimeout = 2 * time.Second

func (c *clickStreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreamLag, descStreamLagSeconds, descIngestBatches, descIngestClicks, descAttributionWaiting} {
		ch <- d
	}
}

func (c *clickStreamCollector) Collect(ch chan<- prometheus.Metric) {
	g := clickGapOf(c.app) // not at registration: metricsOf holds the store's lock
	a := g.current()
	if a == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descAttributionWaiting, prometheus.GaugeValue, float64(g.waiting.Load()))
	ctx, cancel := context.WithTimeout(context.Background(), clickStreamScrapeTimeout)
	defer cancel()
	in := a.Ingestion(ctx)
	if in.LagErr != nil {
		ch <- prometheus.NewInvalidMetric(descStreamLag, in.LagErr)
		ch <- prometheus.NewInvalidMetric(descStreamLagSeconds, in.LagErr)
	} else {
		ch <- prometheus.MustNewConstMetric(descStreamLag, prometheus.GaugeValue, float64(in.Lag))
		age := 0.0
		if !in.Oldest.IsZero() {
			age = max(time.Since(in.Oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(descStreamLagSeconds, prometheus.GaugeValue, age)
	}
	ch <- prometheus.MustNewConstMetric(descIngestBatches, prometheus.CounterValue, float64(in.Batches), "committed")
	ch <- prometheus.MustNewConstMetric(descIngestBatches, prometheus.CounterValue, float64(in.FailedBatches), "failed")
	ch <- prometheus.MustNewConstMetric(descIngestClicks, prometheus.CounterValue, float64(in.Clicks))
}
