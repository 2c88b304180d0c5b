// Command loadtest is `make bench`'s HTTP load test of the click redirector, run with wrk on
// this machine and printed as one table:
//
//	(a) a bare Go net/http handler answering the same 302 with no database (the ceiling),
//	(b) GET /r/{code} on the real server (durable group commit),
//	(c) the naive path: POST /api/collections/clicks/records per click as superuser,
//
// plus an exact-count run (every answered 302 is a stored row) and a SIGKILL-mid-load run
// (no answered click lost). Each of (a), (b) and (c) gets the same unmeasured warm-up run
// first (-warmup, 2 s). All traffic stays on 127.0.0.1. wrk is one IP: the servers run with
// the per-IP ceiling off (PBA_CLICK_IP_CEILING=0), so every click takes the full path (a row).
//
// With -flood 5s it runs only the click flood of flood.go instead (the disk one IP can fill).
package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite"

	"github.com/pbaffiliate/pbaffiliate/internal/edgetest"
)

const (
	linkCode      = "ada-lovelace-blog" // made by `pbaffiliate demo`
	adminEmail    = "bench@pbaffiliate.test"
	adminPassword = "bench-password-1"
)

// fullPath is the environment of the wrk scenarios' servers: wrk is one IP, and past the
// per-IP ceiling its clicks would be counted instead of stored, which is not the path measured.
var fullPath = []string{"PBA_CLICK_IP_CEILING=0"}

