package scaleout_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// scrape returns the metrics h serves, one "name{labels} value" per line, and the status.
func scrape(h http.Handler, auth string) (int, string) {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// TestEdgeMetrics: an edge counts its redirects and track.js clicks by outcome (a failed
// publish as unavailable and as a publish failure), times its publishes and reports its
// catalog's size and last change; with a token only its bearer reads them.
func TestEdgeMetrics(t *testing.T) {
	c := newCluster(t)
	link, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := c.app.FindRecordById(collections.Affiliates, fx.Pending.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.get("/r/" + link.GetString(collections.FieldCode))
	c.get("/r/" + link.GetString(collections.FieldCode))
	c.get("/r/" + pending.GetString(collections.FieldCode))
	c.get("/r/no-such-code")
	post(c.edge, `{"code": "`+link.GetString(collections.FieldCode)+`"}`)
	post(c.edge, `{"code": "no-such-code"}`)

	// The cluster goes away: a click waits its request's deadline, then is a 503.
	c.primary.Stop()
	req := httptest.NewRequest(http.MethodGet, "/r/"+link.GetString(collections.FieldCode), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	w := httptest.NewRecorder()
	c.edge.ServeHTTP(w, req.WithContext(ctx))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("publish without a cluster: %d %v", w.Code, w.Header())
	}

	var codes int
	if err := c.app.DB().NewQuery("SELECT (SELECT COUNT(*) FROM links) + (SELECT COUNT(*) FROM affiliates WHERE code != '')").Row(&codes); err != nil {
		t.Fatal(err)
	}
	status, text := scrape(c.edge.MetricsHandler(""), "")
	if status != http.StatusOK {
		t.Fatalf("metrics: %d", status)
	}
	for _, line := range []string{
		`pba_edge_redirects_total{outcome="published"} 2`,
		`pba_edge_redirects_total{outcome="inactive"} 1`,
		`pba_edge_redirects_total{outcome="unknown"} 1`,
		`pba_edge_redirects_total{outcome="unavailable"} 1`,
		`pba_edge_track_clicks_total{outcome="published"} 1`,
		`pba_edge_track_clicks_total{outcome="unknown"} 1`,
		`pba_edge_publish_failures_total{what="click"} 1`,
		`pba_edge_publish_seconds_count 4`,
		fmt.Sprintf("pba_edge_catalog_codes %d", codes),
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no %q in\n%s", line, grepEdge(text))
		}
	}
	if !strings.Contains(text, "pba_edge_catalog_updated_timestamp_seconds 1.") {
		t.Errorf("catalog age missing:\n%s", grepEdge(text))
	}

	guarded := c.edge.MetricsHandler("s3cret")
	if status, _ := scrape(guarded, ""); status != http.StatusUnauthorized {
		t.Errorf("without the token: %d", status)
	}
	if status, _ := scrape(guarded, "Bearer wrong"); status != http.StatusUnauthorized {
		t.Errorf("with another token: %d", status)
	}
	if status, text := scrape(guarded, "Bearer s3cret"); status != http.StatusOK || !strings.Contains(text, "pba_edge_catalog_codes") {
		t.Errorf("with the token: %d", status)
	}
}

func grepEdge(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "pba_edge") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
