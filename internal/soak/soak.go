// Package soak drives a real pbaffiliate process from outside for the tests that kill it:
// the restore drill (backup_drill_test.go) and the soak (`make soak`, soak_test.go). A Server
// is one process on one data dir; a Client is a superuser's HTTP session; World is what the
// demo data gives a driver (the program's secret, affiliate and link codes).
package soak

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Superuser credentials the drivers create on the data dir.
const (
	adminEmail    = "soak@example.com"
	adminPassword = "soak-password-1"
)

// Server is one pbaffiliate process serving Dir on a loopback address kept across restarts.
type Server struct {
	Dir string
	// Command builds the program's command line (the built binary, or a test binary acting as it).
	Command func(args ...string) *exec.Cmd
	// Env is added to the process's environment.
	Env []string
	// Args are added to serve's command line (e.g. --nats URL).
	Args []string

	addr string
	cmd  *exec.Cmd
	out  LockedBuffer
	done chan struct{}
}

// URL is the server's base URL (its address is chosen at the first start and kept).
func (s *Server) URL() string {
	if s.addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		s.addr = l.Addr().String()
		l.Close()
	}
	return "http://" + s.addr
}

// Start runs `serve` and waits until /api/health answers (60 s).
func (s *Server) Start() error {
	base := s.URL()
	s.cmd = s.Command(append([]string{"serve", "--http=" + s.addr, "--dir=" + s.Dir, "--dev=false"}, s.Args...)...)
	s.cmd.Env = append(s.cmd.Environ(), s.Env...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(done) }(s.cmd)
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(base + "/api/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("server exited at start:\n%s", s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("server not healthy within 60s: %v\n%s", err, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MustStart is Start failing t.
func (s *Server) MustStart(t testing.TB) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
}

// Signal sends sig and waits for the process to end (30 s).
func (s *Server) Signal(sig syscall.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) && !strings.Contains(err.Error(), "finished") {
		return err
	}
	select {
	case <-s.done:
		s.cmd = nil
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("server did not exit on %v:\n%s", sig, s.out.String())
	}
}

// Kill ends the process with SIGKILL (the loss of the machine, or a crash).
func (s *Server) Kill() { _ = s.Signal(syscall.SIGKILL) }

// Stop ends the process gracefully (SIGTERM).
func (s *Server) Stop() error { return s.Signal(syscall.SIGTERM) }

// Output is what the process printed so far.
func (s *Server) Output() string { return s.out.String() }

// MustSuperuser creates the drivers' superuser on the data dir (run before Start) and returns
// its client; it signs in at its first request.
func (s *Server) MustSuperuser(t testing.TB) *Client {
	t.Helper()
	if out, err := s.Command("superuser", "upsert", adminEmail, adminPassword, "--dir="+s.Dir).CombinedOutput(); err != nil {
		t.Fatalf("superuser upsert: %v\n%s", err, out)
	}
	return &Client{Base: s.URL(), http: &http.Client{Timeout: 30 * time.Second}}
}

// Client is a superuser's session with a server.
type Client struct {
	Base  string
	http  *http.Client
	mu    sync.Mutex
	token string
}

// Do sends a JSON request as the superuser and decodes a JSON answer into out (when not nil).
func (c *Client) Do(method, path string, body, out any) (int, error) {
	for attempt := 0; ; attempt++ {
		token, err := c.signIn()
		if err != nil {
			return 0, err
		}
		code, err := doJSON(c.http, method, c.Base+path, "Bearer "+token, body, out)
		if code == http.StatusUnauthorized && attempt == 0 {
			c.mu.Lock()
			c.token = ""
			c.mu.Unlock()
			continue
		}
		return code, err
	}
}

func (c *Client) signIn() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" {
		return c.token, nil
	}
	var auth struct {
		Token string `json:"token"`
	}
	code, err := doJSON(c.http, http.MethodPost, c.Base+"/api/collections/_superusers/auth-with-password", "",
		map[string]string{"identity": adminEmail, "password": adminPassword}, &auth)
	if err != nil || code != http.StatusOK || auth.Token == "" {
		return "", fmt.Errorf("superuser sign-in: %d %v", code, err)
	}
	c.token = auth.Token
	return c.token, nil
}

// LedgerOK asks the server's ledger check (GET /api/pba/ledger/check) and fails on a problem.
func (c *Client) LedgerOK() error {
	var check struct {
		OK       bool  `json:"ok"`
		Problems []any `json:"problems"`
	}
	code, err := c.Do(http.MethodGet, "/api/pba/ledger/check", nil, &check)
	if err != nil || code != http.StatusOK || !check.OK {
		return fmt.Errorf("ledger check: %d ok=%v problems=%v %v", code, check.OK, check.Problems, err)
	}
	return nil
}

