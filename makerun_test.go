package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMakeRunFirstRun runs the Makefile's `run` target as a new user would on an empty data
// dir, with HTTP= and DATA= given: the output must be quiet (a handful of lines, no SQL, as
// PocketBase's dev mode would print), say where the back office, portal and dashboard are and
// which superuser to sign in with, and the server must listen where HTTP= says and keep its
// data where DATA= says. GO= points make at a stand-in for `go run .` that runs this test
// binary as the program (TestMain), named as `go run` names its binary, so the target runs as
// written without compiling twice.
func TestMakeRunFirstRun(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("make is not installed: %v", err)
		}
		t.Skip("make is not installed")
	}
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	addr := freeAddr(t)
	goRun := filepath.Join(tmp, "go")
	script := "#!/bin/sh\n" +
		"[ \"$1\" = run ] && [ \"$2\" = . ] || { echo \"go stand-in: unexpected $*\" >&2; exit 2; }\n" +
		"shift 2\n" +
		"PBA_TEST_RUN_MAIN=1 PBA_TEST_ARGS=\"$*\" exec \"$PBA_TEST_BINARY\" -test.run='^$'\n"
	if err := os.WriteFile(goRun, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "run", "HTTP="+addr, "DATA="+data, "GO="+goRun)
	// Named as `go run` names its binary, so PocketBase sees it as `go run` and would start in
	// dev mode (every SQL statement logged) unless the target turns that off.
	cmd.Env = append(os.Environ(), "PBA_TEST_BINARY="+os.Args[0], "PBA_TEST_ARGV0="+filepath.Join(os.TempDir(), "go-build1", "b001", "exe", "pbaffiliate"))
	// make, its shells and the server in one process group, stopped together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	})
	var mu sync.Mutex
	var lines []string
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			mu.Lock()
			lines = append(lines, s.Text())
			mu.Unlock()
		}
	}()
	output := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(lines)
	}

	base := "http://" + addr
	waitHealthy(t, base)
	// Some ordinary use: pages, a sign-in and a records list (dev mode logs each statement).
	for _, page := range []string{"/admin/", "/portal/", "/_/"} {
		res, err := http.Get(base + page)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", page, res.StatusCode)
		}
	}
	token := authToken(t, base, "_superusers", "admin@example.com", "pbaffiliate-admin")
	var list struct {
		TotalItems int `json:"totalItems"`
	}
	getJSON(t, base+"/api/collections/programs/records", token, &list)
	if list.TotalItems != 1 {
		t.Errorf("programs on a first run: %d, want the default one", list.TotalItems)
	}
	// The server's start-up lines come after health; give them a moment to arrive.
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(strings.Join(output(), "\n"), "Server started") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	got := output()
	text := strings.Join(got, "\n")
	t.Logf("make run printed %d lines:\n%s", len(got), text)
	for _, want := range []string{
		"back office " + base + "/admin/",
		"portal " + base + "/portal/",
		"dashboard " + base + "/_/",
		"superuser admin@example.com / pbaffiliate-admin",
		"Server started at " + base,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("make run's output lacks %q", want)
		}
	}
	if len(got) > 12 {
		t.Errorf("make run printed %d lines, want a handful", len(got))
	}
	if sql := regexp.MustCompile(`(?i)\b(SELECT|INSERT INTO|UPDATE .* SET|CREATE TABLE|PRAGMA)\b`).FindString(text); sql != "" {
		t.Errorf("make run printed SQL (%q): dev mode is on", sql)
	}
	// DATA= is where the database is.
	if _, err := os.Stat(filepath.Join(data, "data.db")); err != nil {
		t.Errorf("DATA=%s holds no database: %v", data, err)
	}
	if !strings.Contains(text, fmt.Sprintf("--dir %s", data)) {
		t.Errorf("the server was not started on DATA=%s", data)
	}
}
