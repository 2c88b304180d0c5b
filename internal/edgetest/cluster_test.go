package edgetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/soak"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds pbaffiliate from this tree once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pba_edgetest_")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pbaffiliate")
		if out, err := exec.Command("go", "build", "-o", binPath, "../..").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	ServeChild() // a NATS server of TestClusterUnderLoad's cluster
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// salted is the environment every node shares: one IP salt (edges refuse to start without
// the primary's), and every click a row (all the test's visitors are 127.0.0.1).
var salted = []string{"PBA_IP_SALT=edgetest-salt", "PBA_CLICK_IP_CEILING=0"}

// demoData makes a data dir with `pbaffiliate demo` and returns it with its codes.
func demoData(t *testing.T, bin string) (string, soak.World) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pb_data")
	if out, err := exec.Command(bin, "demo", "--days=0", "--dir="+dir).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	world, err := soak.ReadWorld(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, world
}

// event is one answer the load got: the edge asked, when the request was sent and when the
// answer came, its status (0 for a transport error) and the click id of a 302.
type event struct {
	sent   time.Time
	at     time.Time
	edge   int
	status int
	click  string
}

// load is a steady stream of visitors, as many on each edge, each following a link of the
// world. It is an open loop, as visitors are: a new one arrives on time however long the
// earlier ones wait, so a stall shows as the visitors it kept waiting, not as fewer arrivals.
type load struct {
	edges  []*Edge
	links  []string
	client *http.Client

	mu     sync.Mutex
	events []event
	stop   chan struct{}
	wg     sync.WaitGroup
}

// startLoad sends rate visitors a second, spread evenly over the edges.
func startLoad(edges []*Edge, links []string, rate float64) *load {
	l := &load{edges: edges, links: links, stop: make(chan struct{}), client: &http.Client{
		Timeout:       15 * time.Second, // past the edge's 5 s publish bound
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{MaxIdleConnsPerHost: 256},
	}}
	pace := time.Duration(float64(len(edges)) / rate * float64(time.Second))
	for edge := range edges {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for i := edge; ; i++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.wg.Add(1)
				go func() {
					defer l.wg.Done()
					l.visit(edge, links[i%len(links)])
				}()
			}
		}()
	}
	return l
}

func (l *load) visit(edge int, link string) {
	ev := event{edge: edge, sent: time.Now()}
	res, err := l.client.Get(l.edges[edge].URL() + "/r/" + link)
	if err == nil {
		res.Body.Close()
		ev.status = res.StatusCode
		if loc, err := url.Parse(res.Header.Get("Location")); err == nil && res.StatusCode == http.StatusFound {
			ev.click = loc.Query().Get("pba_click")
		}
	}
	ev.at = time.Now()
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

// Stop ends the load and waits for the answers in flight.
func (l *load) Stop() {
	close(l.stop)
	l.wg.Wait()
}

// answered is every click id a visitor got a 302 for, with the edge that answered it.
func (l *load) answered() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := map[string]int{}
	for _, e := range l.events {
		if e.status == http.StatusFound {
			ids[e.click] = e.edge
		}
	}
	return ids
}

// phase is what the visitors of each edge got between two instants.
type phase struct {
	name        string
	from, to    time.Time
	found       []int           // 302s by edge
	unavailable []int           // 503s by edge
	other       []int           // other statuses by edge
	failed      []int           // transport errors (refused, reset) by edge
	gap         []time.Duration // longest stretch without a 302 by edge
	recovered   []time.Duration // until the first 302 to a request sent in the phase, by edge (-1: none)
	slowest     []time.Duration // the longest a visitor waited for an answer, by edge
}