// ExcludeLoopback puts 127.0.0.1 in the rate limits' excluded IPs: the drivers are the
// merchant's server sending in bulk (README: such a server belongs there), and every client of
// a loopback test shares one address.
func (c *Client) ExcludeLoopback() error {
	code, err := c.Do(http.MethodPatch, "/api/settings", map[string]any{"rateLimits": map[string]any{"excludedIPs": []string{"127.0.0.1"}}}, nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("rate limit exclusion: %d %v", code, err)
	}
	return nil
}

// doJSON is one HTTP exchange with JSON bodies.
func doJSON(client *http.Client, method, url, auth string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, err
	}
	if out != nil && len(raw) > 0 && res.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s %s: %w in %s", method, url, err, raw)
		}
	}
	return res.StatusCode, nil
}

// World is what a driver needs of the demo data: the first program and its approved
// affiliates' codes and link codes.
type World struct {
	Program, Secret, Currency string
	Codes                     []string // approved affiliates' own codes
	Links                     []string // their links' codes
}

// ReadWorld reads the world from a data dir whose server is not running.
func ReadWorld(dir string) (World, error) {
	db, err := sql.Open("sqlite", filepath.Join(dir, "data.db"))
	if err != nil {
		return World{}, err
	}
	defer db.Close()
	var w World
	if err := db.QueryRow("SELECT id, postback_secret, currency FROM programs ORDER BY created LIMIT 1").Scan(&w.Program, &w.Secret, &w.Currency); err != nil {
		return World{}, fmt.Errorf("program: %w", err)
	}
	for query, into := range map[string]*[]string{
		"SELECT code FROM affiliates WHERE program = ? AND status = 'approved' ORDER BY code": &w.Codes,
		`SELECT l.code FROM links l JOIN affiliates a ON a.id = l.affiliate
			WHERE l.program = ? AND a.status = 'approved' AND NOT l.archived ORDER BY l.code`: &w.Links,
	} {
		rows, err := db.Query(query, w.Program)
		if err != nil {
			return World{}, err
		}
		for rows.Next() {
			var code string
			if err := rows.Scan(&code); err != nil {
				rows.Close()
				return World{}, err
			}
			*into = append(*into, code)
		}
		rows.Close()
	}
	if len(w.Codes) == 0 || len(w.Links) == 0 {
		return World{}, errors.New("no approved affiliate with links: run `demo` first")
	}
	return w, nil
}

// Sales sends sales and their updates as the merchant's server (the program's secret).
type Sales struct {
	base, secret, currency string
	http                   *http.Client
}

// NewSales is the merchant of w's program on the server at base.
func NewSales(base string, w World) *Sales {
	return &Sales{base: base, secret: w.Secret, currency: w.Currency, http: &http.Client{Timeout: 30 * time.Second}}
}

// Send posts a sale credited to the affiliate code and returns the answer's status.
func (s *Sales) Send(externalID, code string, amount int64) (int, error) {
	return doJSON(s.http, http.MethodPost, s.base+"/api/pba/conversions", "Bearer "+s.secret, map[string]any{
		"external_id": externalID, "affiliate_code": code, "amount": amount, "currency": s.currency}, nil)
}

// Update sends the update form of a sale (refunded_amount, status).
func (s *Sales) Update(externalID string, change map[string]any) (int, error) {
	return doJSON(s.http, http.MethodPost, s.base+"/api/pba/conversions/api/"+externalID, "Bearer "+s.secret, change, nil)
}

// OpenApp opens a stopped server's data dir as a PocketBase app for checks; close it with
// ResetBootstrapState.
func OpenApp(dir string) (core.App, error) {
	app := core.NewBaseApp(core.BaseAppConfig{DataDir: dir})
	if err := app.Bootstrap(); err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return app, nil
}

// RollupProblems is store.RollupProblems on a stopped server's data dir.
func RollupProblems(dir string) ([]string, error) {
	app, err := OpenApp(dir)
	if err != nil {
		return nil, err
	}
	defer app.ResetBootstrapState()
	return store.RollupProblems(app)
}

// LockedBuffer collects a process's output from its two pipes (stdout and stderr write at once).
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StoredClicks counts how many of ids are rows of clicks (in chunks, under SQLite's variable
// limit): the check that every answered click was stored, for the soak and the cluster drill.
func StoredClicks(app core.App, ids []any) (int, error) {
	stored := 0
	for i := 0; i < len(ids); i += 500 {
		var n int
		if err := app.DB().Select("COUNT(*)").From("clicks").Where(dbx.In("id", ids[i:min(i+500, len(ids))]...)).Row(&n); err != nil {
			return stored, fmt.Errorf("count stored clicks: %w", err)
		}
		stored += n
	}
	return stored, nil
}
