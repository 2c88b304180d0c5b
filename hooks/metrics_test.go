package hooks_test

import (
	"bufio"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

const metricsPath = "/api/pba/metrics"

// scrapeMetrics reads GET /api/pba/metrics with auth (an Authorization header value) and
// returns every sample by its series ("name{label=…}" as Prometheus writes it).
func scrapeMetrics(t *testing.T, h http.Handler, auth string) map[string]float64 {
	t.Helper()
	res := pbatest.Request(h, http.MethodGet, metricsPath, auth, "")
	if res.Code != 200 {
		t.Fatalf("scrape: %d %s", res.Code, res.Body)
	}
	if ct := res.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape Content-Type %q", ct)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(res.Body.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics drives a click, a refused click, sales, the commission engine's cron job and a
// payout through the HTTP API, and checks that each moves its metric by what it did.
func TestMetrics(t *testing.T) {
	cfg := fx.Config
	cfg.MetricsToken = "metrics-secret-token"
	cfg.ClickRateLimit, cfg.ClickIPCeiling = 1, 1
	env := &engineEnv{convEnv: &convEnv{newClickEnv(t, cfg)}}
	scrape := func() map[string]float64 { return scrapeMetrics(t, env.handler, "Bearer "+cfg.MetricsToken) }
	before := scrape()
	for _, series := range []string{
		`pba_click_queue_depth`, `pba_redirects_total{outcome="stored"}`, `pba_track_clicks_total{outcome="counted"}`,
		`pba_http_responses_total{code="429"}`, `pba_http_responses_total{code="503"}`, `pba_commission_lag_seconds`,
		`pba_outbox{outbox="mail",status="queued"}`, `pba_outbox{outbox="webhook",status="failed"}`,
		`pba_click_overflow_clicks`, `go_goroutines`, `process_resident_memory_bytes`,
	} {
		if _, ok := before[series]; !ok {
			t.Errorf("no %s before any traffic", series)
		}
	}
	// Scale-out's series only with redirect nodes (hooks/scaleout's gap tests read them there).
	for _, series := range []string{"pba_attribution_waiting", "pba_click_stream_lag_messages", "pba_click_stream_lag_seconds"} {
		if _, ok := before[series]; ok {
			t.Errorf("%s on a single box", series)
		}
	}
	delta := func(after map[string]float64, series string) float64 { return after[series] - before[series] }

	// A click through /r/ (stored, one batch), an API click (stored; the IP's one row) and a
	// second API click: flagged "rate" past the ceiling of 1, so counted and answered 429.
	env.get("/r/" + linkA)
	body := `{"code":"affiliate-a"}`
	fromIP := func(r *http.Request) {
		r.RemoteAddr = "198.51.100.20:4000"
		r.Header.Set("User-Agent", "Mozilla/5.0 (X11)")
	}
	if r := pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", body, fromIP); r.Code != 200 {
		t.Fatalf("API click: %d %s", r.Code, r.Body)
	}
	if r := pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", body, fromIP); r.Code != 429 {
		t.Fatalf("API click past the ceiling: %d %s", r.Code, r.Body)
	}
	pbatest.Request(env.handler, http.MethodGet, "/r/no-such-code", "", "")
	after := scrape()
	for series, want := range map[string]float64{
		`pba_redirects_total{outcome="stored"}`:     1,
		`pba_redirects_total{outcome="unknown"}`:    1,
		`pba_track_clicks_total{outcome="stored"}`:  1,
		`pba_track_clicks_total{outcome="counted"}`: 1,
		`pba_http_responses_total{code="429"}`:      1,
		`pba_click_batch_size_sum`:                  3, // every click handed to the writer, counted or stored
		`pba_click_overflow_clicks`:                 1,
	} {
		if got := delta(after, series); got != want {
			t.Errorf("%s moved by %v, want %v", series, got, want)
		}
	}
	if n := delta(after, "pba_click_commit_seconds_count"); n < 1 || n > 3 || n != delta(after, "pba_click_batch_size_count") {
		t.Errorf("%v commits timed for 3 clicks (batches %v)", n, delta(after, "pba_click_batch_size_count"))
	}

	// Sales: created, the same again (duplicate), an invalid one, one nobody can be credited with.
	before = after
	env.save("programs", fx.ProgramP, map[string]any{"hold_days": 0})
	env.sale("affiliate-a", 30000, time.Now().Add(-time.Hour))
	again := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		`{"affiliate_code":"affiliate-a","external_id":"e-1","amount":30000,"currency":"usd"}`)
	invalid := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		`{"affiliate_code":"affiliate-a","external_id":"e-2","amount":-5,"currency":"usd"}`)
	nobody := pbatest.Request(env.handler, http.MethodPost, conversionsAPI, bearer(),
		`{"affiliate_code":"no-such-affiliate","external_id":"e-3","amount":100,"currency":"usd"}`)
	if again.Code != 200 || invalid.Code != 400 || nobody.Code != 422 {
		t.Fatalf("duplicate %d, invalid %d, unattributed %d", again.Code, invalid.Code, nobody.Code)
	}
	after = scrape()
	for _, result := range []string{"created", "duplicate", "invalid", "unattributed"} {
		if got := delta(after, `pba_sales_total{result="`+result+`",source="api"}`); got != 1 {
			t.Errorf("sales %s moved by %v, want 1", result, got)
		}
	}
	if lag := after["pba_commission_lag_seconds"]; lag <= 0 {
		t.Errorf("commission lag %v with an approved sale waiting", lag)
	}

	// The commission engine's cron job: timed, its success stamped, the lag back to 0.
	ranAt := time.Now()
	for _, job := range env.app.Cron().Jobs() {
		if job.Id() == "pbaCommissions" {
			job.Run()
		}
	}
	after = scrape()
	if got := delta(after, "pba_commission_run_seconds_count"); got != 1 {
		t.Errorf("commission runs timed: %v, want 1", got)
	}
	if at := after[`pba_cron_last_success_timestamp_seconds{job="pbaCommissions"}`]; math.Abs(at-float64(ranAt.Unix())) > 5 {
		t.Errorf("pbaCommissions last success at %v, ran at %d", at, ranAt.Unix())
	}
	if lag := after["pba_commission_lag_seconds"]; lag != 0 {
		t.Errorf("commission lag %v after the engine ran", lag)
	}

	// A payout run makes A a pending manual payout.
	before = after
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/pba/payouts/run", fx.Superuser.Token, ""); res.Code != 200 {
		t.Fatalf("payout run: %d %s", res.Code, res.Body)
	}
	after = scrape()
	if got := delta(after, `pba_payouts{status="pending"}`); got != 1 {
		t.Errorf("pending payouts moved by %v, want 1", got)
	}
}

