package scaleout

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
)

// Options are the primary's scale-out flags; both empty: a single box, nothing started.
type Options struct {
	URLs     string // --nats: servers of an external cluster, comma-separated
	Embedded string // --nats-embedded: HOST:PORT of a JetStream server run in this process
	Replicas int    // --nats-replicas: copies of the bucket and the stream
}

// Primary publishes the code catalog from the primary's records: a snapshot at start, then
// every change from the record hooks.
type Primary struct {
	app  core.App
	opts Options

	mu     sync.Mutex
	server *server.Server
	nc     *nats.Conn
	kv     jetstream.KeyValue
	hooked bool               // record hooks bound (once per app, across restarts)
	cancel context.CancelFunc // of the ingestion loop
	done   chan struct{}      // closed when it returned
	clicks *clickAwaiter      // sales wait on it for clicks not ingested yet (lag.go)
}

// Register adds --nats, --nats-embedded and --nats-replicas to rootCmd (for `serve`) and
// starts the scale-out side in OnServe when one of them is set.
func Register(app core.App, rootCmd *cobra.Command) *Primary {
	p := &Primary{app: app}
	flags := rootCmd.PersistentFlags()
	flags.StringVar(&p.opts.URLs, "nats", "", "join a NATS JetStream cluster (URL[,URL…]) to feed redirect nodes (docs/scaling.md)")
	flags.StringVar(&p.opts.Embedded, "nats-embedded", "", "run an embedded NATS JetStream server on HOST:PORT (storage in pb_data/nats) to feed redirect nodes")
	flags.IntVar(&p.opts.Replicas, "nats-replicas", 1, "copies the NATS cluster keeps of the codes and clicks (3 on a 3-server cluster)")
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		if p.opts.URLs == "" && p.opts.Embedded == "" {
			return se.Next()
		}
		if err := p.Start(context.Background(), p.opts); err != nil {
			return err
		}
		return se.Next()
	})
	// Before the tracker's terminate handler (priority 0) stops the click writer, so a batch in
	// flight commits and is acknowledged.
	app.OnTerminate().Bind(&hook.Handler[*core.TerminateEvent]{Priority: -1, Func: func(e *core.TerminateEvent) error {
		p.Stop()
		return e.Next()
	}})
	return p
}

// Start starts the embedded server (opts.Embedded) or connects to opts.URLs, makes the bucket
// and the stream, binds the record hooks and publishes the snapshot.
func (p *Primary) Start(ctx context.Context, opts Options) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kv != nil {
		return nil
	}
	p.opts = opts
	urls := opts.URLs
	if opts.Embedded != "" {
		s, err := StartServer(opts.Embedded, filepath.Join(p.app.DataDir(), "nats"))
		if err != nil {
			return err
		}
		p.server = s
		if urls == "" {
			urls = s.ClientURL()
		}
	}
	nc, js, err := Connect(urls, "pbaffiliate-primary")
	if err != nil {
		p.stopLocked()
		return err
	}
	p.nc = nc
	kv, err := ensureStreams(ctx, js, max(opts.Replicas, 1))
	if err != nil {
		p.stopLocked()
		return err
	}
	p.kv = kv
	if !p.hooked {
		p.hooked = true
		p.bindHooks()
	}
	if err := p.snapshot(ctx); err != nil {
		p.stopLocked()
		return err
	}
	p.awaitClicks(js)
	ingestCtx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		p.ingest(ingestCtx, js)
	}()
	p.app.Logger().Info("scale-out: codes published, ingesting clicks", "nats", urls)
	return nil
}

// ClientURL is the embedded server's client URL ("" without one), for edges started beside it.
func (p *Primary) ClientURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server == nil {
		return ""
	}
	return p.server.ClientURL()
}

// Stop closes the connection and shuts the embedded server down.
func (p *Primary) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
}

func (p *Primary) stopLocked() {
	if p.cancel != nil {
		p.cancel()
		<-p.done // a batch in flight is committed and acknowledged first
	}
	if p.nc != nil {
		p.nc.Close()
	}
	if p.server != nil {
		p.server.Shutdown()
		p.server.WaitForShutdown()
	}
	p.nc, p.server, p.kv, p.cancel, p.done = nil, nil, nil, nil, nil
}

// bucket is the key-value bucket, nil when stopped.
func (p *Primary) bucket() jetstream.KeyValue {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kv
}

