// Package scaleout runs pbaffiliate past one machine on NATS JetStream (docs/scaling.md): the
// primary publishes its codes to a key-value bucket and starts (or joins) the NATS servers;
// `pbaffiliate edge` nodes resolve /r/{code} from the bucket and publish each click to a
// replicated stream. Nothing here runs unless --nats or --nats-embedded is given, and package
// hooks does not import it (main wires it), so the single box pays nothing for it.
package scaleout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/pbaffiliate/pbaffiliate/hooks"
)

// The JetStream names the primary and its nodes share.
const (
	CodesBucket  = "pba_codes"  // key-value: the code catalog (hooks/internal/edgewire)
	ClickStream  = "PBA_CLICKS" // the clicks the nodes answered, and the door visits they counted
	ClickSubject = "pba.clicks"
	DoorSubject  = "pba.doors" // edgewire.Doors, in the click stream so one consumer ingests both
)

// dedupWindow is how long JetStream remembers a click's message id: a node retrying a publish
// whose acknowledgement it lost, within this window, stores the click once.
const dedupWindow = 2 * time.Minute

// opTimeout bounds one request to the cluster (a put, a publish, creating the bucket).
const opTimeout = 5 * time.Second

// StartServer runs an embedded NATS server with JetStream on addr (host:port; port 0 picks
// one), storing in storeDir, and waits until it accepts connections.
func StartServer(addr, storeDir string) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: port: %w", addr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: storeDir,
		NoSigs: true, ServerName: "pbaffiliate-" + strings.ReplaceAll(addr, ":", "-"),
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server: not ready after 10s")
	}
	return s, nil
}

// Security is how a process authenticates to the NATS servers and checks them: the flags
// --nats-creds, --nats-tls-ca, --nats-tls-cert and --nats-tls-key, on serve and edge alike.
// A user and password or a token go in the URL (nats://user:pass@host:4222).
type Security struct {
	Creds   string // a user's credentials file (JWT and NKey seed), as `nsc` writes it
	TLSCA   string // PEM CA the servers' certificates are checked against (default: the system's)
	TLSCert string // PEM client certificate, for servers that verify clients (with TLSKey)
	TLSKey  string
}

// AddFlags adds the --nats-creds and --nats-tls-* flags to flags.
func (s *Security) AddFlags(flags *pflag.FlagSet) {
	flags.StringVar(&s.Creds, "nats-creds", "", "NATS user credentials file (JWT + NKey seed)")
	flags.StringVar(&s.TLSCA, "nats-tls-ca", "", "PEM CA file to verify the NATS servers' certificates (implies TLS)")
	flags.StringVar(&s.TLSCert, "nats-tls-cert", "", "PEM client certificate for NATS servers that verify clients (with --nats-tls-key)")
	flags.StringVar(&s.TLSKey, "nats-tls-key", "", "PEM key of --nats-tls-cert")
}

// Set reports whether any option is given.
func (s Security) Set() bool { return s != Security{} }

// Options are the nats.go options of s; an error names the flag at fault.
func (s Security) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return nil, errors.New("--nats-tls-cert and --nats-tls-key go together")
	}
	for flag, file := range map[string]string{"--nats-creds": s.Creds, "--nats-tls-ca": s.TLSCA, "--nats-tls-cert": s.TLSCert, "--nats-tls-key": s.TLSKey} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
	}
	if s.Creds != "" {
		opts = append(opts, nats.UserCredentials(s.Creds))
	}
	if s.TLSCA != "" {
		opts = append(opts, nats.RootCAs(s.TLSCA))
	}
	if s.TLSCert != "" {
		opts = append(opts, nats.ClientCert(s.TLSCert, s.TLSKey))
	}
	return opts, nil
}

// Connect connects to the servers of urls (comma-separated) and opens JetStream; opts add
// to the defaults (Security.Options). The client reconnects forever: a node keeps its catalog
// and answers 503 for clicks while the cluster is away.
func Connect(urls, name string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(urls, append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false)}, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w", urls, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// ensureStreams creates (or updates) the code bucket and the click stream with replicas
// copies each (1 for one server, 3 for the recommended cluster).
func ensureStreams(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: CodesBucket, Description: "pbaffiliate codes (hooks/internal/edgewire)",
		History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("codes bucket: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: ClickStream, Description: "clicks answered by redirect nodes",
		Subjects: []string{ClickSubject, DoorSubject}, Storage: jetstream.FileStorage, Replicas: replicas,
		Duplicates: dedupWindow, Retention: jetstream.LimitsPolicy, MaxAge: hooks.ClickStreamRetention,
	})
	if err != nil {
		return nil, fmt.Errorf("click stream: %w", err)
	}
	return kv, nil
}

// runEvery calls fn every interval until ctx ends.
func runEvery(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
