package hooks

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/security"
	"github.com/pocketbase/pocketbase/tools/types"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
)

// Errors a click request can end with; the redirect handler answers 503 for both, so the
// visitor retries and no click is answered that was not stored.
var (
	errQueueFull     = errors.New("click queue full")
	errWriterStopped = errors.New("click writer stopped")
)

// uniqueWindow is how long a visitor's repeat clicks on one link count as not unique.
const uniqueWindow = 24 * time.Hour

// clickColumns are the clicks table columns the writer fills, in insert order.
const clickColumns = "id, link, affiliate, program, visitor, ip_hash, user_agent, referrer, country, sub_id, \"unique\", flag, created"

// clickRow is one click as stored; the raw IP never reaches it (only IPHash).
type clickRow struct {
	ID, LinkID, AffiliateID, ProgramID   string
	Visitor, IPHash, UserAgent, Referrer string
	Country, SubID, Flag                 string
	Unique                               bool
	NewVisitor                           bool // the visitor id was minted for this click: unique without a lookup
	Created                              time.Time

	uniqueKey uint64 // the row's key in the writer's unique window (set by markUnique)
}

type clickRequest struct {
	row  clickRow
	done chan error
}

// clickWriterConfig sizes the group commit.
type clickWriterConfig struct {
	BatchSize      int           // most rows in one transaction
	MaxWait        time.Duration // how long a batch may wait to fill once it has a row
	QueueSize      int           // requests waiting for the writer at most
	EnqueueTimeout time.Duration // how long a request waits for room in a full queue before 503
}

// clickWriter is the one goroutine that writes clicks: requests hand it their click and wait
// until the batch holding it has committed (durable group commit), so every answered redirect
// is a stored click, and SQLite's single writer does one transaction per batch instead of one
// per click. The transaction also upserts stats_daily, so the rollups never drift from the facts.
type clickWriter struct {
	app      core.App
	cfg      clickWriterConfig
	queue    chan *clickRequest
	onCommit func([]clickRow)
	rows     []clickRow // the batch being committed, reused (writer goroutine only)
	// unique remembers the last 24 h of unflagged clicks per visitor and link, so uniqueness
	// needs no index lookup; nil asks the database for every click.
	unique *clickpolicy.UniqueWindow

	mu      sync.RWMutex // guards closed against sends racing with stop
	closed  bool
	stopped chan struct{}
}

func newClickWriter(app core.App, cfg clickWriterConfig, onCommit func([]clickRow)) *clickWriter {
	return &clickWriter{
		app:      app,
		cfg:      cfg,
		queue:    make(chan *clickRequest, cfg.QueueSize),
		onCommit: onCommit,
		stopped:  make(chan struct{}),
	}
}

// useUniqueWindow makes the writer decide uniqueness from win (before start).
func (w *clickWriter) useUniqueWindow(win *clickpolicy.UniqueWindow) { w.unique = win }

// start runs the writer until stop.
func (w *clickWriter) start() { go w.run() }

// stop refuses new clicks, writes every queued one and returns when they are committed.
func (w *clickWriter) stop() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.stopped
}

// record hands row to the writer and returns once it is committed (nil) or could not be.
// A full queue makes the caller wait at most EnqueueTimeout: back-pressure, not unbounded memory.
func (w *clickWriter) record(ctx context.Context, row clickRow) error {
	req := clickRequests.Get().(*clickRequest)
	req.row = row
	if err := w.enqueue(ctx, req); err != nil {
		req.row = clickRow{}
		clickRequests.Put(req)
		return err
	}
	select {
	case err := <-req.done:
		// The writer answers once and is done with req: it can serve another click.
		req.row = clickRow{}
		clickRequests.Put(req)
		return err
	case <-ctx.Done():
		// The click may still be committed; the visitor is gone either way. req is left to
		// the garbage collector: the writer will still answer on it.
		return ctx.Err()
	}
}

