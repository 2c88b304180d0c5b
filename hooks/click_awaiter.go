package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Attribution across the gap (docs/scaling.md). With redirect nodes, an edge answers a click
// once it is in the click stream, and the primary stores it when its consumer ingests it:
// moments later, or much later while the primary is behind. A sale naming such a click must
// neither fall through to another candidate (someone else's affiliate code or coupon) nor be
// refused, so the conversion service rolls its attempt back, waits outside any transaction
// until the primary has ingested everything the stream held, and records the sale again. A
// primary still behind after clickWait answers 503 with Retry-After and stores nothing: the
// API's and postback's senders and the billing providers retry.

// ClickAwaiter is the primary's view of its click stream, set by hooks/scaleout when redirect
// nodes feed it; nil on a single box, where every answered click is already stored.
type ClickAwaiter interface {
	// AwaitIngested returns nil once every click the stream held when it was called is
	// ingested (stored, or counted past its IP's ceiling), or an error when ctx ends first or
	// the stream cannot be read.
	AwaitIngested(ctx context.Context) error
	// Ingestion is the consumer's progress, for /api/pba/metrics.
	Ingestion(ctx context.Context) Ingestion
}

// Ingestion is the primary's consumer of the click stream as the metrics show it.
type Ingestion struct {
	Lag    uint64    // clicks in the stream the primary has not acknowledged
	Oldest time.Time // when the oldest of them entered the stream; zero when none waits
	LagErr error     // the stream's state could not be read: Lag and Oldest are unknown
	// Since the process started: batches committed and acknowledged, batches that failed (they
	// are delivered again), and the new clicks the committed ones stored.
	Batches, FailedBatches, Clicks uint64
}

// SetClickAwaiter makes the conversion service wait for clicks a sale names that the stream
// may still hold (hooks/scaleout, on the primary; a nil a stops waiting).
func SetClickAwaiter(app core.App, a ClickAwaiter) {
	g := clickGapOf(app)
	if a == nil {
		g.awaiter.Store(nil)
		return
	}
	g.awaiter.Store(&a)
}

// Bounds of the wait.
const (
	// clickWait bounds how long a sale waits for the primary to catch up: well past a healthy
	// consumer's lag (a batch is ingested in milliseconds), short enough for a sender's timeout.
	clickWait = 2 * time.Second
	// clickRetryAfter is the Retry-After of the 503 answered when it did not.
	clickRetryAfter = 2
	// clickFutureSkew: a click id whose time part is further ahead of our clock than this was
	// not minted by an edge (ids carry their time, store.NewOrderedID), so no sale waits for it.
	clickFutureSkew = time.Minute
	// ClickStreamRetention is how long the redirect nodes' click stream keeps a click
	// (hooks/scaleout): until the primary ingests it, the only copy. A sale naming a click id
	// minted longer ago waits for nothing: the stream cannot hold it.
	ClickStreamRetention = 7 * 24 * time.Hour
	// absentMemory is how long a click id found not to exist after a catch-up is remembered, so
	// the attempt that follows the wait takes the unknown-click path instead of waiting again.
	absentMemory = time.Minute
	absentMax    = 4096
)

// Results of pba_attribution_waits_total.
const (
	waitFound   = "found"   // the click was ingested meanwhile: the sale is attributed to it
	waitAbsent  = "absent"  // caught up without it: no such click, the sale takes the normal path
	waitTimeout = "timeout" // still behind at the deadline (or the stream unreadable): 503
)

// errClickBehind: the primary had not ingested the clicks a sale may name by the deadline; the
// sale was not stored (503, Retry-After).
var errClickBehind = errors.New("the primary has not ingested the click stream up to this sale yet")

// clickPendingError rolls back an attempt to record a sale naming a click that is not stored
// while the click stream may still hold it (conversionService.awaitingClick waits and retries).
type clickPendingError struct{ clickID string }

func (e *clickPendingError) Error() string {
	return "click " + e.clickID + " is not ingested yet"
}

