package scaleout_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
)

// TestEdgeRateLimitsMatchPrimary: an edge applies the admin's PocketBase rate-limit rules
// (settings.rateLimits, published by the primary to the codes bucket at start and when the
// settings are saved) as the primary does: the same requests refused with the same 429, the
// excluded addresses never limited, nothing limited when the limiter is off, and a rule an
// admin changes for the whole API ("/api/") applied to the clicks without a rule of their own,
// and a rule an admin adds for /r/ (none ships) enforced on redirects. Both count from one address.
func TestEdgeRateLimitsMatchPrimary(t *testing.T) {
	c := newCluster(t)
	link, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	click := `{"code": "` + link.GetString(collections.FieldCode) + `"}`

	// The shipped rules reach the edge with the primary's start-up snapshot.
	shipped := c.app.Settings().RateLimits
	if !shipped.Enabled {
		t.Fatal("the migration's rate limits are off")
	}
	waitRateLimits(t, c, shipped)

	// set saves the primary's settings as an admin does in the dashboard and waits for the edge.
	set := func(change func(*core.RateLimitsConfig)) {
		t.Helper()
		s := c.app.Settings()
		change(&s.RateLimits)
		if err := c.app.Save(s); err != nil {
			t.Fatal(err)
		}
		waitRateLimits(t, c, c.app.Settings().RateLimits)
	}
	// compare sends the same requests to the primary and the edge, each from one address, and
	// wants the same answers; it returns the statuses.
	compare := func(name string, n int, send func(http.Handler) *httptest.ResponseRecorder) []int {
		t.Helper()
		var statuses []int
		for i := range n {
			p, e := send(c.serve), send(c.edge)
			ps, es := shape(t, p), shape(t, e)
			if !reflect.DeepEqual(ps, es) {
				t.Fatalf("%s, request %d:\nprimary %v\nedge    %v", name, i+1, ps, es)
			}
			statuses = append(statuses, p.Code)
		}
		return statuses
	}
	clicks := func(h http.Handler) *httptest.ResponseRecorder { return post(h, click) }

	set(func(r *core.RateLimitsConfig) { setRule(r, "POST /api/pba/clicks", 3, 60) })
	if got := compare("clicks past 3 a minute", 5, clicks); !reflect.DeepEqual(got, []int{200, 200, 200, 429, 429}) {
		t.Fatalf("statuses %v", got)
	}

	set(func(r *core.RateLimitsConfig) { r.ExcludedIPs = []string{"198.51.100.0/24"} })
	if got := compare("excluded address", 5, clicks); !reflect.DeepEqual(got, []int{200, 200, 200, 200, 200}) {
		t.Fatalf("statuses %v", got)
	}

	set(func(r *core.RateLimitsConfig) { r.ExcludedIPs = nil; r.Enabled = false })
	if got := compare("limiter off", 5, clicks); !reflect.DeepEqual(got, []int{200, 200, 200, 200, 200}) {
		t.Fatalf("statuses %v", got)
	}

	// Without a rule of its own, the clicks API falls under the "/api/" prefix rule.
	set(func(r *core.RateLimitsConfig) {
		r.Enabled = true
		r.Rules = slices.DeleteFunc(r.Rules, func(rule core.RateLimitRule) bool { return rule.Label == "POST /api/pba/clicks" })
		setRule(r, "/api/", 2, 60)
	})
	if got := compare("the /api/ prefix rule, 2 a minute", 3, clicks); !reflect.DeepEqual(got, []int{200, 200, 429}) {
		t.Fatalf("statuses %v", got)
	}

	// /r/ has no rule (a visitor is always taken on); an admin who adds one gets it enforced,
	// on the primary through its router, on the edge before its direct path.
	set(func(r *core.RateLimitsConfig) { setRule(r, "/r/", 2, 60) })
	redirect := func(h http.Handler) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/r/"+link.GetString(collections.FieldCode), nil)
		req.RemoteAddr = "192.0.2.80:1234"
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		w.Header().Del("Location") // names each side's own click
		w.Header().Del("Set-Cookie")
		return w
	}
	if got := compare("an admin's /r/ rule, 2 a minute", 3, redirect); !reflect.DeepEqual(got, []int{302, 302, 429}) {
		t.Fatalf("statuses %v", got)
	}
}

// setRule sets the rule labelled label (for everyone), adding it when missing.
func setRule(r *core.RateLimitsConfig, label string, max int, seconds int64) {
	for i := range r.Rules {
		if r.Rules[i].Label == label && r.Rules[i].Audience == "" {
			r.Rules[i].MaxRequests, r.Rules[i].Duration = max, seconds
			return
		}
	}
	r.Rules = append(r.Rules, core.RateLimitRule{Label: label, MaxRequests: max, Duration: seconds})
}

// shape is an answer's status, JSON body (a click's minted ids left out) or its length, and
// the headers a client sees.
func shape(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	out := map[string]any{"$status": w.Code}
	if w.Header().Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %d %q: %v", w.Code, w.Body, err)
		}
		delete(out, "click_id")
		delete(out, "visitor")
	} else {
		out["$length"] = w.Body.Len()
	}
	for _, h := range []string{"Content-Type", "Retry-After", "Access-Control-Allow-Origin", "Location", "Cache-Control"} {
		out["$"+h] = w.Header().Get(h)
	}
	return out
}

// waitRateLimits waits until the edge holds want, the primary's settings.
func waitRateLimits(t *testing.T, c *cluster, want core.RateLimitsConfig) {
	t.Helper()
	expect := edgewire.RateLimits{Enabled: want.Enabled, ExcludedIPs: want.ExcludedIPs}
	for _, r := range want.Rules {
		expect.Rules = append(expect.Rules, edgewire.RateLimitRule{Label: r.Label, Audience: r.Audience, MaxRequests: r.MaxRequests, Duration: r.Duration})
	}
	want2, _ := json.Marshal(expect)
	var last []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		last, _ = json.Marshal(scaleout.RateLimitsOf(c.edge))
		if string(last) == string(want2) {
			return
		}
	}
	t.Fatalf("the edge's rate limits after 5s: %s, want %s", last, want2)
}