// clickRequests recycles requests and their answer channels (one of each per click otherwise).
var clickRequests = sync.Pool{New: func() any { return &clickRequest{done: make(chan error, 1)} }}

func (w *clickWriter) enqueue(ctx context.Context, req *clickRequest) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return errWriterStopped
	}
	select {
	case w.queue <- req:
		return nil
	default:
	}
	timer := time.NewTimer(w.cfg.EnqueueTimeout)
	defer timer.Stop()
	select {
	case w.queue <- req:
		return nil
	case <-timer.C:
		return errQueueFull
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *clickWriter) run() {
	defer close(w.stopped)
	batch := make([]*clickRequest, 0, w.cfg.BatchSize)
	for {
		first, ok := <-w.queue
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		batch = w.fill(batch)
		w.commit(batch)
	}
}

// batchTarget is the batch size worth waiting for: past it a commit's fixed cost is amortized,
// and waiting longer only delays the visitors already in the batch.
const batchTarget = 32

// fill takes everything already queued (up to BatchSize); while the batch is smaller than
// batchTarget it waits up to MaxWait for more, since one commit per few clicks would spend
// the writer on commit overhead.
func (w *clickWriter) fill(batch []*clickRequest) []*clickRequest {
	var deadline <-chan time.Time
	for len(batch) < w.cfg.BatchSize {
		select {
		case req, ok := <-w.queue:
			if !ok {
				return batch
			}
			batch = append(batch, req)
			continue
		default:
		}
		if w.cfg.MaxWait <= 0 || len(batch) >= batchTarget {
			return batch
		}
		if deadline == nil {
			timer := time.NewTimer(w.cfg.MaxWait)
			defer timer.Stop()
			deadline = timer.C
		}
		select {
		case req, ok := <-w.queue:
			if !ok {
				return batch
			}
			batch = append(batch, req)
		case <-deadline:
			return batch
		}
	}
	return batch
}

func (w *clickWriter) commit(batch []*clickRequest) {
	rows := w.rows[:0]
	for _, req := range batch {
		rows = append(rows, req.row)
	}
	defer func() { clear(rows); w.rows = rows[:0] }() // reused by the next batch (onCommit keeps nothing)
	write := func(tx core.App) error { return writeClicksWith(tx, rows, w.unique) }
	err := w.app.RunInTransaction(write)
	if err != nil {
		// One retry covers a transient SQLITE_BUSY from another process; then give up on this batch.
		w.app.Logger().Warn("click batch failed, retrying", "rows", len(rows), "error", err)
		err = w.app.RunInTransaction(write)
	}
	if err != nil {
		w.app.Logger().Error("click batch lost", "rows", len(rows), "error", err)
	} else if w.unique != nil {
		// Only committed clicks count for later ones (a failed batch left no trace).
		for i := range rows {
			if r := &rows[i]; r.Flag == "" && r.Visitor != "" {
				w.unique.Seen(r.uniqueKey, r.Created.UnixMilli())
			}
		}
	}
	for _, req := range batch {
		req.done <- err
	}
	if err == nil && w.onCommit != nil {
		w.onCommit(rows)
	}
}

// writeClicks decides uniqueness from the database, inserts the rows and upserts their
// stats_daily counters, all inside the caller's transaction. It sets rows[i].Unique.
func writeClicks(tx core.App, rows []clickRow) error { return writeClicksWith(tx, rows, nil) }