func (l *load) phase(name string, from, to time.Time) phase {
	n := len(l.edges)
	p := phase{name: name, from: from, to: to, found: make([]int, n), unavailable: make([]int, n),
		other: make([]int, n), failed: make([]int, n), gap: make([]time.Duration, n), recovered: make([]time.Duration, n),
		slowest: make([]time.Duration, n)}
	last := make([]time.Time, n)
	for i := range last {
		last[i] = from
		p.recovered[i] = -1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.at.Before(from) || !e.at.Before(to) {
			continue
		}
		p.slowest[e.edge] = max(p.slowest[e.edge], e.at.Sub(e.sent))
		switch e.status {
		case http.StatusFound:
			p.found[e.edge]++
			p.gap[e.edge] = max(p.gap[e.edge], e.at.Sub(last[e.edge]))
			last[e.edge] = e.at
			if !e.sent.Before(from) && p.recovered[e.edge] < 0 {
				p.recovered[e.edge] = e.at.Sub(from)
			}
		case http.StatusServiceUnavailable:
			p.unavailable[e.edge]++
		case 0:
			p.failed[e.edge]++
		default:
			p.other[e.edge]++
		}
	}
	for i := range last {
		p.gap[i] = max(p.gap[i], to.Sub(last[i]))
	}
	return p
}

func (p phase) String() string {
	var parts []string
	for i := range p.found {
		parts = append(parts, fmt.Sprintf("edge%d 302=%d 503=%d other=%d refused=%d longest-without-302=%v first-302-sent-after-start=%v slowest=%v",
			i+1, p.found[i], p.unavailable[i], p.other[i], p.failed[i], p.gap[i].Round(time.Millisecond),
			p.recovered[i].Round(time.Millisecond), p.slowest[i].Round(time.Millisecond)))
	}
	return fmt.Sprintf("%s (%v): %s", p.name, p.to.Sub(p.from).Round(100*time.Millisecond), strings.Join(parts, "; "))
}

