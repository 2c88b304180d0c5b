package scaleout_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pocketbase/pocketbase/core"
	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

var fx *pbatest.Fixture[hooks.Config]

func TestMain(m *testing.M) {
	var err error
	fx, err = pbatest.NewFixture(func(app core.App, cfg hooks.Config) error { return hooks.Register(app, nil, cfg) },
		hooks.Config{IPSalt: "test-salt"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fixture:", err)
		os.Exit(1)
	}
	code := m.Run()
	fx.Cleanup()
	pbatest.RemoveTemplate()
	os.Exit(code)
}

// cluster is a primary with an embedded JetStream server on loopback and one edge node
// connected to it, both in process.
type cluster struct {
	app     core.App
	serve   http.Handler // the primary's router
	primary *scaleout.Primary
	js      jetstream.JetStream // the edge's connection
	edge    *scaleout.Edge
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterWith(t, fx.Config, scaleout.Options{Embedded: "127.0.0.1:0"})
}

// newClusterWith is newCluster with the primary configured by cfg and started with opts.
func newClusterWith(t testing.TB, cfg hooks.Config, opts scaleout.Options) *cluster {
	t.Helper()
	app := fx.AppWith(t, cfg)
	t.Cleanup(app.Cleanup)
	p := scaleout.Register(app, &cobra.Command{})
	serve := pbatest.Serve(t, app) // with the click writer, which ingestion hands clicks to
	if err := p.Start(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	c := &cluster{app: app, serve: serve, primary: p}
	c.edge, c.js = c.newEdge(t, fx.Config)
	return c
}

// newEdge connects one more edge with cfg to the primary's server and waits until it read the
// bucket.
func (c *cluster) newEdge(t testing.TB, cfg hooks.Config) (*scaleout.Edge, jetstream.JetStream) {
	t.Helper()
	return connectEdge(t, c.primary.ClientURL(), cfg)
}

// connectEdge connects an edge with cfg to the servers of url with opts and waits until it
// read the bucket.
func connectEdge(t testing.TB, url string, cfg hooks.Config, opts ...nats.Option) (*scaleout.Edge, jetstream.JetStream) {
	t.Helper()
	return connectEdgeBehind(t, url, cfg, "", opts...)
}

// connectEdgeBehind is connectEdge for a node behind a proxy that sets ipHeader (--ip-header).
func connectEdgeBehind(t testing.TB, url string, cfg hooks.Config, ipHeader string, opts ...nats.Option) (*scaleout.Edge, jetstream.JetStream) {
	t.Helper()
	nc, js, err := scaleout.Connect(url, "test-edge", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	edge, err := scaleout.NewEdge(js, cfg, ipHeader, slog.New(slog.NewTextHandler(io.Discard, nil)),
		scaleout.WithPublic(os.DirFS("../../pb_public")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := edge.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-edge.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("edge did not read the bucket in 5s")
	}
	return edge, js
}

func (c *cluster) get(path string, cookies ...*http.Cookie) *http.Response {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = "203.0.113.7:5000"
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36")
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	c.edge.ServeHTTP(w, req)
	return w.Result()
}

func cookie(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestEdgeRedirectPublishesClick: the primary's snapshot reaches the edge, which answers a
// link with the primary's contract (302, pba_click in the URL and the cookie, a new visitor's
// pba_vid, the deep-link rule) only after the click is in the stream under its id; a second
// publish of the same id (a retry after a lost acknowledgement) is stored once.
func TestEdgeRedirectPublishesClick(t *testing.T) {
	c := newCluster(t)
	link, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	code := link.GetString(collections.FieldCode)

	res := c.get("/r/" + code + "?to=" + url.QueryEscape("https://evil.example/"))
	if res.StatusCode != http.StatusFound {
		t.Fatalf("status %d", res.StatusCode)
	}
	clickCookie, vid := cookie(res, hooks.ClickCookie), cookie(res, hooks.VisitorCookie)
	if clickCookie == nil || vid == nil || vid.Value != clickCookie.Value {
		t.Fatalf("cookies %v", res.Header.Values("Set-Cookie"))
	}
	loc := res.Header.Get("Location")
	if strings.Contains(loc, "evil.example") || !strings.Contains(loc, "pba_click="+clickCookie.Value) {
		t.Fatalf("location %q", loc)
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
	if err != nil {
		t.Fatal(err)
	}
	if click.ID != clickCookie.Value || msg.Header.Get(jetstream.MsgIDHeader) != click.ID || click.Link != link.Id ||
		click.Affiliate != fx.A.ID || click.Program != fx.ProgramP || !click.NewVisitor || click.IPHash == "" {
		t.Fatalf("stored click %+v (msg id %q)", click, msg.Header.Get(jetstream.MsgIDHeader))
	}
	ack, err := c.js.Publish(ctx, scaleout.ClickSubject, msg.Data, jetstream.WithMsgID(click.ID))
	if err != nil || !ack.Duplicate {
		t.Fatalf("retried publish: %+v %v", ack, err)
	}

	// A returning visitor keeps its id; an unknown code stores nothing.
	if res := c.get("/r/"+code, vid); res.StatusCode != http.StatusFound || cookie(res, hooks.VisitorCookie) != nil {
		t.Fatalf("returning visitor: %d %v", res.StatusCode, res.Header.Values("Set-Cookie"))
	}
	if res := c.get("/r/no-such-code"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown code: %d", res.StatusCode)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("stream holds %+v %v, want 2 clicks", info.State, err)
	}

	// The primary ingests both: the new visitor's click unique, the return not.
	waitIngested(t, c.js, info.State.LastSeq)
	var rows []struct {
		ID     string `db:"id"`
		Unique bool   `db:"unique"`
		Flag   string `db:"flag"`
	}
	clicksOfA := func() {
		t.Helper()
		rows = rows[:0]
		err := c.app.DB().NewQuery("SELECT id, [[unique]], flag FROM clicks WHERE affiliate = {:a} AND visitor = {:v} ORDER BY id").
			Bind(map[string]any{"a": fx.A.ID, "v": vid.Value}).All(&rows)
		if err != nil {
			t.Fatal(err)
		}
	}
	clicksOfA()
	if len(rows) != 2 || rows[0].ID != click.ID || !rows[0].Unique || rows[1].Unique || rows[0].Flag != "" {
		t.Fatalf("ingested %+v", rows)
	}

	// Redelivery: the consumer starts over from the stream's first click (as after a crash
	// before the acknowledgements); nothing is stored twice.
	if err := c.js.DeleteConsumer(ctx, scaleout.ClickStream, scaleout.ConsumerName); err != nil {
		t.Fatal(err)
	}
	waitIngested(t, c.js, info.State.LastSeq)
	clicksOfA()
	if len(rows) != 2 {
		t.Fatalf("after redelivery %d clicks, want 2", len(rows))
	}
}

// waitAllIngested waits until the primary's consumer has acknowledged everything the stream
// holds now.
func waitAllIngested(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, scaleout.ClickStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitIngested(t, js, info.State.LastSeq)
}

// waitIngested waits until the primary's consumer has acknowledged the stream up to seq.
// ingestDeadline bounds waitIngested: past the consumer's 30 s AckWait, because a consumer
// deleted and created again (the tests' redelivery) can hand its first click to a pull request
// nobody reads any more (seen 1 run in 40 under -race: delivered, never acknowledged); JetStream
// delivers it again after AckWait, and it is stored once. Normally a few milliseconds.
const ingestDeadline = 45 * time.Second

func waitIngested(t *testing.T, js jetstream.JetStream, seq uint64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(ingestDeadline)
	for time.Now().Before(deadline) {
		if cons, err := js.Consumer(ctx, scaleout.ClickStream, scaleout.ConsumerName); err == nil {
			if info, err := cons.Info(ctx); err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0 {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("clicks up to %d not ingested in %s", seq, ingestDeadline)
}

// TestEdgeSuspensionPropagates: suspending an affiliate on the primary stops its codes
// crediting clicks on the edge within a second (measured and logged), and the snapshot of a
// new start drops keys of records that are gone.
func TestEdgeSuspensionPropagates(t *testing.T) {
	c := newCluster(t)
	aff, err := c.app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	code := aff.GetString(collections.FieldCode)
	if res := c.get("/r/" + code); res.StatusCode != http.StatusFound || cookie(res, hooks.ClickCookie) == nil {
		t.Fatalf("before: %d", res.StatusCode)
	}

	aff.Set(collections.FieldStatus, collections.AffiliateSuspended)
	start := time.Now()
	if err := c.app.Save(aff); err != nil {
		t.Fatal(err)
	}
	for {
		res := c.get("/r/" + code)
		if res.StatusCode == http.StatusFound && cookie(res, hooks.ClickCookie) == nil &&
			!strings.Contains(res.Header.Get("Location"), "pba_click") {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the edge still credits a suspended affiliate after 1s")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("suspension reached the edge in %v (save included)", time.Since(start))
}

// TestPrimarySnapshotAtStart: a start publishes what changed while no primary was publishing
// and deletes the keys of records that are gone, so the bucket equals the database.
func TestPrimarySnapshotAtStart(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	kv, err := c.js.KeyValue(ctx, scaleout.CodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := edgewire.LinkEntry(edgewire.Link{ID: "gone", Code: "gone", Affiliate: fx.A.ID, Program: fx.ProgramP})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, stale.Key, stale.Value); err != nil {
		t.Fatal(err)
	}
	c.primary.Stop()
	aff, err := c.app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	aff.Set(collections.FieldStatus, collections.AffiliateSuspended)
	if err := c.app.Save(aff); err != nil { // published by nobody: the primary is stopped
		t.Fatal(err)
	}
	if err := c.primary.Start(ctx, scaleout.Options{Embedded: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	nc, js, err := scaleout.Connect(c.primary.ClientURL(), "test-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if kv, err = js.KeyValue(ctx, scaleout.CodesBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, stale.Key); err == nil {
		t.Fatal("the key of a record that is gone survived the snapshot")
	}
	catalog := edgewire.NewCatalog()
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := catalog.Put(k, e.Value()); err != nil {
			t.Fatal(err)
		}
		keys++
	}
	var records int
	err = c.app.DB().NewQuery("SELECT (SELECT COUNT(*) FROM programs) + (SELECT COUNT(*) FROM affiliates) + (SELECT COUNT(*) FROM links) + (SELECT COUNT(*) FROM code_aliases)").Row(&records)
	if err != nil || keys != records+1 {
		t.Fatalf("bucket holds %d keys, database %d records and the rate limits (%v)", keys, records, err)
	}
	if limits := catalog.RateLimits(); limits == nil || !limits.Enabled || len(limits.Rules) != len(c.app.Settings().RateLimits.Rules) {
		t.Fatalf("the rate limits in the bucket: %+v", limits)
	}
	if target, ok := catalog.Resolve(aff.GetString(collections.FieldCode)); !ok || target.Status != collections.AffiliateSuspended {
		t.Fatalf("the suspension made while stopped is not in the bucket: %+v", target)
	}
}

// TestEdgeResolvesLegacyCodes: a legacy code an import brought (code_aliases) reaches the
// edge's catalog and credits its affiliate there as on the primary, by /r/{code}, /r/?via= and
// POST /api/pba/clicks; deleting it stops that.
func TestEdgeResolvesLegacyCodes(t *testing.T) {
	c := newCluster(t)
	alias, err := pbatest.Save(c.app, collections.CodeAliases, map[string]any{"code": "Old_Anna.1", "affiliate": fx.A.ID, "source": "rewardful"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for c.get("/r/old_anna.1").StatusCode != http.StatusFound {
		if time.Since(start) > 2*time.Second {
			t.Fatal("the legacy code did not reach the edge in 2s")
		}
		time.Sleep(time.Millisecond)
	}
	for _, path := range []string{"/r/OLD_ANNA.1", "/r/?via=old_anna.1"} {
		res := c.get(path)
		ck := cookie(res, hooks.ClickCookie)
		if res.StatusCode != http.StatusFound || ck == nil || !strings.Contains(res.Header.Get("Location"), "pba_click="+ck.Value) {
			t.Fatalf("%s: %d %v", path, res.StatusCode, res.Header)
		}
	}
	w := post(c.edge, `{"code": "old_anna.1"}`)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"click_id":"`) {
		t.Fatalf("POST: %d %s", w.Code, w.Body)
	}
	waitAllIngested(t, c.js)
	var credited int
	if err := c.app.DB().NewQuery("SELECT COUNT(*) FROM clicks WHERE affiliate = {:a} AND link = '' AND ip_hash != ''").
		Bind(map[string]any{"a": fx.A.ID}).Row(&credited); err != nil || credited < 3 {
		t.Fatalf("clicks of A through its legacy code: %d %v", credited, err)
	}

	if err := c.app.Delete(alias); err != nil {
		t.Fatal(err)
	}
	for c.get("/r/old_anna.1").StatusCode != http.StatusNotFound {
		if time.Since(start) > 4*time.Second {
			t.Fatal("the deleted legacy code still resolves on the edge")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEdgeCookiesSecureBehindTrustedProxy: the click cookies are Secure as on the primary —
// over TLS to the node, or behind the proxy --ip-header trusts when it says https; a node
// trusting no proxy ignores X-Forwarded-Proto (anyone could send it).
func TestEdgeCookiesSecureBehindTrustedProxy(t *testing.T) {
	c := newCluster(t)
	link, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	behind, _ := connectEdgeBehind(t, c.primary.ClientURL(), fx.Config, "X-Forwarded-For")
	for _, tc := range []struct {
		name   string
		edge   http.Handler
		proto  string
		tls    bool
		secure bool
	}{
		{"no proxy, plain http", c.edge, "", false, false},
		{"no proxy, forged https header", c.edge, "https", false, false},
		{"no proxy, TLS to the node", c.edge, "", true, true},
		{"trusted proxy, https", behind, "https", false, true},
		{"trusted proxy, http", behind, "http", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/r/"+link.GetString(collections.FieldCode), nil)
			req.RemoteAddr = "203.0.113.7:5000"
			req.Header.Set("X-Forwarded-For", "198.51.100.4")
			if tc.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			if tc.tls {
				req.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			tc.edge.ServeHTTP(w, req)
			res := w.Result()
			if res.StatusCode != http.StatusFound {
				t.Fatalf("status %d", res.StatusCode)
			}
			for _, name := range []string{hooks.ClickCookie, hooks.VisitorCookie} {
				ck := cookie(res, name)
				if ck == nil || ck.Secure != tc.secure {
					t.Fatalf("%s: %+v, want Secure=%v", name, ck, tc.secure)
				}
			}
		})
	}
}
