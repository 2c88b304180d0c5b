package edgetest

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
	"github.com/pbaffiliate/pbaffiliate/internal/soak"
)

// TestFlagRefusals: the built binary refuses each wrong scale-out command line with a message
// naming the problem, and exits instead of serving.
func TestFlagRefusals(t *testing.T) {
	bin := binary(t)
	lone, err := scaleout.StartServer("127.0.0.1:0", t.TempDir()) // JetStream, but no primary ever fed it
	if err != nil {
		t.Fatal(err)
	}
	defer lone.Shutdown()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ln, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	salt := []string{"PBA_IP_SALT=edgetest-salt"}
	for _, c := range []struct {
		name string
		salt bool
		args []string
		want string
	}{
		{"edge without --nats", true, []string{"edge"}, "edge: --nats is required"},
		{"edge with an argument", true, []string{"edge", "--nats", lone.ClientURL(), "extra"}, `unknown command "extra" for "edge"`},
		{"edge with no server there", true, []string{"edge", "--nats", "nats://127.0.0.1:1"}, "connect to nats nats://127.0.0.1:1: nats: no servers available"},
		{"edge without the primary's salt", false, []string{"edge", "--nats", lone.ClientURL()}, "edge: PBA_IP_SALT must be set"},
		{"edge before any primary", true, []string{"edge", "--nats", lone.ClientURL()}, "edge: codes bucket: nats: bucket not found"},
		{"serve with no server there", true, []string{"serve", "--nats", "nats://127.0.0.1:1"}, "connect to nats nats://127.0.0.1:1: nats: no servers available"},
		{"serve with an embedded address without port", true, []string{"serve", "--nats-embedded", "localhost"}, `nats listen address "localhost"`},
		{"serve with more replicas than servers", true, []string{"serve", "--nats", lone.ClientURL(), "--nats-replicas", "3"}, "codes bucket: nats: API error: code=500 err_code=10074 description=replicas > 1 not supported in non-clustered mode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if args[0] == "serve" {
				args = append(args, "--dir="+t.TempDir(), "--http="+ln, "--dev=false")
			}
			cmd := exec.Command(bin, args...)
			// Unset, the salt is empty: one in the test's own environment does not leak in.
			cmd.Env = append(cmd.Environ(), "PBA_IP_SALT=")
			if c.salt {
				cmd.Env = append(cmd.Env, salt...)
			}
			out, err := runFor(cmd, 60*time.Second)
			if errors.Is(err, errStillRunning) {
				t.Fatalf("%v did not exit:\n%s", c.args, out)
			}
			if !strings.Contains(out, c.want) {
				t.Fatalf("%v: want %q in the output (err %v):\n%s", c.args, c.want, err, out)
			}
			// Both exit non-zero, serve too (main wraps PocketBase's serve with hooks.Failing),
			// so a supervisor restarting on failure restarts them.
			if err == nil {
				t.Fatalf("%v exited 0:\n%s", c.args, out)
			}
		})
	}

	// An edge whose --http address is taken exits with the listener's error.
	dir, _ := demoData(t, bin)
	primary := &soak.Server{Dir: dir, Env: salt, Args: []string{"--nats=" + lone.ClientURL()},
		Command: func(args ...string) *exec.Cmd { return exec.Command(bin, args...) }}
	primary.MustStart(t)
	defer primary.Kill()
	cmd := exec.Command(bin, "edge", "--nats", lone.ClientURL(), "--http", taken.Addr().String())
	cmd.Env = append(cmd.Environ(), salt...)
	if out, err := runFor(cmd, 60*time.Second); err == nil || !strings.Contains(out, "address already in use") {
		t.Fatalf("edge on a taken address: %v\n%s", err, out)
	}
}

// errStillRunning is runFor's error for a command that had to be killed.
var errStillRunning = errors.New("still running: killed")

// runFor runs cmd to its end, killing it after d (a refusal that serves instead fails).
func runFor(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out soak.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("after %v: %w", d, errStillRunning)
	}
}

// TestEmbeddedSingleBox is the single-box trial of docs/scaling.md with the built binary:
// `serve --nats-embedded HOST:PORT` and `edge --nats nats://HOST:PORT --http ADDR --ip-header
// X-Forwarded-For`. The edge answers a demo link with the primary's contract (302 to the
// program's site with the click id, the click cookie, no open redirect), the primary stores
// that click, with the IP hash the primary gives the same visitor (behind a proxy both trust),
// and a code the primary never had is the edge's 404.
func TestEmbeddedSingleBox(t *testing.T) {
	bin := binary(t)
	dir, world := demoData(t, bin)
	natsAddr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	primary := &soak.Server{Dir: dir, Env: salted, Args: []string{"--nats-embedded=" + natsAddr},
		Command: func(args ...string) *exec.Cmd { return exec.Command(bin, args...) }}
	admin := primary.MustSuperuser(t)
	primary.MustStart(t)
	defer primary.Kill()
	if code, err := admin.Do(http.MethodPatch, "/api/settings", map[string]any{
		"trustedProxy": map[string]any{"headers": []string{"X-Forwarded-For"}}}, nil); err != nil || code != http.StatusOK {
		t.Fatalf("trusted proxy: %d %v", code, err)
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	edge, err := StartEdge(bin, "nats://"+natsAddr, addr, salted, "--ip-header", "X-Forwarded-For")
	if err != nil {
		t.Fatalf("%v\nprimary:\n%s", err, primary.Output())
	}
	defer edge.Kill()

	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	visit := func(base, path, ip string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", ip)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	clickOf := func(res *http.Response) string {
		t.Helper()
		loc, _ := url.Parse(res.Header.Get("Location"))
		var cookie string
		for _, c := range res.Cookies() {
			if c.Name == "pba_click" {
				cookie = c.Value
			}
		}
		if res.StatusCode != http.StatusFound || loc == nil || loc.Host == "evil.example" || loc.Query().Get("pba_click") == "" ||
			cookie != loc.Query().Get("pba_click") {
			t.Fatalf("answered %d, Location %q, cookies %v", res.StatusCode, res.Header.Get("Location"), res.Header.Values("Set-Cookie"))
		}
		return cookie
	}
	link := "/r/" + world.Links[0] + "?to=" + url.QueryEscape("https://evil.example/")
	onEdge := clickOf(visit(edge.URL(), link, "203.0.113.9"))
	onPrimary := clickOf(visit(primary.URL(), link, "203.0.113.9"))
	otherVisitor := clickOf(visit(edge.URL(), link, "198.51.100.4"))

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "data.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hash := func(id string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var h string
			err := db.QueryRow("SELECT ip_hash FROM clicks WHERE id = ?", id).Scan(&h)
			if err == nil {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("click %s not stored by the primary within 30s: %v\n%s", id, err, primary.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if a, b, c := hash(onEdge), hash(onPrimary), hash(otherVisitor); a == "" || a != b || a == c {
		t.Fatalf("ip hashes: edge %q, primary %q for one visitor; %q for another", a, b, c)
	}

	if res := visit(edge.URL(), "/r/no-such-code-anywhere", "203.0.113.9"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown code: %d", res.StatusCode)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "nats", "jetstream")); err != nil || len(entries) == 0 {
		t.Fatalf("the embedded server's storage is not in pb_data/nats: %v %v", entries, err)
	}
}
