// Package edgetest runs the scale-out topology of docs/scaling.md for the tests that break it
// (cluster_test.go) and for `make bench-edge` (internal/loadtest): a NATS JetStream cluster of
// servers started in this process from the nats-server library, and `pbaffiliate edge` nodes
// as processes of the built binary.
package edgetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is n JetStream servers routed to each other on loopback. Each keeps its ports and
// storage across Stop and Restart, as a machine that reboots does.
type Cluster struct {
	mu      sync.Mutex
	opts    []*server.Options
	servers []*server.Server // nil while stopped
}

// StartCluster starts n clustered JetStream servers storing under dir and waits until the
// cluster has elected its JetStream meta leader.
func StartCluster(dir string, n int) (*Cluster, error) {
	clientPorts, err := FreePorts(n)
	if err != nil {
		return nil, err
	}
	routePorts, err := FreePorts(n)
	if err != nil {
		return nil, err
	}
	routes := make([]string, n)
	for i, p := range routePorts {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	c := &Cluster{servers: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "pba", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
	}
	for i := range n {
		if err := c.start(i); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	if err := c.waitCurrent(30 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(i int) error {
	opts := *c.opts[i] // the server keeps a pointer to its options: each run gets its own copy
	s, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("nats server %s: %w", opts.ServerName, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats server %s: not ready after 10s", opts.ServerName)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	return nil
}

// waitCurrent waits until a meta leader is elected and every running server is current.
func (c *Cluster) waitCurrent(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		leader, current := false, true
		for _, s := range c.servers {
			if s == nil {
				continue
			}
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		c.mu.Unlock()
		if leader && current {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats cluster: no JetStream meta leader or a server not current after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URLs is the client URLs of every server, comma-separated (what --nats takes).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(o.Port)
	}
	return strings.Join(urls, ",")
}

// Index is the position of the server named name, -1 if none.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// Stop shuts server i down (its clients reconnect to the others).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts server i again on its ports and storage and waits until it is current.
func (c *Cluster) Restart(i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.waitCurrent(60 * time.Second)
}

// Shutdown stops every server.
func (c *Cluster) Shutdown() {
	for i := range c.servers {
		c.Stop(i)
	}
}

// FreePorts reserves n distinct free loopback ports and releases them for the caller to bind.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreeAddr is a free loopback address (host:port).
func FreeAddr() (string, error) {
	p, err := FreePorts(1)
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p[0]), nil
}

// Edge is one `pbaffiliate edge` process serving on Addr.
type Edge struct {
	Addr string
	bin  string
	urls string
	env  []string

	cmd  *exec.Cmd
	done chan struct{}
	out  lockedBuffer
}

// StartEdge runs `bin edge --nats urls --http addr` with env added to its environment and
// waits until it serves (an edge listens once it has read the code bucket).
func StartEdge(bin, urls, addr string, env []string) (*Edge, error) {
	e := &Edge{Addr: addr, bin: bin, urls: urls, env: env}
	return e, e.Start()
}

// URL is the edge's base URL.
func (e *Edge) URL() string { return "http://" + e.Addr }

// Start (re)starts the process on the same address and waits until it serves (30 s).
func (e *Edge) Start() error {
	e.cmd = exec.Command(e.bin, "edge", "--nats", e.urls, "--http", e.Addr)
	e.cmd.Env = append(os.Environ(), e.env...)
	e.cmd.Stdout, e.cmd.Stderr = &e.out, &e.out
	if err := e.cmd.Start(); err != nil {
		return fmt.Errorf("start edge: %w", err)
	}
	done := make(chan struct{})
	e.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(done) }(e.cmd)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Any answer will do: a code nobody has is a 404 once the edge serves.
		if res, err := client.Get(e.URL() + "/r/edgetest-probe"); err == nil {
			res.Body.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("edge exited at start:\n%s", e.out.String())
		default:
		}
		if time.Now().After(deadline) {
			e.Kill()
			return fmt.Errorf("edge not serving within 30s:\n%s", e.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (e *Edge) Kill() { _ = e.signal(syscall.SIGKILL) }

// Stop ends the process with SIGTERM (answers in flight finish) and waits for it.
func (e *Edge) Stop() error { return e.signal(syscall.SIGTERM) }

func (e *Edge) signal(sig syscall.Signal) error {
	if e.cmd == nil || e.cmd.Process == nil {
		return nil
	}
	if err := e.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-e.done:
		e.cmd = nil
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("edge did not exit on %v", sig)
	}
}

// Pid is the running process's id, 0 when stopped.
func (e *Edge) Pid() int {
	if e.cmd == nil || e.cmd.Process == nil {
		return 0
	}
	return e.cmd.Process.Pid
}

// Output is what the process printed so far (across restarts).
func (e *Edge) Output() string { return e.out.String() }

// CPUTime is the CPU time (user+system) process pid used so far, 0 when unknown.
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// lockedBuffer collects a process's output from its two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
