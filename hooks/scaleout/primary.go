package scaleout

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strings"
	"sync"
	"time"

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
	// Resnapshot (--nats-resnapshot) is how often the bucket is compared with the database and
	// repaired: codes written by another process (`pbaffiliate import`, `demo`) and changes
	// whose publish failed reach the edges within it. 0 turns it off.
	Resnapshot time.Duration
	Security   Security // --nats-creds, --nats-tls-*: for the connection to --nats
}

// DefaultResnapshot is the default of --nats-resnapshot: a comparison costs one read of the
// catalog collections (docs/scaling.md has the measure), and puts only what differs.
const DefaultResnapshot = time.Minute

// Primary publishes the code catalog from the primary's records: a snapshot at start, then
// every change the record hooks queue (publisher.go).
type Primary struct {
	app  core.App
	opts Options

	mu     sync.Mutex
	server *server.Server
	nc     *nats.Conn
	kv     jetstream.KeyValue
	hooked bool               // record hooks bound (once per app, across restarts)
	cancel context.CancelFunc // of the ingestion and re-snapshot loops
	done   chan struct{}      // closed when they returned
	clicks *clickAwaiter      // sales wait on it for clicks not ingested yet (lag.go)
	pub    *publisher         // changes the record hooks queued (publisher.go)

	// pubMu orders every write to the bucket (the publisher's, a snapshot's).
	pubMu sync.Mutex
	// published is the hash of each key's value in the bucket, so a snapshot or an unchanged
	// record puts nothing; nil until read from the bucket at start.
	published map[string]uint64
	// hookSeq counts the publisher's writes; touched is the count at a key's last one. A
	// snapshot reads the database without the lock, then leaves alone the keys the publisher
	// wrote since it began: their value is at least as new as the one it read (a change saved
	// after the publisher's read is queued again).
	hookSeq uint64
	touched map[string]uint64
}

