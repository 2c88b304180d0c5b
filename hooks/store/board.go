package store

import (
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/board"
)

// The leaderboard ranks every affiliate of a program over any range of days. Summing
// stats_daily for that grows with affiliates × days (seconds at 10,000 affiliates), so the
// sums live in memory as running totals per affiliate and day (hooks/internal/board), built
// from stats_daily on first use and fed the deltas of every committed stats write.
//
// Exactness: writes reach the board only after their transaction commits (OnComplete). A
// build starts its read snapshot while it holds the single write connection, so no stats write
// is open at that instant, and bumps the board's epoch there. Each write remembers the epoch
// it wrote under (inside its transaction): a write of an older epoch committed before the
// snapshot (it is in what the build reads) and is not applied again; a write of the new epoch
// is not in the snapshot and is queued while the build reads, then applied. Writers wait for
// the build only for the instant its snapshot starts.

// statsBoard is the app's board and its state.
type statsBoard struct {
	build    sync.Mutex // one build at a time
	mu       sync.RWMutex
	epoch    uint64
	built    bool
	building bool          // a build reads its snapshot: writes of its epoch wait in queue
	queue    []boardDeltas // committed during the build, applied when it ends
	b        board.Board
}

// boardDeltas are one committed write's figures.
type boardDeltas []boardDelta

type boardDelta struct {
	key board.Key
	day int32
	d   board.Counters
}

func (sb *statsBoard) apply(ds boardDeltas) {
	for _, e := range ds {
		sb.b.Add(e.key, e.day, e.d)
	}
}

const boardStoreKey = "pba.store.board"

func boardOf(app core.App) *statsBoard {
	return app.Store().GetOrSet(boardStoreKey, func() any { return &statsBoard{} }).(*statsBoard)
}

// epochDay is a YYYY-MM-DD day as days since 1970-01-01.
func epochDay(day string) (int32, error) {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return 0, fmt.Errorf("stats day %q: %w", day, err)
	}
	return int32(t.Unix() / 86400), nil
}

// trackBoard hands deltas to the board once tx commits (nothing when the board is not built:
// the build will read them from the database).
func trackBoard(tx core.App, deltas map[StatsKey]StatsDelta) {
	sb := boardOf(tx)
	sb.mu.RLock()
	epoch, live := sb.epoch, sb.built || sb.building
	sb.mu.RUnlock()
	info := tx.TxInfo()
	if !live || info == nil {
		return
	}
	entries := make(boardDeltas, 0, len(deltas))
	for k, d := range deltas {
		day, err := epochDay(k.Day)
		if err != nil {
			continue // AddAll's insert of the same key failed first
		}
		entries = append(entries, boardDelta{board.Key{Program: k.Program, Affiliate: k.Affiliate}, day,
			board.Counters{Clicks: d.Clicks, Unique: d.UniqueClicks, Conversions: d.Conversions, Revenue: d.Revenue, Commission: d.Commission}})
	}
	info.OnComplete(func(txErr error) error {
		if txErr != nil {
			return nil
		}
		sb.mu.Lock()
		defer sb.mu.Unlock()
		switch {
		case sb.epoch != epoch: // in a newer build's snapshot, or the board was dropped
		case sb.building:
			sb.queue = append(sb.queue, entries)
		case sb.built:
			sb.apply(entries)
		}
		return nil
	})
}

// InvalidateBoard drops the board, to be rebuilt on next use: for changes that remove
// stats_daily rows outside this package (a program's cascade delete).
func InvalidateBoard(app core.App) {
	sb := boardOf(app)
	sb.mu.Lock()
	sb.built, sb.b = false, board.Board{}
	sb.epoch++
	sb.mu.Unlock()
}