func main() {
	duration := flag.Duration("d", 10*time.Second, "duration of each measured wrk run")
	warm := flag.Duration("warmup", 2*time.Second, "unmeasured wrk run before each measured one (0: none)")
	conns := flag.Int("c", 64, "wrk connections")
	exact := flag.Int("n", 20000, "requests of the exact-count run")
	floodFor := flag.Duration("flood", 0, "run only the click flood, this long (e.g. 5s)")
	bin := flag.String("bin", "", "server binary of the flood (default: built from this tree)")
	edges := flag.Bool("edge", false, "run only make bench-edge: two edges and a primary on NATS against the single process")
	flag.Parse()
	var err error
	if *edges {
		err = runEdge(load{d: *duration, warm: *warm, conns: *conns})
	} else if *floodFor > 0 {
		err = runFlood(*bin, *floodFor, *conns)
	} else {
		err = run(load{d: *duration, warm: *warm, conns: *conns}, *exact)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// result is one row of the table.
type result struct {
	name        string
	rps         float64
	p50, p99    string
	rssMB       float64
	cpuUS       float64 // server CPU time per request in µs (user+system), 0 when not measured
	rows, ok302 int64
	note        string
}

// load is the shape of every wrk run.
type load struct {
	d, warm time.Duration // measured run; unmeasured run before it
	conns   int
}

// measure runs wrk on url for l.warm (the server's first requests pay for cold caches, heap
// growth and lazily built state; no scenario is measured on them), calls between, then runs
// wrk for l.d and returns that run alone.
func (l load) measure(url, script string, between func() error) (wrkResult, error) {
	if l.warm > 0 {
		if _, err := runWrk(url, l.warm, l.conns, script); err != nil {
			return wrkResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	if between != nil {
		if err := between(); err != nil {
			return wrkResult{}, err
		}
	}
	return runWrk(url, l.d, l.conns, script)
}

func run(l load, exact int) error {
	if err := needWrk(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pba_loadtest_")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := buildServer(work)
	if err != nil {
		return err
	}

	var results []result
	bare, err := benchBare(l)
	if err != nil {
		return err
	}
	results = append(results, bare)

	redirect, err := benchRedirect(bin, work, l, exact)
	if err != nil {
		return err
	}
	results = append(results, redirect...)

	naive, err := benchNaive(bin, work, l)
	if err != nil {
		return err
	}
	results = append(results, naive)

	killed, err := benchKill(bin, work, l.conns)
	if err != nil {
		return err
	}
	results = append(results, killed)

	printTable(results, bare.rps, naive.rps)
	return nil
}

func needWrk() error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed (make bench installs it: apt-get install wrk)")
	}
	return nil
}

// buildServer builds the server of this tree into dir.
func buildServer(dir string) (string, error) {
	bin := filepath.Join(dir, "pbaffiliate")
	fmt.Println("building the server…")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// benchBare is (a): the same 302 and cookie from a plain handler, no database.
func benchBare(l load) (result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "pba_click", Value: "0123456789abcde", Path: "/", MaxAge: 60 * 86400, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "https://example.com/?pba_click=0123456789abcde", http.StatusFound)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Println("(a) bare handler…")
	w, err := l.measure("http://"+ln.Addr().String()+"/r/"+linkCode, "", nil)
	if err != nil {
		return result{}, err
	}
	return result{name: "(a) bare net/http 302", rps: w.rps, p50: w.p50, p99: w.p99, rssMB: selfRSS(), ok302: w.requests, rows: -1}, nil
}

// benchRedirect is (b) with wrk, then the exact-count run with a fixed number of requests.
func benchRedirect(bin, work string, l load, exact int) ([]result, error) {
	srv, err := startServer(bin, filepath.Join(work, "b"), fullPath)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	fmt.Println("(b) /r/{code} on the real server…")
	var rows0 int64 // the warm-up's rows
	var cpu0 time.Duration
	w, err := l.measure(srv.base+"/r/"+linkCode, "", func() (err error) {
		time.Sleep(200 * time.Millisecond) // let requests wrk abandoned at its deadline finish
		rows0, err = srv.countClicks()
		cpu0 = srv.cpuTime()
		return err
	})
	if err != nil {
		return nil, err
	}
	cpuB := perRequestUS(srv.cpuTime()-cpu0, w.requests)
	time.Sleep(200 * time.Millisecond)
	rowsB, err := srv.countClicks()
	if err != nil {
		return nil, err
	}
	b := result{name: "(b) GET /r/{code}", rps: w.rps, p50: w.p50, p99: w.p99, rssMB: srv.rss(), cpuUS: cpuB, rows: rowsB - rows0, ok302: w.requests,
		note: "measured run only (after the warm-up); wrk stops mid-flight: rows may exceed 302s by at most the connections"}

	fmt.Printf("(b') exact count: %d requests over %d connections…\n", exact, l.conns)
	ok, err := fixedLoad(srv.base+"/r/"+linkCode, l.conns, exact)
	if err != nil {
		return nil, err
	}
	rowsAfter, err := srv.countClicks()
	if err != nil {
		return nil, err
	}
	e := result{name: "(b') exact-count run", rows: rowsAfter - rowsB, ok302: ok, rssMB: srv.rss(), note: "every request awaited: rows must equal 302s"}
	return []result{b, e}, nil
}

// benchNaive is (c): one records-API create per click, as a superuser.
func benchNaive(bin, work string, l load) (result, error) {
	srv, err := startServer(bin, filepath.Join(work, "c"), fullPath)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	token, err := srv.superuserToken()
	if err != nil {
		return result{}, err
	}
	var ids struct {
		Affiliate, Program, Link string
	}
	if err := srv.query("SELECT affiliate, program, id FROM links WHERE code = ?", linkCode).Scan(&ids.Affiliate, &ids.Program, &ids.Link); err != nil {
		return result{}, err
	}
	body, _ := json.Marshal(map[string]any{"link": ids.Link, "affiliate": ids.Affiliate, "program": ids.Program,
		"visitor": "bench", "ip_hash": "0123456789abcdef0123456789abcdef", "user_agent": "wrk", "unique": true})
	script := filepath.Join(work, "naive.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = %q\n", body, token)
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return result{}, err
	}
	fmt.Println("(c) naive records API…")
	var cpu0 time.Duration
	w, err := l.measure(srv.base+"/api/collections/clicks/records", script, func() error { cpu0 = srv.cpuTime(); return nil })
	if err != nil {
		return result{}, err
	}
	cpu := perRequestUS(srv.cpuTime()-cpu0, w.requests)
	return result{name: "(c) POST records API", rps: w.rps, p50: w.p50, p99: w.p99, rssMB: srv.rss(), cpuUS: cpu, rows: -1, ok302: -1}, nil
}

// benchKill loads the redirector, SIGKILLs the server mid-load, restarts it and counts rows.
func benchKill(bin, work string, conns int) (result, error) {
	dir := filepath.Join(work, "kill")
	srv, err := startServer(bin, dir, fullPath)
	if err != nil {
		return result{}, err
	}
	fmt.Println("(kill) SIGKILL mid-load…")
	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := noRedirectClient()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if status, err := get(client, srv.base+"/r/"+linkCode); err == nil && status == http.StatusFound {
					answered.Add(1)
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	_ = srv.cmd.Process.Signal(syscall.SIGKILL)
	_ = srv.cmd.Wait()
	close(stop)
	wg.Wait()

	srv2, err := startServer(bin, dir, fullPath) // restart on the same data: recovery from the WAL
	if err != nil {
		return result{}, fmt.Errorf("restart after SIGKILL: %w", err)
	}
	defer srv2.stop()
	rows, err := srv2.countClicks()
	if err != nil {
		return result{}, err
	}
	return result{name: "(kill) SIGKILL mid-load", rows: rows, ok302: answered.Load(), rssMB: -1, note: "rows must be >= 302s answered"}, nil
}

type server struct {
	cmd  *exec.Cmd
	base string
	dir  string
	db   *sql.DB
}

// startServer runs `serve` on dir (made with the demo data and a superuser when missing),
// env added to its environment and args to its command line.
func startServer(bin, dir string, env []string, args ...string) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "data.db")); errors.Is(err, os.ErrNotExist) {
		for _, args := range [][]string{{"demo"}, {"superuser", "upsert", adminEmail, adminPassword}} {
			if out, err := exec.Command(bin, append(args, "--dir", dir)...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%v: %v\n%s", args, err, out)
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--http", addr, "--dir", dir, "--dev=false"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, base: "http://" + addr, dir: dir}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if status, err := get(http.DefaultClient, s.base+"/api/health"); err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.db, err = sql.Open("sqlite", "file:"+filepath.Join(dir, "data.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	return s, err
}

func (s *server) stop() {
	if s.db != nil {
		s.db.Close()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
	}
}

func (s *server) query(q string, args ...any) *sql.Row { return s.db.QueryRow(q, args...) }

func (s *server) countClicks() (int64, error) {
	var n int64
	err := s.query("SELECT COUNT(*) FROM clicks").Scan(&n)
	return n, err
}

// cpuTime is the CPU time (user+system) the server process used so far, 0 when unknown.
// On a machine shared with other work, CPU per request varies far less than requests per
// second, so the table reports both.
func (s *server) cpuTime() time.Duration { return edgetest.CPUTime(s.cmd.Process.Pid) }

func perRequestUS(cpu time.Duration, requests int64) float64 {
	if cpu <= 0 || requests <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(requests)
}

// rss is the server's peak resident memory in MB (VmHWM), or -1 when unknown.
func (s *server) rss() float64 { return procRSS(s.cmd.Process.Pid) }

func selfRSS() float64 { return procRSS(os.Getpid()) }

func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024
}

func (s *server) superuserToken() (string, error) {
	body := strings.NewReader(fmt.Sprintf(`{"identity":%q,"password":%q}`, adminEmail, adminPassword))
	res, err := http.Post(s.base+"/api/collections/_superusers/auth-with-password", "application/json", body)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("superuser login: %d %v", res.StatusCode, err)
	}
	return out.Token, nil
}

func noRedirectClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{MaxIdleConnsPerHost: 1024},
		Timeout:       30 * time.Second,
	}
}

