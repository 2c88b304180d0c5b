package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
	"github.com/pbaffiliate/pbaffiliate/internal/edgetest"
)

// edgeSalt is the IP salt the bench's primary and edges share (edges need the primary's).
const edgeSalt = "PBA_IP_SALT=bench-edge-salt"

// runEdge is `make bench-edge`: in the same run, (b) GET /r/{code} on the single process and
// the same load spread over two `pbaffiliate edge` nodes feeding a primary (`serve --nats`)
// that ingests the clicks, through (e1) one JetStream server and (e3) a cluster of three with
// replicas 3, the servers run in this process; everything on this machine. Reported:
// redirects/s, latency, and server CPU per redirect — of the edges, the NATS servers and the
// primary together and apart, the primary's ingestion of every click the run answered
// included (the measurement ends when the primary has acknowledged the whole stream).
func runEdge(l load) error {
	if err := needWrk(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pba_bench_edge_")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := buildServer(work)
	if err != nil {
		return err
	}
	single, err := benchSingle(bin, work, l)
	if err != nil {
		return err
	}
	rows := []edgeResult{single}
	for _, servers := range []int{1, 3} {
		r, err := benchEdges(bin, filepath.Join(work, fmt.Sprintf("e%d", servers)), l, servers)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	printEdgeTable(rows)
	return nil
}

// edgeResult is one row of bench-edge's table.
type edgeResult struct {
	name               string
	rps                float64
	p50, p99           string
	requests           int64
	cpuUS              float64 // all server processes, per redirect
	edgeUS, natsUS     float64 // the edges' share, the NATS servers' (0 for the single process)
	primaryUS          float64 // the primary's (ingestion)
	drain              time.Duration
	rows, streamClicks int64
}

// benchSingle is (b) of make bench: the single process, measured the same way.
func benchSingle(bin, work string, l load) (edgeResult, error) {
	srv, err := startServer(bin, filepath.Join(work, "b"), fullPath)
	if err != nil {
		return edgeResult{}, err
	}
	defer srv.stop()
	fmt.Println("(b) /r/{code} on the single process…")
	var cpu0 time.Duration
	w, err := l.measure(srv.base+"/r/"+linkCode, "", func() error {
		time.Sleep(200 * time.Millisecond)
		cpu0 = srv.cpuTime()
		return nil
	})
	if err != nil {
		return edgeResult{}, err
	}
	time.Sleep(200 * time.Millisecond) // the group commit of the last clicks
	return edgeResult{name: "(b) single process", rps: w.rps, p50: w.p50, p99: w.p99, requests: w.requests,
		cpuUS: perRequestUS(srv.cpuTime()-cpu0, w.requests), rows: -1, streamClicks: -1}, nil
}

// benchEdges is (e1) or (e3): wrk on each of two edges at once, half the connections each, the
// clicks going through servers JetStream servers (this process) with as many replicas.
func benchEdges(bin, work string, l load, servers int) (edgeResult, error) {
	var urls string
	if servers == 1 {
		s, err := scaleout.StartServer("127.0.0.1:0", filepath.Join(work, "nats"))
		if err != nil {
			return edgeResult{}, err
		}
		defer s.Shutdown()
		urls = s.ClientURL()
	} else {
		c, err := edgetest.StartCluster(filepath.Join(work, "nats"), servers)
		if err != nil {
			return edgeResult{}, err
		}
		defer c.Shutdown()
		urls = c.URLs()
	}
	env := append([]string{edgeSalt}, fullPath...)
	primary, err := startServer(bin, filepath.Join(work, "data"), env, "--nats", urls, "--nats-replicas", fmt.Sprint(servers))
	if err != nil {
		return edgeResult{}, err
	}
	defer primary.stop()
	var edges []*edgetest.Edge
	for range 2 {
		addr, err := edgetest.FreeAddr()
		if err != nil {
			return edgeResult{}, err
		}
		e, err := edgetest.StartEdge(bin, urls, addr, []string{edgeSalt})
		if err != nil {
			return edgeResult{}, err
		}
		defer e.Stop() //nolint:errcheck // the bench is over
		edges = append(edges, e)
	}
	nc, js, err := scaleout.Connect(urls, "bench-edge")
	if err != nil {
		return edgeResult{}, err
	}
	defer nc.Close()
	// The NATS servers' CPU is this process's: it does little else while wrk runs.
	pids := []int{primary.cmd.Process.Pid, edges[0].Pid(), edges[1].Pid(), os.Getpid()}
	cpu := func() (all []time.Duration) {
		for _, pid := range pids {
			all = append(all, edgetest.CPUTime(pid))
		}
		return all
	}

	name := fmt.Sprintf("(e%d) 2 edges, %d NATS", servers, servers)
	fmt.Printf("%s: /r/{code} on two edges, the primary ingesting…\n", name)
	half := load{d: l.d, warm: l.warm, conns: max(l.conns/2, 1)}
	both := func(d time.Duration) ([]wrkResult, error) {
		res := make([]wrkResult, len(edges))
		errs := make([]error, len(edges))
		var wg sync.WaitGroup
		for i, e := range edges {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i], errs[i] = runWrk(e.URL()+"/r/"+linkCode, d, half.conns, "")
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	if half.warm > 0 {
		if _, err := both(half.warm); err != nil {
			return edgeResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	if _, err := drained(js, time.Minute); err != nil {
		return edgeResult{}, err
	}
	rows0, err := primary.countClicks()
	if err != nil {
		return edgeResult{}, err
	}
	seq0, err := streamLastSeq(js)
	if err != nil {
		return edgeResult{}, err
	}
	cpu0 := cpu()
	runs, err := both(half.d)
	if err != nil {
		return edgeResult{}, err
	}
	drain, err := drained(js, 5*time.Minute)
	if err != nil {
		return edgeResult{}, err
	}
	cpu1 := cpu()
	seq1, err := streamLastSeq(js)
	if err != nil {
		return edgeResult{}, err
	}
	rows1, err := primary.countClicks()
	if err != nil {
		return edgeResult{}, err
	}
	r := edgeResult{name: name, drain: drain, rows: rows1 - rows0, streamClicks: int64(seq1 - seq0)}
	var p50s, p99s []string
	for _, w := range runs {
		r.rps += w.rps
		r.requests += w.requests
		p50s, p99s = append(p50s, w.p50), append(p99s, w.p99)
	}
	r.p50, r.p99 = strings.Join(p50s, "/"), strings.Join(p99s, "/")
	r.primaryUS = perRequestUS(cpu1[0]-cpu0[0], r.requests)
	r.edgeUS = perRequestUS(cpu1[1]-cpu0[1]+cpu1[2]-cpu0[2], r.requests)
	r.natsUS = perRequestUS(cpu1[3]-cpu0[3], r.requests)
	r.cpuUS = r.primaryUS + r.edgeUS + r.natsUS
	return r, nil
}

// drained waits until the primary's consumer has acknowledged the whole click stream and
// returns how long that took.
func drained(js jetstream.JetStream, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := consumerInfo(ctx, js)
		last, serr := streamLastSeq(js)
		cancel()
		if err == nil && serr == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("the primary did not ingest the stream within %v (%v %v)", timeout, err, serr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func consumerInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, scaleout.ClickStream, scaleout.ConsumerName)
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

func streamLastSeq(js jetstream.JetStream) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, scaleout.ClickStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

func printEdgeTable(rows []edgeResult) {
	fmt.Println()
	fmt.Printf("| %-20s | %7s | %15s | %17s | %7s | %8s | %7s | %10s | %7s | %8s | %8s\n",
		"scenario", "req/s", "p50", "p99", "CPU µs", "edges µs", "NATS µs", "primary µs", "drain", "302s", "rows")
	fmt.Println("|----------------------|---------|-----------------|-------------------|---------|----------|---------|------------|---------|----------|---------")
	for _, r := range rows {
		edge, nats, prim, drain, rows := "-", "-", "-", "-", "-"
		if r.edgeUS > 0 {
			edge, nats, prim = fmt.Sprintf("%.1f", r.edgeUS), fmt.Sprintf("%.1f", r.natsUS), fmt.Sprintf("%.1f", r.primaryUS)
			drain, rows = r.drain.Round(time.Millisecond).String(), fmt.Sprint(r.rows)
		}
		fmt.Printf("| %-20s | %7.0f | %15s | %17s | %7.1f | %8s | %7s | %10s | %7s | %8d | %8s\n",
			r.name, r.rps, r.p50, r.p99, r.cpuUS, edge, nats, prim, drain, r.requests, rows)
	}
	fmt.Println("\nCPU µs: server CPU time (user+system) per redirect, all servers; then apart: the two edges, the")
	fmt.Println("NATS servers, the primary (ingesting every click of the run, until the stream was acknowledged).")
	fmt.Println("drain: after wrk ended, until the primary had ingested and acknowledged the whole stream.")
	b := rows[0]
	for _, e := range rows[1:] {
		fmt.Printf("%s / (b): redirects/s %.2f, CPU per redirect %.2f; the run's stream clicks %d, rows %d\n",
			e.name, e.rps/b.rps, e.cpuUS/b.cpuUS, e.streamClicks, e.rows)
	}
}