// ensureBoard builds the board when it is not built.
func ensureBoard(app core.App) (*statsBoard, error) {
	sb := boardOf(app)
	sb.mu.RLock()
	built := sb.built
	sb.mu.RUnlock()
	if built {
		return sb, nil
	}
	sb.build.Lock()
	defer sb.build.Unlock()
	sb.mu.RLock()
	built = sb.built
	sb.mu.RUnlock()
	if built {
		return sb, nil
	}
	db, ok := app.ConcurrentDB().(*dbx.DB)
	if !ok {
		return nil, errors.New("board: the app's read database is not a dbx.DB")
	}
	var (
		readTx *sql.Tx
		rows   *sql.Rows
		more   bool
		epoch  uint64
	)
	err := app.RunInTransaction(func(core.App) error {
		// Holding the write connection: no stats write is open while the snapshot starts.
		var err error
		if readTx, err = db.DB().Begin(); err != nil {
			return fmt.Errorf("board snapshot: %w", err)
		}
		rows, err = readTx.Query(`SELECT program, affiliate, day, clicks, unique_clicks, conversions, revenue, commission FROM stats_daily`)
		if err != nil {
			return fmt.Errorf("read stats_daily for the board: %w", err)
		}
		more = rows.Next() // the first step starts the snapshot
		sb.mu.Lock()
		sb.epoch++
		epoch, sb.building, sb.queue = sb.epoch, true, nil
		sb.mu.Unlock()
		return nil
	})
	if readTx != nil {
		defer readTx.Rollback()
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var bl board.Builder
	var k board.Key
	var day string
	var c board.Counters
	for ; more; more = rows.Next() {
		if err := rows.Scan(&k.Program, &k.Affiliate, &day, &c.Clicks, &c.Unique, &c.Conversions, &c.Revenue, &c.Commission); err != nil {
			sb.abandon(epoch)
			return nil, fmt.Errorf("scan stats_daily for the board: %w", err)
		}
		d, err := epochDay(day)
		if err != nil {
			sb.abandon(epoch)
			return nil, err
		}
		bl.Add(k, d, c)
	}
	if err := rows.Err(); err != nil {
		sb.abandon(epoch)
		return nil, fmt.Errorf("read stats_daily for the board: %w", err)
	}
	nb := bl.Board()
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.epoch != epoch { // dropped while building: the next use builds again
		sb.building, sb.queue = false, nil
		return sb, nil
	}
	sb.b = nb
	for _, q := range sb.queue {
		sb.apply(q)
	}
	sb.building, sb.built, sb.queue = false, true, nil
	return sb, nil
}

// abandon ends a failed build of epoch.
func (sb *statsBoard) abandon(epoch uint64) {
	sb.mu.Lock()
	if sb.epoch == epoch {
		sb.building, sb.queue = false, nil
		sb.epoch++
	}
	sb.mu.Unlock()
}

// WarmBoard builds the board now, so the first leaderboard does not wait for it.
func WarmBoard(app core.App) error {
	_, err := ensureBoard(app)
	return err
}

// BoardKey names an affiliate in a program on the board.
type BoardKey = board.Key

// BoardRow is one affiliate's figures of a range.
type BoardRow = board.Row

// BoardLess orders board rows (see board.Less).
type BoardLess = board.Less

// BoardCounters are a range's additive figures.
type BoardCounters = board.Counters

// readBoard runs read on the built board with from..to (YYYY-MM-DD) as epoch days, under
// the board's read lock.
func readBoard(app core.App, from, to string, read func(b *board.Board, from, to int32)) error {
	f, err := epochDay(from)
	if err != nil {
		return err
	}
	t, err := epochDay(to)
	if err != nil {
		return err
	}
	sb, err := ensureBoard(app)
	if err != nil {
		return err
	}
	sb.mu.RLock()
	defer sb.mu.RUnlock()
	read(&sb.b, f, t)
	return nil
}

// TopAffiliates ranks the affiliates of programs (every program when none) over the UTC days
// from..to (YYYY-MM-DD, inclusive): the n best by less, skipping rows keep rejects.
func TopAffiliates(app core.App, programs []string, from, to string, n int, less board.Less, keep func(board.Row) bool) ([]board.Row, error) {
	var top []board.Row
	err := readBoard(app, from, to, func(b *board.Board, f, t int32) { top = b.Top(programs, f, t, n, less, keep) })
	return top, err
}

// BoardSums is the board's figures of each (program, affiliate) over from..to, for checks
// that the board equals stats_daily.
func BoardSums(app core.App, keys []board.Key, from, to string) (map[board.Key]board.Counters, error) {
	out := make(map[board.Key]board.Counters, len(keys))
	err := readBoard(app, from, to, func(b *board.Board, f, t int32) {
		for _, k := range keys {
			out[k] = b.Sum(k, f, t)
		}
	})
	return out, err
}
