package hooks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
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
	NewVisitor                           bool   // the visitor id was minted for this click: unique without a lookup
	Overflow                             bool   // flagged, past its IP's ceiling: counted in click_overflow, no row
	NetworkHash                          string // what per-IP limits count by (NetworkKey's hash): IPHash for IPv4, its /64's for IPv6
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
	rows     []clickRow  // the batch being committed, reused (writer goroutine only)
	stmts    *clickStmts // prepared once on the writer connection (writer goroutine only)
	// unique remembers the last 24 h of unflagged clicks per visitor and link, so uniqueness
	// needs no index lookup; nil asks the database for every click.
	unique  *clickpolicy.UniqueWindow
	metrics *metrics

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
		metrics:  metricsOf(app),
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
	// Once queued, the click is the writer's: it answers within a batch (or fails it), so the
	// wait is bounded without watching ctx, and a visitor who left costs only that wait.
	err := <-req.done
	// The writer answers once and is done with req: it can serve another click.
	req.row = clickRow{}
	clickRequests.Put(req)
	return err
}

// recordAll hands rows to the writer in their order and returns once every one is committed
// (or failed): a caller with many clicks (edge_ingest.go) gets them into shared batches
// without a goroutine each.
func (w *clickWriter) recordAll(ctx context.Context, rows []clickRow) error {
	reqs := make([]*clickRequest, 0, len(rows))
	var errs []error
	for _, row := range rows {
		req := clickRequests.Get().(*clickRequest)
		req.row = row
		if err := w.enqueue(ctx, req); err != nil {
			req.row = clickRow{}
			clickRequests.Put(req)
			errs = append(errs, err)
			break
		}
		reqs = append(reqs, req)
	}
	for _, req := range reqs {
		if err := <-req.done; err != nil {
			errs = append(errs, err)
		}
		req.row = clickRow{}
		clickRequests.Put(req)
	}
	return errors.Join(errs...)
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
	defer w.closeStmts()
	batch := make([]*clickRequest, 0, w.cfg.BatchSize)
	for {
		first, ok := <-w.queue
		if !ok {
			return
		}
		batch = w.commit(append(batch[:0], first))
	}
}

// batchTarget is the batch size worth waiting for: past it a commit's fixed cost is amortized,
// and waiting longer only delays the visitors already in the batch.
const batchTarget = 32

// fill takes everything already queued (up to BatchSize), handing each request to add as it
// arrives; while the batch is smaller than batchTarget it waits up to MaxWait for more, since
// one commit per few clicks would spend the writer on commit overhead. It stops early when
// add fails.
func (w *clickWriter) fill(batch []*clickRequest, add func(*clickRequest) error) ([]*clickRequest, error) {
	var deadline <-chan time.Time
	for len(batch) < w.cfg.BatchSize {
		req, ok := w.next(len(batch), &deadline)
		if !ok {
			return batch, nil
		}
		batch = append(batch, req)
		if err := add(req); err != nil {
			return batch, err
		}
	}
	return batch, nil
}

// next returns a queued request, or waits for one while a batch of size has not reached
// batchTarget and the batch's deadline (started on the first wait) has not passed. It
// reports false when the batch should be committed as it is.
func (w *clickWriter) next(size int, deadline *<-chan time.Time) (*clickRequest, bool) {
	select {
	case req, ok := <-w.queue:
		return req, ok
	default:
	}
	if w.cfg.MaxWait <= 0 || size >= batchTarget {
		return nil, false
	}
	if *deadline == nil {
		*deadline = time.After(w.cfg.MaxWait)
	}
	select {
	case req, ok := <-w.queue:
		return req, ok
	case <-*deadline:
		return nil, false
	}
}