// clickGap is an app's side of the wait, shared by its conversion services.
type clickGap struct {
	awaiter atomic.Pointer[ClickAwaiter]
	waiting atomic.Int64 // sales waiting now (pba_attribution_waiting)

	mu     sync.Mutex
	absent map[string]time.Time // click id → until when it is known not to exist
}

const clickGapStoreKey = "pba.clickGap"

func clickGapOf(app core.App) *clickGap {
	return app.Store().GetOrSet(clickGapStoreKey, func() any { return &clickGap{absent: map[string]time.Time{}} }).(*clickGap)
}

// current is the awaiter, nil on a single box.
func (g *clickGap) current() ClickAwaiter {
	if a := g.awaiter.Load(); a != nil {
		return *a
	}
	return nil
}

// pending reports whether a sale naming clickID, which is not stored, must wait: scale-out is
// on, the id is one an edge could have minted and the stream could still hold, and no wait
// found it absent a moment ago.
func (g *clickGap) pending(clickID string) bool {
	if g.current() == nil {
		return false
	}
	minted, ok := store.OrderedIDTime(clickID)
	now := time.Now()
	if !ok || minted.After(now.Add(clickFutureSkew)) || minted.Before(now.Add(-ClickStreamRetention)) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	until, known := g.absent[clickID]
	return !known || now.After(until)
}

// remember notes that clickID does not exist though the primary has caught up.
func (g *clickGap) remember(clickID string) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.absent) >= absentMax {
		for id, until := range g.absent {
			if now.After(until) {
				delete(g.absent, id)
			}
		}
		if len(g.absent) >= absentMax {
			clear(g.absent)
		}
	}
	g.absent[clickID] = now.Add(absentMemory)
}

// await waits, at most clickWait, until the primary has ingested what the stream holds, and
// counts the result; errClickBehind when it has not.
func (g *clickGap) await(ctx context.Context, app core.App, clickID string) error {
	a := g.current()
	if a == nil { // scale-out stopped meanwhile: what is stored is all there is
		return nil
	}
	m := metricsOf(app)
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	ctx, cancel := context.WithTimeout(ctx, clickWait)
	defer cancel()
	if err := a.AwaitIngested(ctx); err != nil {
		m.attributionWaits.WithLabelValues(waitTimeout).Inc()
		app.Logger().Warn("a sale names a click not ingested yet; answering 503", "click", clickID, "error", err)
		return fmt.Errorf("%w (click %s): %w", errClickBehind, clickID, err)
	}
	if _, err := app.FindRecordById(collections.Clicks, clickID); err == nil {
		m.attributionWaits.WithLabelValues(waitFound).Inc()
		return nil
	}
	m.attributionWaits.WithLabelValues(waitAbsent).Inc()
	g.remember(clickID)
	return nil
}

// awaitingClick runs attempt, which records a sale in a transaction of its own; when that
// rolled back on a click the stream may still hold, it waits for the primary to ingest it,
// outside the transaction (the database has one writer), and runs attempt once more. s is the
// service of the app, not of a transaction.
func (s *conversionService) awaitingClick(ctx context.Context, attempt func() error) error {
	err := attempt()
	var pending *clickPendingError
	if !errors.As(err, &pending) {
		return err
	}
	if err := s.gap.await(ctx, s.app, pending.clickID); err != nil {
		return err
	}
	err = attempt()
	if errors.As(err, &pending) { // the memory of absent ids was cleared meanwhile: never wait twice
		return fmt.Errorf("%w: %w", errClickBehind, err)
	}
	return err
}

// clickBehind answers a sale refused by errClickBehind: 503, Retry-After, nothing stored.
func clickBehind(e *core.RequestEvent) error {
	e.Response.Header().Set("Retry-After", strconv.Itoa(clickRetryAfter))
	return e.Error(http.StatusServiceUnavailable, "The sale names a click this server has not received from its redirect nodes yet; nothing was stored, please retry.",
		fieldError("click_id", "not_ingested", "The click is on its way from a redirect node; retry in a few seconds."))
}
