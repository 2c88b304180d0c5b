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
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// Connect connects to the servers of urls (comma-separated) and opens JetStream. The client
// reconnects forever: a node keeps its catalog and answers 503 for clicks while the cluster is
// away.
func Connect(urls, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(urls, nats.Name(name), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false))
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
		Duplicates: dedupWindow, Retention: jetstream.LimitsPolicy, MaxAge: clickRetention,
	})
	if err != nil {
		return nil, fmt.Errorf("click stream: %w", err)
	}
	return kv, nil
}

// clickRetention is how long the stream keeps a click. Until the primary ingests the stream
// (the next step of docs/scaling.md) it is the only copy of an edge's clicks.
const clickRetention = 7 * 24 * time.Hour