// bindHooks publishes every change of a program, affiliate or link once it is committed
// (the success hooks run after the transaction). A failed publish is logged; the snapshot of
// the next start repairs the bucket (docs/scaling.md lists the gap).
func (p *Primary) bindHooks() {
	put := func(e *core.RecordEvent) error {
		if kv := p.bucket(); kv != nil {
			if err := p.put(e.Context, kv, e.Record); err != nil {
				e.App.Logger().Error("scale-out: publish code change", "collection", e.Record.Collection().Name, "id", e.Record.Id, "error", err)
			}
		}
		return e.Next()
	}
	del := func(e *core.RecordEvent) error {
		if kv := p.bucket(); kv != nil {
			ctx, cancel := context.WithTimeout(e.Context, opTimeout)
			err := kv.Delete(ctx, keyOf(e.Record))
			cancel()
			if err != nil {
				e.App.Logger().Error("scale-out: publish code deletion", "collection", e.Record.Collection().Name, "id", e.Record.Id, "error", err)
			}
		}
		return e.Next()
	}
	for _, name := range []string{collections.Programs, collections.Affiliates, collections.Links} {
		p.app.OnRecordAfterCreateSuccess(name).BindFunc(put)
		p.app.OnRecordAfterUpdateSuccess(name).BindFunc(put)
		p.app.OnRecordAfterDeleteSuccess(name).BindFunc(del)
	}
}

func (p *Primary) put(ctx context.Context, kv jetstream.KeyValue, r *core.Record) error {
	e, err := entryOf(r)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := kv.Put(ctx, e.Key, e.Value); err != nil {
		return fmt.Errorf("put %s: %w", e.Key, err)
	}
	return nil
}

// snapshot publishes every program, affiliate and link, then deletes the keys of records that
// no longer exist (deleted while no primary was publishing).
func (p *Primary) snapshot(ctx context.Context) error {
	kv := p.kv
	current := map[string]bool{}
	for _, name := range []string{collections.Programs, collections.Affiliates, collections.Links} {
		records, err := p.app.FindAllRecords(name)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", name, err)
		}
		for _, r := range records {
			if err := p.put(ctx, kv, r); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			current[keyOf(r)] = true
		}
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: list keys: %w", err)
	}
	var stale []string
	for k := range lister.Keys() {
		if !current[k] {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		if err := kv.Delete(ctx, k); err != nil {
			return fmt.Errorf("snapshot: delete %s: %w", k, err)
		}
	}
	return nil
}

func keyOf(r *core.Record) string {
	switch r.Collection().Name {
	case collections.Programs:
		return edgewire.ProgramKey(r.Id)
	case collections.Affiliates:
		return edgewire.AffiliateKey(r.Id)
	}
	return edgewire.LinkKey(r.Id)
}

// entryOf is the catalog entry of a program, affiliate or link record, with the values the
// primary's resolver (hooks/resolver.go) would read: lowercase codes, normalized domains,
// cookie days defaulted.
func entryOf(r *core.Record) (edgewire.Entry, error) {
	switch r.Collection().Name {
	case collections.Programs:
		domains, err := hooks.NormalizeDomains(r.Get(collections.ProgramAllowedDomains))
		if err != nil {
			return edgewire.Entry{}, fmt.Errorf("program %s domains: %w", r.Id, err)
		}
		days := r.GetInt(collections.ProgramCookieDays)
		if days <= 0 {
			days = collections.DefaultCookieDays
		}
		return edgewire.ProgramEntry(edgewire.Program{ID: r.Id, Destination: r.GetString(collections.ProgramDestination),
			Domains: domains, CookieDays: days, Active: r.GetBool(collections.ProgramActive)})
	case collections.Affiliates:
		return edgewire.AffiliateEntry(edgewire.Affiliate{ID: r.Id, Program: r.GetString(collections.FieldProgram),
			Code: strings.ToLower(r.GetString(collections.FieldCode)), Status: r.GetString(collections.FieldStatus)})
	case collections.Links:
		return edgewire.LinkEntry(edgewire.Link{ID: r.Id, Code: strings.ToLower(r.GetString(collections.FieldCode)),
			Affiliate: r.GetString(collections.FieldAffiliate), Program: r.GetString(collections.FieldProgram),
			Destination: r.GetString(collections.LinkDestination), SubID: r.GetString(collections.LinkSubID),
			Archived: r.GetBool(collections.LinkArchived)})
	}
	return edgewire.Entry{}, errors.New("scale-out: not a catalog collection: " + r.Collection().Name)
}
