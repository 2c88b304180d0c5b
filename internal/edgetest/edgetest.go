// Package edgetest runs the scale-out topology of docs/scaling.md for the tests that break it
// (cluster_test.go) and for `make bench-edge` (internal/loadtest): a NATS JetStream cluster of
// servers started in this process from the nats-server library, and `pbaffiliate edge` nodes
// as processes of the built binary.
package edgetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbaffiliate/pbaffiliate/internal/soak"
)

// Cluster is n JetStream servers routed to each other on loopback, in this process or each in
// a process of its own (StartClusterProcesses). Each keeps its ports and storage across Stop
// and Restart, as a machine that reboots does.
type Cluster struct {
	self  string // "": the servers run in this process; else each is a process of this program
	specs []serverSpec

	mu      sync.Mutex
	servers []*server.Server // in this process; nil while stopped
	procs   []*exec.Cmd      // as processes; nil while stopped
	dones   []chan struct{}  // closed when procs[i] ended
}

// serverSpec is one server of a cluster, as its process reads it from childEnv.
type serverSpec struct {
	Name      string `json:"name"`
	Port      int    `json:"port"`
	RoutePort int    `json:"route_port"`
	Routes    string `json:"routes"`
	StoreDir  string `json:"store_dir"`
}

func (sp serverSpec) options() *server.Options {
	return &server.Options{
		ServerName: sp.Name, Host: "127.0.0.1", Port: sp.Port,
		JetStream: true, StoreDir: sp.StoreDir, NoSigs: true, NoLog: true,
		// Lame-duck mode (LameDuck) hands leaderships over, gives that a second, then closes
		// the clients over 2 s (the defaults, 2 min and 10 s, are for thousands of clients).
		LameDuckDuration: 3 * time.Second, LameDuckGracePeriod: time.Second,
		Cluster: server.ClusterOpts{Name: "pba", Host: "127.0.0.1", Port: sp.RoutePort},
		Routes:  server.RoutesFromStr(sp.Routes),
	}
}

func (sp serverSpec) url() string { return "nats://127.0.0.1:" + strconv.Itoa(sp.Port) }

// childEnv carries a server's spec to a cluster's server process.
const childEnv = "PBA_EDGETEST_NATS_SERVER"

// ServeChild runs the NATS server a cluster started this process for, until SIGTERM (a
// shutdown: the server steps its leaderships down as it closes) or SIGUSR2 (lame-duck mode),
// and exits; without one it returns at once. A program that StartClusterProcesses re-runs calls it first (a test's
// TestMain).
func ServeChild() {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return
	}
	var sp serverSpec
	if err := json.Unmarshal([]byte(raw), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "edgetest: nats server spec:", err)
		os.Exit(2)
	}
	s, err := server.NewServer(sp.options())
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgetest: nats server:", err)
		os.Exit(2)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		fmt.Fprintln(os.Stderr, "edgetest: nats server not ready after 10s")
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt, syscall.SIGUSR2)
	if <-sig == syscall.SIGUSR2 {
		s.LameDuckShutdown()
	}
	s.Shutdown()
	s.WaitForShutdown()
	os.Exit(0)
}

// StartCluster starts n clustered JetStream servers in this process, storing under dir, and
// waits until every one is current with an elected JetStream meta leader.
func StartCluster(dir string, n int) (*Cluster, error) { return startCluster("", dir, n) }

// StartClusterProcesses is StartCluster with each server a process of the program self (which
// calls ServeChild first), so that Kill can end one as a crash does: no leadership handed over.
func StartClusterProcesses(self, dir string, n int) (*Cluster, error) {
	return startCluster(self, dir, n)
}

