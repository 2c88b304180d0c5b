package scaleout_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
)

// doorCounts reads inactive_redirects as "reason program affiliate link" → count.
func (c *cluster) doorCounts(t *testing.T) map[string]int {
	t.Helper()
	var rows []struct {
		Reason    string `db:"reason"`
		Program   string `db:"program"`
		Affiliate string `db:"affiliate"`
		Link      string `db:"link"`
		Count     int    `db:"count"`
	}
	if err := c.app.DB().NewQuery("SELECT reason, program, affiliate, link, count FROM inactive_redirects").All(&rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Reason+" "+r.Program+" "+r.Affiliate+" "+r.Link] += r.Count
	}
	return out
}

func serve(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.RemoteAddr = "203.0.113.8:5000"
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestEdgeDoorsCountedOnce: the door visits an edge answers (an inactive code by /r/ and by
// POST /api/pba/clicks, an unknown code sent to the fallback URL) reach inactive_redirects
// with the rows the primary writes for the same visits, once each, also when the stream
// delivers the batch again or a node republishes it; an unknown code without a fallback is
// the primary's 404 page and is not counted, as on the primary.
func TestEdgeDoorsCountedOnce(t *testing.T) {
	c := newCluster(t)
	pending, err := c.app.FindRecordById(collections.Affiliates, fx.Pending.ID)
	if err != nil {
		t.Fatal(err)
	}
	code := pending.GetString(collections.FieldCode)
	visit := func(h http.Handler) {
		t.Helper()
		if w := serve(h, http.MethodGet, "/r/"+code, ""); w.Code != http.StatusFound || w.Header().Get("Set-Cookie") != "" {
			t.Fatalf("inactive /r/: %d %v", w.Code, w.Header())
		}
		if w := serve(h, http.MethodGet, "/r/?via="+code, ""); w.Code != http.StatusFound {
			t.Fatalf("inactive /r/?via=: %d", w.Code)
		}
		if w := serve(h, http.MethodPost, "/api/pba/clicks", `{"code": "`+code+`"}`); w.Code != http.StatusOK {
			t.Fatalf("inactive POST: %d %s", w.Code, w.Body)
		}
		p, e := serve(c.serve, http.MethodGet, "/r/no-such-code", ""), serve(h, http.MethodGet, "/r/no-such-code", "")
		if e.Code != http.StatusNotFound || e.Body.String() != p.Body.String() || e.Header().Get("Content-Security-Policy") != p.Header().Get("Content-Security-Policy") {
			t.Fatalf("unknown code: edge %d %q, primary %d %q", e.Code, e.Body, p.Code, p.Body)
		}
	}

	// The primary's own counts of these visits (its counter writes every second).
	visit(c.serve)
	var want map[string]int
	deadline := time.Now().Add(5 * time.Second)
	for want = c.doorCounts(t); len(want) == 0; want = c.doorCounts(t) {
		if time.Now().After(deadline) {
			t.Fatal("the primary did not write its door counts in 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	key := collections.InactiveAffiliatePending + " " + fx.ProgramP + " " + fx.Pending.ID + " "
	if len(want) != 1 || want[key] != 3 {
		t.Fatalf("primary counted %v, want 3 under %q", want, key)
	}

	// The same visits on an edge, and one unknown code on an edge with a fallback URL.
	visit(c.edge)
	cfg := fx.Config
	cfg.FallbackURL = "https://fallback.example/"
	fallbackEdge, _ := c.newEdge(t, cfg)
	if w := serve(fallbackEdge, http.MethodGet, "/r/no-such-code", ""); w.Code != http.StatusFound || w.Header().Get("Location") != cfg.FallbackURL {
		t.Fatalf("unknown with fallback: %d %v", w.Code, w.Header())
	}
	ctx := context.Background()
	for _, e := range []*scaleout.Edge{c.edge, fallbackEdge} {
		if err := e.FlushDoors(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := c.js.Stream(ctx, scaleout.ClickStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("stream holds %+v %v, want 2 door batches", info.State, err)
	}
	waitIngested(t, c.js, info.State.LastSeq)
	want[key] *= 2
	want[collections.InactiveUnknownCode+"   "] = 1
	check := func(when string) {
		t.Helper()
		got := c.doorCounts(t)
		if len(got) != len(want) || got[key] != want[key] || got[collections.InactiveUnknownCode+"   "] != 1 {
			t.Fatalf("%s: inactive_redirects %v, want %v", when, got, want)
		}
	}
	check("after ingestion")

	// Delivered again (the consumer starts over) and published again under the same id (a
	// node that lost its acknowledgement) or, past JetStream's window, under another one.
	if err := c.js.DeleteConsumer(ctx, scaleout.ClickStream, scaleout.ConsumerName); err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, scaleout.DoorSubject)
	if err != nil {
		t.Fatal(err)
	}
	doors, err := edgewire.DecodeDoors(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := c.js.Publish(ctx, scaleout.DoorSubject, msg.Data, jetstream.WithMsgID(doors.ID)); err != nil || !ack.Duplicate {
		t.Fatalf("republished: %+v %v", ack, err)
	}
	ack, err := c.js.Publish(ctx, scaleout.DoorSubject, msg.Data, jetstream.WithMsgID(doors.ID+"-late"))
	if err != nil {
		t.Fatal(err)
	}
	waitIngested(t, c.js, ack.Sequence)
	check("after redelivery")
}
