package scaleout

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
)

// The record hooks hand each changed record to a publisher instead of putting it into the
// bucket themselves, so no save waits for the NATS cluster (each waited up to opTimeout while
// the cluster was unreachable). The publisher reads the record when it publishes, so it puts
// the newest value, or deletes the key of a record that is gone; it tries again every
// publishRetry while the cluster is away. What only memory held when the process died (the
// changes not yet published) the next start's snapshot publishes, and the periodic
// re-snapshot repairs anything else.

// publishRetry is how often the publisher tries again after a failed publish.
const publishRetry = time.Second

// changed is a record to publish; collection "" is the settings (the rate limits).
type changed struct{ collection, id string }

var settingsChanged = changed{id: edgewire.RateLimitsKey}

// publisher holds the records changed since they were last published.
type publisher struct {
	mu        sync.Mutex
	dirty     map[changed]bool
	busy      bool          // a pass is publishing
	wake      chan struct{} // a change waits (buffered: one wake-up covers many changes)
	lastError time.Time     // when a failure was last logged
}

func newPublisher() *publisher {
	return &publisher{dirty: map[changed]bool{}, wake: make(chan struct{}, 1)}
}

// mark queues c and wakes the publishing loop.
func (q *publisher) mark(c changed) {
	q.mu.Lock()
	q.dirty[c] = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// reset forgets what is queued: a snapshot is about to publish everything.
func (q *publisher) reset() {
	q.mu.Lock()
	clear(q.dirty)
	q.mu.Unlock()
}

// take empties the queue into a pass.
func (q *publisher) take() []changed {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]changed, 0, len(q.dirty))
	for c := range q.dirty {
		out = append(out, c)
	}
	clear(q.dirty)
	q.busy = true
	return out
}

// done ends a pass, queueing again what it could not publish.
func (q *publisher) done(failed []changed) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range failed {
		q.dirty[c] = true
	}
	q.busy = false
}

// idle reports whether nothing is queued or being published.
func (q *publisher) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.dirty) == 0 && !q.busy
}

// markChanged queues a record of the catalog collections (or settingsChanged) for publishing,
// unless scale-out is stopped (the next start's snapshot publishes everything).
func (p *Primary) markChanged(c changed) {
	if p.bucket() != nil {
		p.pub.mark(c)
	}
}

// publishLoop publishes what the hooks queued, as it is queued and every publishRetry while
// something failed, until ctx ends.
func (p *Primary) publishLoop(ctx context.Context, kv jetstream.KeyValue) {
	retry := time.NewTicker(publishRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.pub.wake:
		case <-retry.C:
		}
		p.publishPass(ctx, kv)
	}
}

// publishPass publishes every queued change once.
func (p *Primary) publishPass(ctx context.Context, kv jetstream.KeyValue) {
	var failed []changed
	var firstErr error
	for _, c := range p.pub.take() {
		if err := p.publishChanged(ctx, kv, c); err != nil {
			failed = append(failed, c)
			firstErr = cmp.Or(firstErr, err)
		}
	}
	p.pub.done(failed)
	if firstErr != nil && ctx.Err() == nil && time.Since(p.pub.lastError) > 30*time.Second {
		p.pub.lastError = time.Now()
		p.app.Logger().Error("scale-out: publish code changes; retrying every second", "waiting", len(failed), "error", firstErr)
	}
}

// publishChanged puts c's current value, or deletes its key when the record is gone.
func (p *Primary) publishChanged(ctx context.Context, kv jetstream.KeyValue, c changed) error {
	if c == settingsChanged {
		entry, err := rateLimitsEntry(p.app.Settings())
		if err != nil {
			return err
		}
		return p.putEntry(ctx, kv, entry)
	}
	r, err := p.app.FindRecordById(c.collection, c.id)
	if errors.Is(err, sql.ErrNoRows) {
		key := keyFor(c.collection, c.id)
		p.pubMu.Lock()
		defer p.pubMu.Unlock()
		p.touch(key)
		return p.deleteLocked(ctx, kv, key)
	}
	if err != nil {
		return err
	}
	return p.put(ctx, kv, r)
}

// Flush waits until every change queued so far is published (or failed and queued again:
// then until ctx ends), for tests and a graceful stop.
func (p *Primary) Flush(ctx context.Context) error {
	for !p.pub.idle() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