// writeClicksWith is writeClicks deciding uniqueness from win where it can (nil: the database).
// It does not change win: the caller remembers the rows once the transaction committed.
func writeClicksWith(tx core.App, rows []clickRow, win *clickpolicy.UniqueWindow) error {
	if err := markUnique(tx, rows, win); err != nil {
		return err
	}
	exec, err := sqlTx(tx)
	if err != nil {
		return err
	}
	stmt, err := exec.Prepare("INSERT INTO clicks (" + clickColumns + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
	if err != nil {
		return fmt.Errorf("prepare click insert: %w", err)
	}
	defer stmt.Close()
	for _, r := range rows {
		_, err := stmt.Exec(r.ID, r.LinkID, r.AffiliateID, r.ProgramID, r.Visitor, r.IPHash, r.UserAgent,
			r.Referrer, r.Country, r.SubID, r.Unique, r.Flag, formatDateTime(r.Created))
		if err != nil {
			return fmt.Errorf("insert click %s: %w", r.ID, err)
		}
	}
	return upsertClickStats(tx, rows)
}

// markUnique sets Unique on each unflagged row whose visitor has no earlier unflagged click
// on the same link (or affiliate code) within uniqueWindow, looking at this batch first, then
// at win, then (win nil or unsure) at the database.
func markUnique(tx core.App, rows []clickRow, win *clickpolicy.UniqueWindow) error {
	seen := make(map[string]bool, len(rows))
	for i := range rows {
		r := &rows[i]
		r.Unique = false
		if r.Flag != "" || r.Visitor == "" {
			continue
		}
		if win != nil {
			r.uniqueKey = win.Key(r.Visitor, r.LinkID, r.AffiliateID)
		}
		key := r.Visitor + "|" + r.LinkID + "|" + r.AffiliateID
		if seen[key] {
			continue
		}
		seen[key] = true
		if r.NewVisitor {
			r.Unique = true
			continue
		}
		if win != nil {
			switch win.Check(r.uniqueKey, r.Created.UnixMilli()) {
			case clickpolicy.Unique:
				r.Unique = true
				continue
			case clickpolicy.Repeat:
				continue
			}
		}
		found, err := hasRecentClick(tx, r.Visitor, r.LinkID, r.AffiliateID, r.Created)
		if err != nil {
			return err
		}
		r.Unique = !found
	}
	return nil
}

// hasRecentClick reports whether the visitor has an unflagged click on the link (and
// affiliate) within uniqueWindow before at. It reads idx_clicks_affiliate (affiliate, created):
// the redirector rarely needs it, the unique window answers almost every click.
func hasRecentClick(tx core.App, visitor, link, affiliate string, at time.Time) (bool, error) {
	var found int
	err := tx.DB().NewQuery(`SELECT EXISTS (SELECT 1 FROM {{clicks}} WHERE [[affiliate]] = {:affiliate}
		AND [[created]] >= {:since} AND [[link]] = {:link} AND [[visitor]] = {:visitor} AND [[flag]] = '')`).
		Bind(dbx.Params{"link": link, "visitor": visitor, "affiliate": affiliate,
			"since": formatDateTime(at.Add(-uniqueWindow))}).Row(&found)
	if err != nil {
		return false, fmt.Errorf("unique check: %w", err)
	}
	return found != 0, nil
}

// statsKey is one stats_daily row.
type statsKey struct{ day, affiliate, program, link string }

// statsDelta is what a batch adds to one stats_daily row.
type statsDelta struct {
	Clicks, UniqueClicks, Conversions, Revenue, Commission int64
}

func upsertClickStats(tx core.App, rows []clickRow) error {
	deltas := map[statsKey]*statsDelta{}
	for _, r := range rows {
		if r.Flag != "" {
			continue // flagged clicks are stored but never counted
		}
		k := statsKey{r.Created.UTC().Format(time.DateOnly), r.AffiliateID, r.ProgramID, r.LinkID}
		d := deltas[k]
		if d == nil {
			d = &statsDelta{}
			deltas[k] = d
		}
		d.Clicks++
		if r.Unique {
			d.UniqueClicks++
		}
	}
	for k, d := range deltas {
		if err := upsertStats(tx, k, *d); err != nil {
			return err
		}
	}
	return nil
}

// upsertStats adds d to the stats_daily row of k in one statement, so concurrent writers
// (clicks, conversions, commissions) never lose an increment.
func upsertStats(tx core.App, k statsKey, d statsDelta) error {
	_, err := tx.DB().NewQuery(`INSERT INTO {{stats_daily}}
		([[id]], [[day]], [[affiliate]], [[program]], [[link]], [[clicks]], [[unique_clicks]], [[conversions]], [[revenue]], [[commission]], [[updated]])
		VALUES ({:id}, {:day}, {:affiliate}, {:program}, {:link}, {:clicks}, {:unique}, {:conversions}, {:revenue}, {:commission}, {:now})
		ON CONFLICT ([[day]], [[affiliate]], [[program]], [[link]]) DO UPDATE SET
			[[clicks]] = [[clicks]] + excluded.[[clicks]],
			[[unique_clicks]] = [[unique_clicks]] + excluded.[[unique_clicks]],
			[[conversions]] = [[conversions]] + excluded.[[conversions]],
			[[revenue]] = [[revenue]] + excluded.[[revenue]],
			[[commission]] = [[commission]] + excluded.[[commission]],
			[[updated]] = excluded.[[updated]]`).Bind(dbx.Params{
		"id": newRecordID(), "day": k.day, "affiliate": k.affiliate, "program": k.program, "link": k.link,
		"clicks": d.Clicks, "unique": d.UniqueClicks, "conversions": d.Conversions, "revenue": d.Revenue,
		"commission": d.Commission, "now": formatDateTime(time.Now()),
	}).Execute()
	if err != nil {
		return fmt.Errorf("upsert stats_daily %v: %w", k, err)
	}
	return nil
}

// newRecordID makes an id in PocketBase's default format, for rows inserted without a Record.
func newRecordID() string {
	return security.RandomStringWithAlphabet(15, "abcdefghijklmnopqrstuvwxyz0123456789")
}

// formatDateTime writes t the way PocketBase stores dates, so filters and sorting work on raw rows.
func formatDateTime(t time.Time) string {
	return t.UTC().Format(types.DefaultDateLayout)
}

// newOrderedID makes a PocketBase-shaped id (15 of [a-z0-9]) that sorts by time: 10 base-36
// digits of the microsecond clock and 5 random ones. New rows then land at the right edge of
// the primary-key index instead of on a random page, which keeps each batch commit (clicks,
// commissions) to a few pages.
func newOrderedID(now time.Time) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [15]byte
	us := uint64(now.UnixMicro())
	for i := 9; i >= 0; i-- {
		b[i] = alphabet[us%36]
		us /= 36
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (it panics on a broken kernel source)
	n := binary.LittleEndian.Uint64(r[:])
	for i := 10; i < 15; i++ {
		b[i] = alphabet[n%36]
		n /= 36
	}
	return string(b[:])
}

// orderedIDs hands out newOrderedID ids that never repeat an instant within the process:
// each id's time part is after the previous one's (the microsecond clock, or one past the
// last when clicks arrive faster). Two clicks in the same microsecond would otherwise share
// the time digits and rely on 5 random characters alone; a clash fails the whole batch.
type orderedIDs struct{ last atomic.Int64 }

func (g *orderedIDs) next(now time.Time) string {
	us := now.UnixMicro()
	for {
		last := g.last.Load()
		if us <= last {
			us = last + 1
		}
		if g.last.CompareAndSwap(last, us) {
			return newOrderedID(time.UnixMicro(us))
		}
		us = now.UnixMicro()
	}
}

// sqlTx is the database/sql transaction under a PocketBase transaction app: the click insert
// is prepared once per batch and run per row with positional arguments, which is several
// times cheaper than building one statement with named placeholders.
func sqlTx(tx core.App) (*sql.Tx, error) {
	dbxTx, ok := tx.NonconcurrentDB().(*dbx.Tx)
	if !ok {
		return nil, errors.New("clicks must be written inside a transaction")
	}
	builder, ok := dbxTx.Builder.(interface{ Executor() dbx.Executor })
	if !ok {
		return nil, errors.New("unexpected transaction builder")
	}
	t, ok := builder.Executor().(*sql.Tx)
	if !ok {
		return nil, errors.New("unexpected transaction executor")
	}
	return t, nil
}