func startCluster(self, dir string, n int) (*Cluster, error) {
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
	c := &Cluster{self: self, servers: make([]*server.Server, n), procs: make([]*exec.Cmd, n), dones: make([]chan struct{}, n)}
	for i := range n {
		c.specs = append(c.specs, serverSpec{Name: fmt.Sprintf("n%d", i+1), Port: clientPorts[i], RoutePort: routePorts[i],
			Routes: strings.Join(routes, ","), StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))})
	}
	for i := range n {
		if err := c.start(i); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	if err := c.waitCurrent(60 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(i int) error {
	sp := c.specs[i]
	if c.self == "" {
		s, err := server.NewServer(sp.options())
		if err != nil {
			return fmt.Errorf("nats server %s: %w", sp.Name, err)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			s.Shutdown()
			return fmt.Errorf("nats server %s: not ready after 10s", sp.Name)
		}
		c.mu.Lock()
		c.servers[i] = s
		c.mu.Unlock()
		return nil
	}
	raw, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nats server %s: %w", sp.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.procs[i], c.dones[i] = cmd, done
	c.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(sp.Port), time.Second); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("nats server %s exited at start", sp.Name)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats server %s: not ready after 10s", sp.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCurrent waits until a meta leader is elected and every running server is current: in
// this process asked directly, of processes through a client of each server.
func (c *Cluster) waitCurrent(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		c.mu.Lock()
		if c.self == "" {
			leader := false
			for _, s := range c.servers {
				if s != nil {
					leader = leader || s.JetStreamIsLeader()
					ok = ok && s.JetStreamIsCurrent()
				}
			}
			ok = ok && leader
		}
		running := make([]bool, len(c.procs))
		for i, p := range c.procs {
			running[i] = p != nil
		}
		c.mu.Unlock()
		for i, r := range running {
			if r && ok {
				ok = jetStreamAnswers(c.specs[i].url())
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats cluster: no JetStream meta leader or a server not current after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jetStreamAnswers reports whether the server at url answers a JetStream account request (it
// reaches the meta leader).
func jetStreamAnswers(url string) bool {
	nc, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

// URLs is the client URLs of every server, comma-separated (what --nats takes).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.specs))
	for i, sp := range c.specs {
		urls[i] = sp.url()
	}
	return strings.Join(urls, ",")
}

// Index is the position of the server named name, -1 if none.
func (c *Cluster) Index(name string) int {
	for i, sp := range c.specs {
		if sp.Name == name {
			return i
		}
	}
	return -1
}

// Stop shuts server i down (SIGTERM): it steps its leaderships down as it closes; its clients
// reconnect to the others. A step-down whose message the closing routes drop leaves the
// others to elect, as after a crash (once in CI, under load): LameDuck is the careful way.
func (c *Cluster) Stop(i int) { c.end(i, syscall.SIGTERM) }

// LameDuck takes server i down as NATS advises for maintenance (`nats-server --signal ldm`):
// it stops accepting clients, hands its leaderships over and waits a second for that to take
// effect, then closes its clients over a few seconds and shuts down.
func (c *Cluster) LameDuck(i int) { c.end(i, syscall.SIGUSR2) }

// Kill ends server i's process with SIGKILL, as a crash or the loss of its machine does:
// nothing handed over, the others elect new leaders when its heartbeats stop. Processes only.
func (c *Cluster) Kill(i int) error {
	if c.self == "" {
		return errors.New("edgetest: a server in this process cannot crash (StartClusterProcesses)")
	}
	c.end(i, syscall.SIGKILL)
	return nil
}

func (c *Cluster) end(i int, sig syscall.Signal) {
	c.mu.Lock()
	s, p, done := c.servers[i], c.procs[i], c.dones[i]
	c.servers[i], c.procs[i] = nil, nil
	c.mu.Unlock()
	if s != nil {
		if sig == syscall.SIGUSR2 {
			s.LameDuckShutdown()
		}
		s.Shutdown()
		s.WaitForShutdown()
	}
	if p != nil {
		_ = p.Process.Signal(sig)
		<-done
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
	for i := range c.specs {
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
	args []string

	cmd  *exec.Cmd
	done chan struct{}
	out  soak.LockedBuffer
}

// StartEdge runs `bin edge --nats urls --http addr [args…]` with env added to its environment
// and waits until it serves (an edge listens once it has read the code bucket).
func StartEdge(bin, urls, addr string, env []string, args ...string) (*Edge, error) {
	e := &Edge{Addr: addr, bin: bin, urls: urls, env: env, args: args}
	return e, e.Start()
}

// URL is the edge's base URL.
func (e *Edge) URL() string { return "http://" + e.Addr }

// Start (re)starts the process on the same address and waits until it serves (30 s).
func (e *Edge) Start() error {
	e.cmd = exec.Command(e.bin, append([]string{"edge", "--nats", e.urls, "--http", e.Addr}, e.args...)...)
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
