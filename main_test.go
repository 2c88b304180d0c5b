package main

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/soak"
)

// runMainEnv makes the test binary act as the real program, so the start-up test runs exactly
// main() (embedded files, migrations, hooks) without a separate `go build`.
const runMainEnv = "PBA_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		// PBA_TEST_ARGV0 names the program as `go run` would (a binary in the temp dir, which
		// PocketBase takes for dev mode: TestMakeRunFirstRun).
		argv0 := "pbaffiliate"
		if v := os.Getenv("PBA_TEST_ARGV0"); v != "" {
			argv0 = v
		}
		os.Args = append([]string{argv0}, strings.Fields(os.Getenv("PBA_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func runProgram(t *testing.T, args string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "PBA_TEST_ARGS="+args)
	return cmd
}

// TestServeAnswersHealth starts the program on an empty data dir: the migrations must apply
// and the server must answer /api/health, serve the embedded index and know the schema.
func TestServeAnswersHealth(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := runProgram(t, fmt.Sprintf("serve --http=%s --dir=%s", addr, dir))
	var out soak.LockedBuffer // read in the failure message while the process still writes
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	base := "http://" + addr
	deadline := time.Now().Add(startDeadline)
	for {
		res, err := http.Get(base + "/api/health")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.Contains(string(body), "healthy") {
				t.Fatalf("health: %d %s", res.StatusCode, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not answer within %s: %v\n%s", startDeadline, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	res, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "pbaffiliate") {
		t.Fatalf("embedded index: %d %s", res.StatusCode, body)
	}

	// Every embedded page carries the security headers (docs/operations.md); its meta tag,
	// if it has one, says the same policy (a meta tag cannot carry frame-ancestors).
	for _, page := range []string{"/", "/portal/", "/admin/"} {
		res, err := http.Get(base + page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		csp := res.Header.Get("Content-Security-Policy")
		if res.StatusCode != 200 || csp != hooks.ContentSecurityPolicy || res.Header.Get("Referrer-Policy") != "same-origin" ||
			res.Header.Get("Strict-Transport-Security") != "" {
			t.Fatalf("%s: %d, headers %v", page, res.StatusCode, res.Header)
		}
		if meta := regexp.MustCompile(`http-equiv="Content-Security-Policy" content="([^"]*)"`).FindSubmatch(body); meta != nil &&
			string(meta[1])+"; frame-ancestors 'none'" != csp {
			t.Fatalf("%s: the meta policy %q differs from the header's %q", page, meta[1], csp)
		}
	}

	// track.js posts clicks cross-origin from the merchant's site.
	req, _ := http.NewRequest(http.MethodPost, base+"/api/pba/clicks", strings.NewReader(`{"code":"nobody-here"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://shop.example.com")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 404 || res.Header.Get("Access-Control-Allow-Origin") == "" || !strings.Contains(string(body), `"code"`) {
		t.Fatalf("clicks API: %d %v %s", res.StatusCode, res.Header, body)
	}

	// The schema is there: a guest listing affiliates gets an empty page, not a 404.
	res, err = http.Get(base + "/api/collections/affiliates/records")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `"totalItems":0`) {
		t.Fatalf("affiliates list: %d %s", res.StatusCode, body)
	}
}

// TestDemoCommand fills an empty data dir and is safe to run twice (a week of history keeps it
// short; TestPagesInBrowser uses the default 90 days).
func TestDemoCommand(t *testing.T) {
	dir := t.TempDir()
	for i, want := range []string{"demo: 13 affiliates created (with 7 days of clicks, sales, commissions and payouts)", "demo: 0 affiliates created"} {
		out, err := runProgram(t, "demo --days=7 --dir="+dir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("run %d: err=%v, want %q in:\n%s", i+1, err, want, out)
		}
	}
	// The history has a broadcast sent to every approved affiliate, with its counts, and a draft.
	db := openDB(t, dir)
	var approved, sent int64
	var counts string
	db.QueryRow(`SELECT COUNT(*) FROM affiliates WHERE status = 'approved'`).Scan(&approved)
	if err := db.QueryRow(`SELECT counts, (SELECT COUNT(*) FROM deliveries d WHERE d.message = m.id AND d.status = 'sent') FROM messages m WHERE kind = 'broadcast' AND status = 'sent'`).Scan(&counts, &sent); err != nil {
		t.Fatalf("the demo's sent broadcast: %v", err)
	}
	if sent == 0 || sent != approved || counts != fmt.Sprintf(`{"sent":%d}`, sent) {
		t.Errorf("the demo's broadcast: %d deliveries sent, counts %s; %d approved affiliates", sent, counts, approved)
	}
	if n := countRows(t, db, `SELECT COUNT(*) FROM messages WHERE kind = 'broadcast' AND status = 'draft'`); n != 1 {
		t.Errorf("the demo's draft broadcasts: %d, want 1", n)
	}
	if n := countRows(t, db, `SELECT COUNT(*) FROM leases WHERE name = 'mail-worker' AND expires_at > strftime('%Y-%m-%d %H:%M:%fZ', 'now')`); n != 0 {
		t.Error("the demo keeps the mail lease: the server would wait for it")
	}
}

// TestClicksSurviveKill9 loads /r/{code}, kills the server with SIGKILL mid-load, and checks
// that every redirect answered before the kill is a stored click (durable group commit), or,
// once this one IP is past its hourly ceiling of rows, a click counted in click_overflow.
func TestClicksSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	if out, err := runProgram(t, "demo --days=0 --dir="+dir).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cmd := runProgram(t, fmt.Sprintf("serve --http=%s --dir=%s", addr, dir))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, "http://"+addr)

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := client.Get("http://" + addr + "/r/ada-lovelace-blog")
				if err != nil {
					continue // the server is gone
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == http.StatusFound {
					answered.Add(1)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	close(stop)
	wg.Wait()

	db, err := sql.Open("sqlite", filepath.Join(dir, "data.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, counted int64
	if err := db.QueryRow("SELECT (SELECT COUNT(*) FROM clicks), (SELECT IFNULL(SUM(clicks), 0) FROM click_overflow)").Scan(&rows, &counted); err != nil {
		t.Fatal(err)
	}
	if answered.Load() == 0 || rows+counted < answered.Load() {
		t.Fatalf("answered %d redirects but %d clicks (%d rows, %d counted) survived SIGKILL", answered.Load(), rows+counted, rows, counted)
	}
	t.Logf("answered %d redirects before SIGKILL, %d clicks stored, %d counted", answered.Load(), rows, counted)
}

// startDeadline bounds a start-up (migrations of an empty data dir under the race detector):
// a hang detector, not a speed test; CI runs its test processes at once on two cores.
const startDeadline = 2 * time.Minute

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		res, err := http.Get(base + "/api/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s did not become healthy: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
