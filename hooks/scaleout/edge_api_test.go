package scaleout_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
)

// post sends POST /api/pba/clicks with body to h, as track.js does from a merchant's page.
func post(h http.Handler, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/pba/clicks", strings.NewReader(body))
	req.RemoteAddr = "198.51.100.9:4000"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// answerShape is an answer with the ids it minted replaced, to compare the primary's and
// the edge's.
func answerShape(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("answer %d %q: %v", w.Code, w.Body, err)
	}
	for _, k := range []string{"click_id", "visitor"} {
		if v, ok := body[k].(string); ok && len(v) == 15 {
			body[k] = "<id>"
		}
	}
	body["$status"] = w.Code
	for _, h := range []string{"Content-Type", "Retry-After", "X-Content-Type-Options", "X-Frame-Options",
		"Content-Security-Policy", "Referrer-Policy", "Set-Cookie"} {
		body["$"+h] = w.Header().Get(h)
	}
	return body
}

// TestEdgeTrackClickMatchesPrimary: POST /api/pba/clicks on an edge answers every case as the
// primary does (status, JSON body, headers; a 4xx names the field), publishes the click
// before answering, and the primary ingests it with its sub and referrer; CORS as `serve`'s
// default (any origin, preflight answered).
func TestEdgeTrackClickMatchesPrimary(t *testing.T) {
	c := newCluster(t)
	link, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := c.app.FindRecordById(collections.Affiliates, fx.Pending.ID)
	if err != nil {
		t.Fatal(err)
	}
	code, inactive := link.GetString(collections.FieldCode), pending.GetString(collections.FieldCode)
	cases := map[string]string{
		"recorded":      `{"code": "` + strings.ToUpper(code) + `", "sub": "spring", "referrer": "https://blog.example/post"}`,
		"returning":     `{"code": "` + code + `", "visitor": "abcdefghij12345"}`,
		"bad visitor":   `{"code": "` + code + `", "visitor": "<script>"}`,
		"inactive":      `{"code": "` + inactive + `"}`,
		"unknown":       `{"code": "no-such-code"}`,
		"empty code":    `{}`,
		"sub control":   `{"code": "` + code + `", "sub": "a\u0007b"}`,
		"unknown field": `{"code": "` + code + `", "coupon": "x"}`,
		"wrong type":    `{"code": 7}`,
		"not json":      `code=abc`,
		"trailing":      `{"code": "` + code + `"} {}`,
		"too large":     `{"code": "` + code + `", "referrer": "` + strings.Repeat("x", 9<<10) + `"}`,
	}
	for name, body := range cases {
		primary, edge := answerShape(t, post(c.serve, body)), answerShape(t, post(c.edge, body))
		p, _ := json.Marshal(primary)
		e, _ := json.Marshal(edge)
		if string(p) != string(e) {
			t.Errorf("%s:\nprimary %s\nedge    %s", name, p, e)
		}
	}

	// The recorded click is in the stream when the answer leaves, and the primary ingests it.
	w := post(c.edge, cases["recorded"])
	var answer struct {
		ClickID    string `json:"click_id"`
		Visitor    string `json:"visitor"`
		CookieDays int    `json:"cookie_days"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || answer.ClickID == "" || answer.Visitor != answer.ClickID || answer.CookieDays <= 0 {
		t.Fatalf("answer %q (%v)", w.Body, err)
	}
	ctx := context.Background()
	stream, err := c.js.Stream(ctx, scaleout.ClickStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, scaleout.ClickSubject)
	if err != nil {
		t.Fatal(err)
	}
	click, err := edgewire.DecodeClick(msg.Data)
	if err != nil || click.ID != answer.ClickID || click.SubID != "spring" || click.Referrer != "https://blog.example/post" || click.Link != link.Id {
		t.Fatalf("published %+v (%v)", click, err)
	}
	waitIngested(t, c.js, msg.Sequence)
	stored, err := c.app.FindRecordById(collections.Clicks, answer.ClickID)
	if err != nil || stored.GetString(collections.ClickSubID) != "spring" || stored.GetString(collections.FieldLink) != link.Id {
		t.Fatalf("ingested %v (%v)", stored, err)
	}

	// CORS: track.js posts from the merchant's origin.
	origin := "https://shop.example.com"
	if w := post(c.edge, cases["unknown"], "Origin", origin); w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("CORS answer headers %v", w.Header())
	}
	req := httptest.NewRequest(http.MethodOptions, "/api/pba/clicks", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	pre := httptest.NewRecorder()
	c.edge.ServeHTTP(pre, req)
	if pre.Code != http.StatusNoContent || pre.Header().Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(pre.Header().Get("Access-Control-Allow-Methods"), http.MethodPost) ||
		!strings.Contains(strings.ToLower(pre.Header().Get("Access-Control-Allow-Headers")), "content-type") {
		t.Fatalf("preflight %d %v", pre.Code, pre.Header())
	}

	// track.js (which posts where it was loaded from) and the 404 page's style are served;
	// nothing else of the primary's is.
	for path, want := range map[string]int{"/track.js": http.StatusOK, "/pba.css": http.StatusOK, "/_/": http.StatusNotFound, "/api/collections/users/records": http.StatusNotFound} {
		w := httptest.NewRecorder()
		c.edge.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
	}
}

// TestEdgeAnswersPastTheCeilingAsThePrimary: one address flooding a link, on the primary and on
// an edge with the same settings, gets the same answers click by click — clean clicks, then
// rate-flagged ones, then past its hourly ceiling a 429 with Retry-After from POST
// /api/pba/clicks and a redirect naming no click and setting no cookie from /r/ — and every
// edge click still reaches the primary, which counts what it does not store.
func TestEdgeAnswersPastTheCeilingAsThePrimary(t *testing.T) {
	cfg := fx.Config
	cfg.ClickRateLimit, cfg.ClickIPCeiling = 2, 4
	c := newClusterWith(t, cfg, scaleout.Options{Embedded: "127.0.0.1:0"})
	edge, _ := c.newEdge(t, cfg)
	link, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	code := link.GetString(collections.FieldCode)
	body := `{"code":"` + code + `"}`
	// Each node floods from an address of its own: the primary ingests the edge's clicks
	// into its own counts, which must not decide the primary's answers here.
	from := func(h http.Handler, addr, method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = addr
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	answer := func(w *httptest.ResponseRecorder) string {
		named := strings.Contains(w.Header().Get("Location"), "pba_click=")
		return strings.Join([]string{http.StatusText(w.Code),
			map[bool]string{true: "names a click", false: "names none"}[named],
			map[bool]string{true: "cookies", false: "no cookie"}[w.Header().Get("Set-Cookie") != ""]}, ", ")
	}
	var before int
	if err := c.app.DB().NewQuery("SELECT COUNT(*) FROM clicks WHERE link = {:l}").Bind(dbx.Params{"l": link.Id}).Row(&before); err != nil {
		t.Fatal(err)
	}
	sawOver := false
	for i := 0; i < 8; i++ {
		method, path, b := http.MethodPost, "/api/pba/clicks", body
		if i%2 == 1 {
			method, path, b = http.MethodGet, "/r/"+code, ""
		}
		p := from(c.serve, "198.51.100.20:4000", method, path, b)
		e := from(edge, "198.51.100.30:4000", method, path, b)
		if answer(p) != answer(e) {
			t.Fatalf("click %d (%s %s): primary %q, edge %q", i+1, method, path, answer(p), answer(e))
		}
		if p.Code == http.StatusTooManyRequests {
			sawOver = true
			if e.Header().Get("Retry-After") == "" {
				t.Fatalf("click %d: the edge's 429 has no Retry-After", i+1)
			}
		}
	}
	if !sawOver {
		t.Fatal("the flood never passed the ceiling: the test proves nothing")
	}
	// The edge's 8 clicks reach the primary: 4 rows, 4 counted past the ceiling.
	var rows, counted int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_ = c.app.DB().NewQuery("SELECT COUNT(*) FROM clicks WHERE link = {:l}").Bind(dbx.Params{"l": link.Id}).Row(&rows)
		_ = c.app.DB().NewQuery("SELECT IFNULL(SUM(clicks), 0) FROM click_overflow").Row(&counted)
		if rows-before == 8 && counted == 8 { // 4 + 4 of each node's
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("primary holds %d new rows and %d clicks counted past the ceiling, want 8 and 8", rows-before, counted)
		}
	}
}
