package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runMainEnv makes the test binary act as the real program, so the start-up test runs exactly
// main() (embedded files, migrations, hooks) without a separate `go build`.
const runMainEnv = "PBA_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args = append([]string{"pbaffiliate"}, strings.Fields(os.Getenv("PBA_TEST_ARGS"))...)
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
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
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
			t.Fatalf("server did not answer within 60s: %v\n%s", err, out.String())
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

// TestDemoCommand fills an empty data dir and is safe to run twice.
func TestDemoCommand(t *testing.T) {
	dir := t.TempDir()
	for i, want := range []string{"demo: 5 affiliates created", "demo: 0 affiliates created"} {
		out, err := runProgram(t, "demo --dir="+dir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("run %d: err=%v, want %q in:\n%s", i+1, err, want, out)
		}
	}
}