// commit writes first (the batch's only request) and everything fill gathers after it in one
// transaction, then answers every request of the batch. Each click is inserted as soon as it
// is taken from the queue, so the batch's inserts overlap its wait for more clicks and the
// commit that ends it is short: that commit is on every redirect's path. It returns the batch
// for reuse.
func (w *clickWriter) commit(batch []*clickRequest) []*clickRequest {
	start := time.Now()
	err := w.prepareStmts() // before the transaction: it holds the only writer connection
	if err == nil {
		err = w.app.RunInTransaction(func(tx core.App) error {
			ins, err := w.newInserter(tx)
			if err != nil {
				return err
			}
			defer ins.close()
			add := func(req *clickRequest) error { return ins.add(&req.row) }
			if err := add(batch[0]); err != nil {
				return err
			}
			if batch, err = w.fill(batch, add); err != nil {
				return err
			}
			return ins.finish()
		})
	}
	rows := w.rows[:0]
	for _, req := range batch {
		rows = append(rows, req.row)
	}
	defer func() { clear(rows); w.rows = rows[:0] }() // reused by the next batch (onCommit keeps nothing)
	if err != nil {
		// One retry covers a transient SQLITE_BUSY from another process; then give up on this batch.
		w.app.Logger().Warn("click batch failed, retrying", "rows", len(rows), "error", err)
		err = w.app.RunInTransaction(func(tx core.App) error { return writeClicksWith(tx, rows, w.unique) })
	}
	if err != nil {
		w.app.Logger().Error("click batch lost", "rows", len(rows), "error", err)
		w.metrics.clickBatchesLost.Inc()
	} else {
		w.metrics.clickBatch.Observe(float64(len(rows)))
		w.metrics.clickCommit.Observe(time.Since(start).Seconds())
	}
	if err == nil && w.unique != nil {
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
	return batch
}

// clickArgs is the number of values one click binds (the columns of clickColumns).
const clickArgs = 13

// clickChunks are the row counts of the click inserts, largest first: a batch's clicks go in
// statements of 8 rows, and its last few in one statement each of 4, 2 and 1 as needed. A
// statement's fixed cost (database/sql, the driver, starting the VDBE program) is about a
// fifth of a one-row insert; eight rows share it. Past eight, the driver's binding, which
// matches every parameter against every argument, costs more than the statements saved
// (measured: 8 rows a statement is the fastest).
var clickChunks = [...]int{8, 4, 2, 1}

// clickInsertStatement inserts rows clicks. OR ROLLBACK: a constraint failure ends the whole
// transaction at once, which is what a failed batch needs anyway (the writer retries it in a
// new one), and it spares SQLite the statement journal that a multi-row INSERT otherwise
// keeps to undo a single failed statement: a copy of every page the statement touches. The
// caller must stop at the first error: after it the transaction is gone.
func clickInsertStatement(rows int) string {
	values := "(?" + strings.Repeat(",?", clickArgs-1) + ")"
	return "INSERT OR ROLLBACK INTO clicks (" + clickColumns + ") VALUES " + values + strings.Repeat(","+values, rows-1)
}

// clickStmts are the statements of a click batch: insert[i] writes clickChunks[i] rows.
type clickStmts struct {
	insert [len(clickChunks)]*sql.Stmt
	stats  *store.StatsStmt
	dims   *store.DimsStmt
}

// prepareClickStmts prepares them on p (a database, or a transaction).
func prepareClickStmts(p interface {
	Prepare(string) (*sql.Stmt, error)
}) (*clickStmts, error) {
	s := &clickStmts{}
	for i, rows := range clickChunks {
		stmt, err := p.Prepare(clickInsertStatement(rows))
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare click insert of %d rows: %w", rows, err)
		}
		s.insert[i] = stmt
	}
	stats, err := store.PrepareStats(p)
	if err != nil {
		s.close()
		return nil, err
	}
	s.stats = stats
	if s.dims, err = store.PrepareDims(p); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// in binds the statements to tx; database/sql reuses what was prepared on tx's connection
// and prepares again by itself if that connection was replaced.
func (s *clickStmts) in(tx *sql.Tx) *clickStmts {
	b := &clickStmts{stats: s.stats.Bind(tx), dims: s.dims.Bind(tx)}
	for i, st := range s.insert {
		b.insert[i] = tx.Stmt(st)
	}
	return b
}

func (s *clickStmts) close() {
	for _, st := range s.insert {
		if st != nil {
			_ = st.Close()
		}
	}
	if s.dims != nil {
		_ = s.dims.Close()
	}
	if s.stats != nil {
		_ = s.stats.Close()
	}
}

// prepareStmts prepares the writer's statements once on the app's single writer connection.
func (w *clickWriter) prepareStmts() error {
	if w.stmts != nil {
		return nil
	}
	db, ok := w.app.NonconcurrentDB().(*dbx.DB)
	if !ok {
		return errors.New("unexpected writer database")
	}
	stmts, err := prepareClickStmts(db.DB())
	if err != nil {
		return err
	}
	w.stmts = stmts
	return nil
}

// newInserter starts a batch in tx with the writer's prepared statements.
func (w *clickWriter) newInserter(tx core.App) (*clickInserter, error) {
	sqlTx, err := store.SQLTx(tx)
	if err != nil {
		return nil, err
	}
	return &clickInserter{tx: tx, stmts: w.stmts.in(sqlTx), win: w.unique}, nil
}

// closeStmts releases the writer's prepared statements when it stops.
func (w *clickWriter) closeStmts() {
	if w.stmts != nil {
		w.stmts.close()
		w.stmts = nil
	}
}

// writeClicks decides uniqueness from the database, inserts the rows and upserts their
// stats_daily counters, all inside the caller's transaction. It sets rows[i].Unique.
func writeClicks(tx core.App, rows []clickRow) error { return writeClicksWith(tx, rows, nil) }

// writeClicksWith is writeClicks deciding uniqueness from win where it can (nil: the database).
// It does not change win: the caller remembers the rows once the transaction committed.
func writeClicksWith(tx core.App, rows []clickRow, win *clickpolicy.UniqueWindow) error {
	ins, err := newClickInserter(tx, win)
	if err != nil {
		return err
	}
	return ins.write(rows)
}

// write adds rows, finishes the batch and releases the statements.
func (c *clickInserter) write(rows []clickRow) error {
	defer c.close()
	for i := range rows {
		if err := c.add(&rows[i]); err != nil {
			return err
		}
	}
	return c.finish()
}

// clickInserter writes the clicks of one batch inside its transaction: each row's uniqueness,
// its insert (clickChunks[0] rows a statement), and at the end the batch's stats_daily counters.
type clickInserter struct {
	tx      core.App
	stmts   *clickStmts
	win     *clickpolicy.UniqueWindow
	seen    map[visitorLinkKey]struct{}         // unflagged visitor/link pairs already in this batch
	stats   map[store.StatsKey]store.StatsDelta // the batch's counters, by stats_daily row
	dims    store.DimDeltas                     // the batch's clicks by country, referrer and sub
	over    clickOverflow                       // the batch's clicks counted instead of stored
	pending []any                               // the values of added rows not inserted yet (< clickChunks[0] rows)
}

// visitorLinkKey is one visitor on one link (or affiliate code).
type visitorLinkKey struct{ visitor, link, affiliate string }

// newClickInserter starts a batch in tx with statements prepared for it alone.
func newClickInserter(tx core.App, win *clickpolicy.UniqueWindow) (*clickInserter, error) {
	sqlTx, err := store.SQLTx(tx)
	if err != nil {
		return nil, err
	}
	stmts, err := prepareClickStmts(sqlTx)
	if err != nil {
		return nil, err
	}
	return &clickInserter{tx: tx, stmts: stmts, win: win}, nil
}

// add decides r's uniqueness (setting r.Unique) and inserts it, once clickChunks[0] rows are
// waiting (finish inserts the rest). A repeat within the batch is found in seen, so a row
// not inserted yet never needs to be visible to the unique check's query. A click past its
// IP's ceiling is only counted (click_overflow.go).
func (c *clickInserter) add(r *clickRow) error {
	if c.over.add(r) {
		return nil // flagged: no stats_daily count, no unique window
	}
	if err := c.markUnique(r); err != nil {
		return err
	}
	created := store.DBTime(r.Created) // "2006-01-02 15:04:05.000Z": its day is the stats row's
	if c.pending == nil {
		c.pending = make([]any, 0, clickChunks[0]*clickArgs)
	}
	c.pending = append(c.pending, r.ID, r.LinkID, r.AffiliateID, r.ProgramID, r.Visitor, r.IPHash, r.UserAgent,
		r.Referrer, r.Country, r.SubID, r.Unique, r.Flag, created)
	if len(c.pending) == clickChunks[0]*clickArgs {
		if err := c.insertPending(); err != nil {
			return err
		}
	}
	if r.Flag != "" {
		return nil // flagged clicks are stored but never counted
	}
	if c.stats == nil {
		c.stats = map[store.StatsKey]store.StatsDelta{}
	}
	k := store.StatsKeyAt(created, r.AffiliateID, r.ProgramID, r.LinkID)
	d := c.stats[k]
	d.Clicks++
	if r.Unique {
		d.UniqueClicks++
	}
	c.stats[k] = d
	if c.dims == nil {
		c.dims = store.DimDeltas{}
	}
	c.dims.AddClick(r.ProgramID, r.AffiliateID, k.Day, r.Country, clickpolicy.ReferrerDomain(r.Referrer), r.SubID, r.Unique)
	return nil
}

// insertPending inserts the rows add has gathered, in as few statements as clickChunks allow.
func (c *clickInserter) insertPending() error {
	defer func() { clear(c.pending); c.pending = c.pending[:0] }()
	pending := c.pending
	for i, rows := range clickChunks {
		for n := rows * clickArgs; len(pending) >= n; pending = pending[n:] {
			if _, err := c.stmts.insert[i].Exec(pending[:n]...); err != nil {
				return fmt.Errorf("insert clicks %v…: %w", pending[0], err)
			}
		}
	}
	return nil
}

// finish inserts the rows still pending and the clicks counted instead, then adds the batch's
// counters to their stats_daily rows, in the order of the unique (day, affiliate, program,
// link) index so consecutive upserts touch neighbouring pages.
func (c *clickInserter) finish() error {
	if err := c.insertPending(); err != nil {
		return err
	}
	if err := c.over.write(c.tx); err != nil {
		return err
	}
	if err := c.stmts.stats.AddAll(c.tx, c.stats, time.Now()); err != nil {
		return err
	}
	return c.stmts.dims.AddAll(c.dims)
}

func (c *clickInserter) close() { c.stmts.close() }

// markUnique sets r.Unique when r is unflagged and its visitor has no earlier unflagged click
// on the same link (or affiliate code) within uniqueWindow, looking at this batch first, then
// at the unique window, then (no window, or the window is unsure) at the database.
func (c *clickInserter) markUnique(r *clickRow) error {
	r.Unique = false
	if r.Flag != "" || r.Visitor == "" {
		return nil
	}
	if c.win != nil {
		r.uniqueKey = c.win.Key(r.Visitor, r.LinkID, r.AffiliateID)
	}
	if r.NewVisitor {
		// Its visitor id was minted for this click: no other click can carry it yet (the
		// cookie goes out only once this batch has committed).
		r.Unique = true
		return nil
	}
	key := visitorLinkKey{r.Visitor, r.LinkID, r.AffiliateID}
	if _, repeat := c.seen[key]; repeat {
		return nil
	}
	if c.seen == nil {
		c.seen = map[visitorLinkKey]struct{}{}
	}
	c.seen[key] = struct{}{}
	if c.win != nil {
		switch c.win.Check(r.uniqueKey, r.Created.UnixMilli()) {
		case clickpolicy.Unique:
			r.Unique = true
			return nil
		case clickpolicy.Repeat:
			return nil
		}
	}
	found, err := hasRecentClick(c.tx, r.Visitor, r.LinkID, r.AffiliateID, r.Created)
	if err != nil {
		return err
	}
	r.Unique = !found
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
			"since": store.DBTime(at.Add(-uniqueWindow))}).Row(&found)
	if err != nil {
		return false, fmt.Errorf("unique check: %w", err)
	}
	return found != 0, nil
}