// Register adds --nats, --nats-embedded and --nats-replicas to rootCmd (for `serve`) and
// starts the scale-out side in OnServe when one of them is set.
func Register(app core.App, rootCmd *cobra.Command) *Primary {
	p := &Primary{app: app, pub: newPublisher()}
	flags := rootCmd.PersistentFlags()
	flags.StringVar(&p.opts.URLs, "nats", "", "join a NATS JetStream cluster (URL[,URL…]) to feed redirect nodes (docs/scaling.md)")
	flags.StringVar(&p.opts.Embedded, "nats-embedded", "", "run an embedded NATS JetStream server on HOST:PORT (storage in pb_data/nats) to feed redirect nodes")
	flags.IntVar(&p.opts.Replicas, "nats-replicas", 1, "copies the NATS cluster keeps of the codes and clicks (3 on a 3-server cluster)")
	p.opts.Security.AddFlags(flags)
	flags.DurationVar(&p.opts.Resnapshot, "nats-resnapshot", DefaultResnapshot, "how often the codes bucket is compared with the database and repaired (codes written by import/demo, failed publishes); 0: only at start")
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
	security, err := opts.Security.Options()
	if err != nil {
		return fmt.Errorf("scale-out: %w", err)
	}
	if opts.URLs == "" && opts.Security.Set() {
		return errors.New("scale-out: --nats-creds and --nats-tls-* are for --nats (an external cluster); the embedded server listens without TLS or accounts")
	}
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
	nc, js, err := Connect(urls, "pbaffiliate-primary", security...)
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
	p.pubMu.Lock()
	p.published = nil // another server's bucket, perhaps: read it again
	p.pubMu.Unlock()
	p.pub.reset() // the snapshot publishes everything
	if _, err := p.snapshot(ctx, kv); err != nil {
		p.stopLocked()
		return err
	}
	p.awaitClicks(js)
	ingestCtx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	var loops sync.WaitGroup
	loops.Go(func() { p.ingest(ingestCtx, js) })
	loops.Go(func() { p.publishLoop(ingestCtx, kv) })
	if opts.Resnapshot > 0 {
		loops.Go(func() { p.resnapshotEvery(ingestCtx, kv, opts.Resnapshot) })
	}
	go func() {
		loops.Wait()
		close(p.done)
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
		// Changes saved just before the stop go out first, if the cluster answers soon.
		ctx, cancel := context.WithTimeout(context.Background(), stopFlush)
		_ = p.Flush(ctx)
		cancel()
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

// bindHooks queues every change of a program, affiliate, link or code alias once it is
// committed (the success hooks run after the transaction), and of the settings, for the
// publisher (publisher.go): a save never waits for the NATS cluster.
func (p *Primary) bindHooks() {
	mark := func(e *core.RecordEvent) error {
		p.markChanged(changed{collection: e.Record.Collection().Name, id: e.Record.Id})
		return e.Next()
	}
	for _, name := range catalogCollections {
		p.app.OnRecordAfterCreateSuccess(name).BindFunc(mark)
		p.app.OnRecordAfterUpdateSuccess(name).BindFunc(mark)
		p.app.OnRecordAfterDeleteSuccess(name).BindFunc(mark)
	}
	// Saved settings are reloaded: the rate-limit rules the nodes apply go out then.
	p.app.OnSettingsReload().BindFunc(func(e *core.SettingsReloadEvent) error {
		if err := e.Next(); err != nil {
			return err
		}
		p.markChanged(settingsChanged)
		return nil
	})
}

func (p *Primary) put(ctx context.Context, kv jetstream.KeyValue, r *core.Record) error {
	e, err := entryOf(r)
	if err != nil {
		return err
	}
	return p.putEntry(ctx, kv, e)
}

// putEntry is the publisher's write of e.
func (p *Primary) putEntry(ctx context.Context, kv jetstream.KeyValue, e edgewire.Entry) error {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	p.touch(e.Key)
	_, err := p.putLocked(ctx, kv, e)
	return err
}

// touch records the publisher's write of key (pubMu held).
func (p *Primary) touch(key string) {
	p.hookSeq++
	if p.touched == nil {
		p.touched = map[string]uint64{}
	}
	p.touched[key] = p.hookSeq
}

// putLocked puts e unless the bucket holds its value already; it reports whether it put.
func (p *Primary) putLocked(ctx context.Context, kv jetstream.KeyValue, e edgewire.Entry) (bool, error) {
	h := valueHash(e.Value)
	if have, ok := p.published[e.Key]; ok && have == h {
		return false, nil
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := kv.Put(ctx, e.Key, e.Value); err != nil {
		return false, fmt.Errorf("put %s: %w", e.Key, err)
	}
	if p.published != nil {
		p.published[e.Key] = h
	}
	return true, nil
}

func (p *Primary) deleteLocked(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	delete(p.published, key)
	return nil
}

func valueHash(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}

// snapshot makes the bucket equal to the catalog collections: it puts the entries whose value
// differs from the bucket's (all of them into an empty bucket) and deletes the keys of records
// that no longer exist. It returns how many keys it changed.
func (p *Primary) snapshot(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	p.pubMu.Lock()
	if p.published == nil {
		published, err := readBucket(ctx, kv)
		if err != nil {
			p.pubMu.Unlock()
			return 0, err
		}
		p.published = published
	}
	since := p.hookSeq
	p.pubMu.Unlock()

	// The read and the encoding, most of the cost, without the lock: saves do not wait for them.
	var entries []edgewire.Entry
	for _, name := range catalogCollections {
		records, err := p.app.FindAllRecords(name)
		if err != nil {
			return 0, fmt.Errorf("snapshot %s: %w", name, err)
		}
		for _, r := range records {
			e, err := entryOf(r)
			if err != nil {
				return 0, fmt.Errorf("snapshot: %w", err)
			}
			entries = append(entries, e)
		}
	}
	limits, err := rateLimitsEntry(p.app.Settings())
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	entries = append(entries, limits)

	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	changed := 0
	current := make(map[string]bool, len(entries))
	for _, e := range entries {
		current[e.Key] = true
		if p.touched[e.Key] > since {
			continue // a hook wrote it after the read
		}
		put, err := p.putLocked(ctx, kv, e)
		if err != nil {
			return changed, fmt.Errorf("snapshot: %w", err)
		}
		if put {
			changed++
		}
	}
	var stale []string
	for k := range p.published {
		if !current[k] && p.touched[k] <= since {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		if err := p.deleteLocked(ctx, kv, k); err != nil {
			return changed, fmt.Errorf("snapshot: %w", err)
		}
		changed++
	}
	for k, seq := range p.touched {
		if seq <= since {
			delete(p.touched, k) // the read saw that write
		}
	}
	return changed, nil
}

// readBucket is the hash of every value in the bucket, read in one pass.
func readBucket(ctx context.Context, kv jetstream.KeyValue) (map[string]uint64, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("snapshot: read bucket: %w", err)
	}
	defer w.Stop()
	out := map[string]uint64{}
	for {
		select {
		case u := <-w.Updates():
			if u == nil {
				return out, nil
			}
			out[u.Key()] = valueHash(u.Value())
		case <-ctx.Done():
			return nil, fmt.Errorf("snapshot: read bucket: %w", ctx.Err())
		case <-time.After(opTimeout):
			return nil, errors.New("snapshot: read bucket: no answer in " + opTimeout.String())
		}
	}
}

// Resnapshot compares the bucket with the database now and repairs it (what the periodic
// re-snapshot does); it returns how many keys it changed.
func (p *Primary) Resnapshot(ctx context.Context) (int, error) {
	kv := p.bucket()
	if kv == nil {
		return 0, errors.New("scale-out: not started")
	}
	return p.snapshot(ctx, kv)
}

// resnapshotEvery repairs the bucket every interval until ctx ends (snapshot).
func (p *Primary) resnapshotEvery(ctx context.Context, kv jetstream.KeyValue, interval time.Duration) {
	runEvery(ctx, interval, func() {
		changed, err := p.snapshot(ctx, kv)
		if err != nil && ctx.Err() == nil {
			p.app.Logger().Error("scale-out: re-snapshot of the codes", "error", err)
		} else if changed > 0 {
			p.app.Logger().Info("scale-out: re-snapshot repaired the codes bucket", "keys", changed)
		}
	})
}

// rateLimitsEntry is the rate-limit settings of s as the bucket holds them.
func rateLimitsEntry(s *core.Settings) (edgewire.Entry, error) {
	r := edgewire.RateLimits{Enabled: s.RateLimits.Enabled, ExcludedIPs: s.RateLimits.ExcludedIPs}
	for _, rule := range s.RateLimits.Rules {
		r.Rules = append(r.Rules, edgewire.RateLimitRule{Label: rule.Label, Audience: rule.Audience,
			MaxRequests: rule.MaxRequests, Duration: rule.Duration})
	}
	return edgewire.RateLimitsEntry(r)
}

// catalogCollections are the collections whose records are in the codes bucket.
var catalogCollections = []string{collections.Programs, collections.Affiliates, collections.Links, collections.CodeAliases}

// stopFlush bounds how long a stop waits for queued changes to be published.
const stopFlush = 2 * time.Second

// keyFor is the bucket key of the record id of collection.
func keyFor(collection, id string) string {
	switch collection {
	case collections.Programs:
		return edgewire.ProgramKey(id)
	case collections.Affiliates:
		return edgewire.AffiliateKey(id)
	case collections.CodeAliases:
		return edgewire.AliasKey(id)
	}
	return edgewire.LinkKey(id)
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
	case collections.CodeAliases:
		return edgewire.AliasEntry(edgewire.Alias{ID: r.Id, Code: strings.ToLower(r.GetString(collections.FieldCode)),
			Affiliate: r.GetString(collections.FieldAffiliate)})
	}
	return edgewire.Entry{}, errors.New("scale-out: not a catalog collection: " + r.Collection().Name)
}