// ingested waits until the primary's consumer has acknowledged every click up to the stream
// sequence upTo (0: the stream's last, with nothing pending) and returns how long that took.
func ingested(t *testing.T, js jetstream.JetStream, upTo uint64, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var info *jetstream.ConsumerInfo
		target := upTo
		stream, err := js.Stream(ctx, scaleout.ClickStream)
		if err == nil {
			if target == 0 {
				target = stream.CachedInfo().State.LastSeq
			}
			var cons jetstream.Consumer
			if cons, err = stream.Consumer(ctx, scaleout.ConsumerName); err == nil {
				info, err = cons.Info(ctx)
			}
		}
		cancel()
		if err == nil && info.AckFloor.Stream >= target && (upTo > 0 || info.NumPending == 0 && info.NumAckPending == 0) {
			return time.Since(start)
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("pending %d, awaiting ack %d, ack floor %d of %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream, target)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the primary did not ingest the stream within %v: %s", timeout, last)
	return 0
}

// replicasCurrent waits until the click stream has a leader and two current replicas and
// returns how long that took.
func replicasCurrent(t *testing.T, js jetstream.JetStream, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stream, err := js.Stream(ctx, scaleout.ClickStream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = stream.Info(ctx)
		}
		cancel()
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 {
			current := true
			for _, r := range info.Cluster.Replicas {
				current = current && r.Current && !r.Offline
			}
			if current {
				return time.Since(start)
			}
		}
		if time.Since(start) > timeout {
			t.Fatalf("the click stream's replicas not current within %v: %+v %v", timeout, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamState is the click stream's state as the cluster reports it.
func streamState(t *testing.T, js jetstream.JetStream, opts ...jetstream.StreamInfoOpt) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, scaleout.ClickStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestClusterUnderLoad is issue #21's failure drill: a NATS JetStream cluster of three servers
// (replicas 3; each a process of this test binary, so one can crash), the primary and two
// edges as processes of the built binary, and a steady load of visitors on the edges while,
// in turn, an affiliate is suspended and approved again (both edges must follow), an edge is
// SIGKILLed and restarted, the stream's leader server is SIGKILLed and restarted, the next
// leader is stopped and restarted (the suspension is done again), the primary is SIGKILLed
// and kept away 30 s, and the primary's consumer is deleted so the whole stream is delivered
// again. Afterwards every 302 a visitor got is one click row, the rows are exactly the
// stream's clicks (nothing answered but lost, nothing stored twice), stats_daily equals the
// rows, and the ledger check passes. The log lines are docs/scaling.md's measurements.
func TestClusterUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("the cluster drill runs processes for about two minutes")
	}
	bin := binary(t)
	dir, world := demoData(t, bin)
	cluster, err := StartClusterProcesses(os.Args[0], filepath.Join(t.TempDir(), "nats"), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Shutdown()
	primary := &soak.Server{Dir: dir, Env: salted, Args: []string{"--nats=" + cluster.URLs(), "--nats-replicas=3"},
		Command: func(args ...string) *exec.Cmd { return exec.Command(bin, args...) }}
	admin := primary.MustSuperuser(t)
	baseline := countClicks(t, dir)
	primary.MustStart(t)
	defer primary.Kill()
	defer func() {
		if t.Failed() {
			t.Logf("primary output:\n%s", primary.Output())
		}
	}()

	var edges []*Edge
	for range 2 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		e, err := StartEdge(bin, cluster.URLs(), addr, salted)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Kill()
		edges = append(edges, e)
	}
	defer func() {
		if t.Failed() {
			for i, e := range edges {
				t.Logf("edge%d output:\n%s", i+1, e.Output())
			}
		}
	}()
	nc, js, err := scaleout.Connect(cluster.URLs(), "edgetest-observer")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// One affiliate's links are kept out of the load: it is suspended under load below.
	spare, loaded, err := spareAffiliate(dir, world.Links)
	if err != nil {
		t.Fatal(err)
	}
	const rate = 200 // redirects a second, over both edges
	ld := startLoad(edges, loaded, rate)
	stopped := false
	defer func() {
		if !stopped {
			ld.Stop()
		}
	}()
	mark := func(name string, from time.Time) phase {
		p := ld.phase(name, from, time.Now())
		t.Log(p)
		return p
	}

	start := time.Now()
	time.Sleep(3 * time.Second)
	if p := mark("steady", start); p.found[0] == 0 || p.found[1] == 0 || p.unavailable[0]+p.unavailable[1] > 0 {
		t.Fatalf("the cluster does not answer steadily: %v", p)
	}

	// 0. Suspend an affiliate under load, then approve it again: measured from the save's
	// request until every edge answers the change (the door, without a click; then a click).
	// Again after the NATS servers' failures below: the edges' watches of the bucket survive.
	suspendAndApprove := func(when string) {
		t.Helper()
		for _, change := range []struct {
			status string
			click  bool
		}{{"suspended", false}, {"approved", true}} {
			from := time.Now()
			if code, err := admin.Do(http.MethodPatch, "/api/collections/affiliates/records/"+spare.affiliate,
				map[string]any{"status": change.status}, nil); err != nil || code != http.StatusOK {
				t.Fatalf("%s: %d %v", change.status, code, err)
			}
			saved := time.Since(from)
			var took []string
			for _, e := range edges {
				took = append(took, untilAnswer(t, ld.client, e, spare.link, change.click, from).Round(time.Millisecond).String())
			}
			t.Logf("affiliate %s %s: save %v, edges answering it %s after the request", change.status, when,
				saved.Round(time.Millisecond), strings.Join(took, " and "))
		}
	}
	suspendAndApprove("under load")

	// 1. SIGKILL an edge; restart it on its address after a second.
	from := time.Now()
	edges[1].Kill()
	time.Sleep(time.Second)
	restart := time.Now()
	if err := edges[1].Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("edge2 restarted and serving in %v", time.Since(restart).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	if p := mark("edge2 SIGKILLed, restarted after 1s", from); p.found[1] == 0 || p.unavailable[0] > 0 {
		t.Fatalf("edge1 must answer alone, edge2 again after its restart: %v", p)
	}

	// 2. One NATS server away, twice: the server leading the click stream SIGKILLed (a crash:
	// nothing handed over, the others elect a new leader when its heartbeats stop, 4–9 s in
	// JetStream) and kept away 20 s, then the next leader taken down in lame-duck mode (it
	// hands its leaderships over first), away 10 s: long enough that a handover lost under
	// load, leaving an election, still shows as redirects continuing. Each is restarted on its
	// storage and catches up.
	for _, stop := range []struct {
		how  string
		away time.Duration
		end  func(int) error
	}{
		{"SIGKILLed", 20 * time.Second, cluster.Kill},
		{"taken down in lame-duck mode", 10 * time.Second, func(i int) error { cluster.LameDuck(i); return nil }},
	} {
		leader := streamState(t, js).Cluster.Leader
		n := cluster.Index(leader)
		if n < 0 {
			t.Fatalf("stream leader %q is not a cluster server", leader)
		}
		from := time.Now()
		if err := stop.end(n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(stop.away)
		down := mark(fmt.Sprintf("NATS server %s (the stream leader) %s", leader, stop.how), from)
		from = time.Now()
		if err := cluster.Restart(n); err != nil {
			t.Fatal(err)
		}
		rejoined := time.Since(from)
		caughtUp := replicasCurrent(t, js, time.Minute)
		t.Logf("NATS server %s restarted and serving JetStream in %v, the stream's replicas current %v later",
			leader, rejoined.Round(time.Millisecond), caughtUp.Round(time.Millisecond))
		time.Sleep(2 * time.Second)
		back := mark(fmt.Sprintf("NATS server %s back", leader), from)
		for i := range edges {
			if down.recovered[i] < 0 || back.found[i] == 0 {
				t.Fatalf("redirects must continue on every edge without one NATS server: %v / %v", down, back)
			}
		}
	}

	suspendAndApprove("under load, after a NATS server's crash and another's stop")

	// 3. SIGKILL the primary and keep it away 30 s: the edges answer as before.
	from = time.Now()
	primary.Kill()
	time.Sleep(30 * time.Second)
	away := mark("primary SIGKILLed, away 30s", from)
	for i := range edges {
		if away.found[i] == 0 || away.unavailable[i]+away.other[i]+away.failed[i] > 0 || away.gap[i] > 5*time.Second {
			t.Fatalf("the edges must redirect without the primary: %v", away)
		}
	}
	backlog := streamState(t, js).State.LastSeq
	from = time.Now()
	primary.MustStart(t)
	started := time.Since(from)
	caughtUp := ingested(t, js, backlog, 2*time.Minute)
	t.Logf("primary restarted in %v, then ingested the backlog (stream at seq %d) in %v",
		started.Round(time.Millisecond), backlog, caughtUp.Round(time.Millisecond))
	time.Sleep(time.Second)
	ld.Stop()
	stopped = true
	mark("whole run", start)
	ingested(t, js, 0, time.Minute)

	// 4. Redeliver: delete the consumer while the primary is stopped; at its start it creates
	// it again and the whole stream comes again, every click already stored.
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	before := countClicks(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = js.DeleteConsumer(ctx, scaleout.ClickStream, scaleout.ConsumerName)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	primary.MustStart(t)
	redelivered := ingested(t, js, 0, 2*time.Minute)
	t.Logf("whole stream redelivered to a new consumer and skipped in %v", redelivered.Round(time.Millisecond))

	// Money still adds up with the edges' clicks in the database: a few sales, an engine run,
	// the ledger check.
	if err := admin.ExcludeLoopback(); err != nil {
		t.Fatal(err)
	}
	merchant := soak.NewSales(primary.URL(), world)
	for i := range 5 {
		if code, err := merchant.Send(fmt.Sprintf("edgetest-%d", i), world.Codes[i%len(world.Codes)], 1000+int64(i)); err != nil || code != http.StatusCreated {
			t.Fatalf("sale: %d %v", code, err)
		}
	}
	if code, err := admin.Do(http.MethodPost, "/api/pba/commissions/run", nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("commission run: %d %v", code, err)
	}
	if err := admin.LedgerOK(); err != nil {
		t.Fatal(err)
	}
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	after := countClicks(t, dir)
	if after != before {
		t.Fatalf("redelivery changed the clicks: %d before, %d after", before, after)
	}

	// Every answered click stored once, and the rows are exactly the stream's clicks.
	app, err := soak.OpenApp(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer app.ResetBootstrapState()
	answered := ld.answered()
	ids := make([]any, 0, len(answered))
	for id := range answered {
		ids = append(ids, id)
	}
	stored, err := soak.StoredClicks(app, ids)
	if err != nil {
		t.Fatal(err)
	}
	if stored != len(answered) {
		byEdge := map[int]int{}
		for _, id := range ids {
			var n int
			_ = app.DB().Select("COUNT(*)").From("clicks").Where(dbx.HashExp{"id": id}).Row(&n)
			if n == 0 {
				byEdge[answered[id.(string)]+1]++
			}
		}
		t.Fatalf("%d clicks answered, %d of them stored; missing by edge: %v", len(answered), stored, byEdge)
	}
	// Clicks only: the stream also carries the edges' door batches (pba.doors).
	msgs := streamState(t, js, jetstream.WithSubjectFilter(scaleout.ClickSubject)).State.Subjects[scaleout.ClickSubject]
	if uint64(after-baseline) != msgs {
		t.Fatalf("%d new click rows, %d clicks in the stream", after-baseline, msgs)
	}
	if problems, err := store.RollupProblems(app); err != nil || len(problems) > 0 {
		t.Fatalf("rollups: %v %v", problems, err)
	}
	t.Logf("%d clicks answered (all stored once), %d in the stream (a click published but not answered, as by a killed edge, is stored too), %d rows; ledger and rollups consistent",
		len(answered), msgs, after-baseline)
}

// spare is an approved affiliate and one of its links.
type spare struct{ affiliate, link string }

// spareAffiliate picks the affiliate of the last of links in a stopped server's data dir and
// returns it with the links of the others.
func spareAffiliate(dir string, links []string) (spare, []string, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "data.db")+"?mode=ro")
	if err != nil {
		return spare{}, nil, err
	}
	defer db.Close()
	owner := map[string]string{}
	for _, code := range links {
		var a string
		if err := db.QueryRow("SELECT affiliate FROM links WHERE code = ?", code).Scan(&a); err != nil {
			return spare{}, nil, fmt.Errorf("link %s: %w", code, err)
		}
		owner[code] = a
	}
	s := spare{affiliate: owner[links[len(links)-1]], link: links[len(links)-1]}
	var others []string
	for _, code := range links {
		if owner[code] != s.affiliate {
			others = append(others, code)
		}
	}
	if len(others) == 0 {
		return spare{}, nil, errors.New("the demo's links are all one affiliate's")
	}
	return s, others, nil
}

// untilAnswer asks edge for link until it answers a click (or the door without one, click
// false) and returns how long after since that was.
func untilAnswer(t *testing.T, client *http.Client, edge *Edge, link string, click bool, since time.Time) time.Duration {
	t.Helper()
	for time.Since(since) < 10*time.Second {
		res, err := client.Get(edge.URL() + "/r/" + link)
		if err == nil {
			res.Body.Close()
			loc, _ := url.Parse(res.Header.Get("Location"))
			if res.StatusCode == http.StatusFound && loc != nil && (loc.Query().Get("pba_click") != "") == click {
				return time.Since(since)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("edge %s did not answer %s's change within 10s", edge.Addr, link)
	return 0
}

// countClicks is the click rows of a stopped server's data dir.
func countClicks(t *testing.T, dir string) int {
	t.Helper()
	app, err := soak.OpenApp(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer app.ResetBootstrapState()
	var n int
	if err := app.DB().Select("COUNT(*)").From("clicks").Row(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