func get(client *http.Client, url string) (int, error) {
	res, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// fixedLoad sends exactly total requests over conns workers, waiting for every answer.
func fixedLoad(url string, conns, total int) (int64, error) {
	client := noRedirectClient()
	var next, ok atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				status, err := get(client, url)
				switch {
				case err != nil:
					failed.Store(err)
				case status == http.StatusFound:
					ok.Add(1)
				default:
					failed.Store(fmt.Errorf("status %d", status))
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return ok.Load(), fmt.Errorf("exact-count run: %w", err)
	}
	return ok.Load(), nil
}

type wrkResult struct {
	rps      float64
	p50, p99 string
	requests int64
}

func runWrk(url string, d time.Duration, conns int, script string) (wrkResult, error) {
	args := []string{"-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency"}
	if script != "" {
		args = append(args, "-s", script)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var r wrkResult
	if m := regexp.MustCompile(`Requests/sec:\s+([\d.]+)`).FindSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out); m != nil {
		r.requests, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := regexp.MustCompile(`\s50%\s+(\S+)`).FindSubmatch(out); m != nil {
		r.p50 = string(m[1])
	}
	if m := regexp.MustCompile(`\s99%\s+(\S+)`).FindSubmatch(out); m != nil {
		r.p99 = string(m[1])
	}
	if bytes.Contains(out, []byte("Non-2xx or 3xx responses")) {
		return r, fmt.Errorf("wrk saw error responses:\n%s", out)
	}
	return r, nil
}

func printTable(rows []result, bare, naive float64) {
	fmt.Println()
	fmt.Printf("| %-24s | %9s | %8s | %8s | %7s | %7s | %9s | %9s | %s\n", "scenario", "req/s", "p50", "p99", "RSS MB", "CPU µs", "302s", "rows", "note")
	fmt.Println("|--------------------------|-----------|----------|----------|---------|---------|-----------|-----------|------")
	num := func(v int64) string {
		if v < 0 {
			return "-"
		}
		return strconv.FormatInt(v, 10)
	}
	for _, r := range rows {
		rps, rss, cpu := "-", "-", "-"
		if r.rps > 0 {
			rps = fmt.Sprintf("%.0f", r.rps)
		}
		if r.rssMB > 0 {
			rss = fmt.Sprintf("%.0f", r.rssMB)
		}
		if r.cpuUS > 0 {
			cpu = fmt.Sprintf("%.1f", r.cpuUS)
		}
		fmt.Printf("| %-24s | %9s | %8s | %8s | %7s | %7s | %9s | %9s | %s\n", r.name, rps, dash(r.p50), dash(r.p99), rss, cpu, num(r.ok302), num(r.rows), r.note)
	}
	fmt.Println("\nCPU µs: server CPU time (user+system) per request, steadier than req/s on a shared machine.")
	for _, r := range rows {
		if strings.HasPrefix(r.name, "(b)") {
			fmt.Printf("(b)/(a) = %.2f (target >= 0.50)   (b)/(c) = %.1fx (target >= 10x)\n", r.rps/bare, r.rps/naive)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
