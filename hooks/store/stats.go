package store

import (
	"cmp"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
)

// stats_daily has one row per (day, affiliate, program, link) with additive counters. Every
// writer (the click writer, sales, the commission engine, status changes, link deletion) goes
// through this file, in the transaction of the facts it counts, so the rollups never drift
// from the facts and no writer loses another's increment.

// StatsKey is one stats_daily row: the UTC day (YYYY-MM-DD), affiliate, program and link
// ("" for the affiliate's own code).
type StatsKey struct{ Day, Affiliate, Program, Link string }

// Compare orders keys as stats_daily's unique (day, affiliate, program, link) index, so a
// batch's upserts touch neighbouring pages instead of random ones.
func (k StatsKey) Compare(o StatsKey) int {
	return cmp.Or(cmp.Compare(k.Day, o.Day), cmp.Compare(k.Affiliate, o.Affiliate),
		cmp.Compare(k.Program, o.Program), cmp.Compare(k.Link, o.Link))
}

// StatsDay is the stats_daily day of an instant.
func StatsDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// StatsDelta is what a change adds to one stats_daily row (negative to take back).
type StatsDelta struct {
	Clicks, UniqueClicks, Conversions, Revenue, Commission int64
}

// statsUpsert adds a delta to one row, created when missing; positional, so hot paths prepare
// it once per batch (building a named-parameter query costs ~45 µs).
const statsUpsert = `INSERT INTO stats_daily (id, day, affiliate, program, link, clicks, unique_clicks, conversions,
	revenue, commission, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (day, affiliate, program, link) DO UPDATE SET clicks = clicks + excluded.clicks,
		unique_clicks = unique_clicks + excluded.unique_clicks, conversions = conversions + excluded.conversions,
		revenue = revenue + excluded.revenue, commission = commission + excluded.commission, updated = excluded.updated`

// Preparer is a database or a transaction that prepares statements.
type Preparer interface {
	Prepare(query string) (*sql.Stmt, error)
}

// StatsStmt is the stats_daily upsert prepared for a batch.
type StatsStmt struct{ stmt *sql.Stmt }

// PrepareStats prepares the upsert on p (a database, or a transaction: statements prepared on
// the database are bound to one with tx.Stmt by Bind).
func PrepareStats(p Preparer) (*StatsStmt, error) {
	s, err := p.Prepare(statsUpsert)
	if err != nil {
		return nil, fmt.Errorf("prepare stats_daily upsert: %w", err)
	}
	return &StatsStmt{stmt: s}, nil
}

// Bind returns the statement for use inside tx; the result is closed with the transaction.
func (s *StatsStmt) Bind(tx *sql.Tx) *StatsStmt { return &StatsStmt{stmt: tx.Stmt(s.stmt)} }

// Close releases the statement.
func (s *StatsStmt) Close() error { return s.stmt.Close() }

// Add adds d to k's row; now is the row's updated stamp (DBTime).
func (s *StatsStmt) Add(k StatsKey, d StatsDelta, now string) error {
	if d == (StatsDelta{}) {
		return nil
	}
	_, err := s.stmt.Exec(NewID(), k.Day, k.Affiliate, k.Program, k.Link,
		d.Clicks, d.UniqueClicks, d.Conversions, d.Revenue, d.Commission, now)
	if err != nil {
		return fmt.Errorf("upsert stats_daily %v: %w", k, err)
	}
	return nil
}

// AddAll adds every delta, in the order of the unique index.
func (s *StatsStmt) AddAll(deltas map[StatsKey]StatsDelta, now time.Time) error {
	stamp := DBTime(now)
	for _, k := range slices.SortedFunc(maps.Keys(deltas), StatsKey.Compare) {
		if err := s.Add(k, deltas[k], stamp); err != nil {
			return err
		}
	}
	return nil
}

// AddStats adds deltas to their stats_daily rows inside tx (a PocketBase transaction app),
// in the order of the unique index. For one-off changes; batches keep a StatsStmt.
func AddStats(tx core.App, deltas map[StatsKey]StatsDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	sqlTx, err := SQLTx(tx)
	if err != nil {
		return err
	}
	s, err := PrepareStats(sqlTx)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.AddAll(deltas, time.Now())
}

// MergeLinkStats moves a link's stats_daily rows onto its affiliate's rows without a link
// (the affiliate-code rows of the same days), inside tx, before the link is deleted: its
// figures stay with the affiliate.
func MergeLinkStats(tx core.App, link string) error {
	var rows []struct {
		Day         string `db:"day"`
		Affiliate   string `db:"affiliate"`
		Program     string `db:"program"`
		Clicks      int64  `db:"clicks"`
		Unique      int64  `db:"unique_clicks"`
		Conversions int64  `db:"conversions"`
		Revenue     int64  `db:"revenue"`
		Commission  int64  `db:"commission"`
	}
	err := tx.DB().NewQuery(`SELECT day, affiliate, program, clicks, unique_clicks, conversions, revenue, commission
		FROM stats_daily WHERE link = {:link}`).Bind(dbx.Params{"link": link}).All(&rows)
	if err != nil {
		return fmt.Errorf("stats_daily rows of link %s: %w", link, err)
	}
	deltas := make(map[StatsKey]StatsDelta, len(rows))
	for _, r := range rows {
		deltas[StatsKey{r.Day, r.Affiliate, r.Program, ""}] = StatsDelta{Clicks: r.Clicks, UniqueClicks: r.Unique,
			Conversions: r.Conversions, Revenue: r.Revenue, Commission: r.Commission}
	}
	if err := AddStats(tx, deltas); err != nil {
		return err
	}
	if _, err := tx.DB().NewQuery("DELETE FROM stats_daily WHERE link = {:link}").Bind(dbx.Params{"link": link}).Execute(); err != nil {
		return fmt.Errorf("delete stats_daily rows of link %s: %w", link, err)
	}
	return nil
}