// TestMetricsAccess: superusers and the bearer of PBA_METRICS_TOKEN read metrics; nobody
// else, and no token is accepted when none is configured.
func TestMetricsAccess(t *testing.T) {
	for _, tc := range []struct {
		token string
		auth  string
		want  int
	}{
		{"", "", 401},
		{"", "Bearer ", 401},
		{"", "Bearer metrics-token", 401},
		{"", fx.A.Token, 403},
		{"", fx.Superuser.Token, 200},
		{"metrics-token", "", 401},
		{"metrics-token", "Bearer metrics-token", 200},
		{"metrics-token", "Bearer metrics-toke", 401},
		{"metrics-token", "Bearer metrics-token2", 401},
		{"metrics-token", "metrics-token", 401},
		{"metrics-token", fx.A.Token, 403},
		{"metrics-token", fx.Superuser.Token, 200},
	} {
		cfg := fx.Config
		cfg.MetricsToken = tc.token
		app := fx.AppWith(t, cfg)
		res := pbatest.Request(pbatest.Serve(t, app), http.MethodGet, metricsPath, tc.auth, "")
		app.Cleanup()
		if res.Code != tc.want || tc.want == 200 && !strings.Contains(res.Body.String(), "pba_click_queue_depth ") {
			t.Errorf("token %q, Authorization %q: %d, want %d (%.80s)", tc.token, tc.auth, res.Code, tc.want, res.Body)
		}
	}
}
