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

// stats_daily has one row per (day, affiliate, program, link) with additive counters, and
// stats_program_hourly one per (program, UTC hour) with the same counters. Every writer (the
// click writer, sales, the commission engine, status changes, link deletion) goes through this
// file, in the transaction of the facts it counts, so the rollups never drift from the facts
// and no writer loses another's increment. The leaderboard's board (board.go) follows the
// committed deltas.

// StatsKey is one stats_daily row: the UTC day (YYYY-MM-DD), affiliate, program and link
// ("" for the affiliate's own code), plus the UTC hour ("00".."23") of the program's hourly row.
type StatsKey struct{ Day, Affiliate, Program, Link, Hour string }

// StatsKeyAt is the key of a fact stamped at, a database time ("2006-01-02 15:04:05.000Z").
func StatsKeyAt(at, affiliate, program, link string) StatsKey {
	return StatsKey{Day: at[:10], Affiliate: affiliate, Program: program, Link: link, Hour: at[11:13]}
}

// StatsKeyOf is the key of a fact that happened at t.
func StatsKeyOf(t time.Time, affiliate, program, link string) StatsKey {
	return StatsKeyAt(DBTime(t), affiliate, program, link)
}

// Compare orders keys as stats_daily's unique (day, affiliate, program, link) index, so a
// batch's upserts touch neighbouring pages instead of random ones.
func (k StatsKey) Compare(o StatsKey) int {
	return cmp.Or(cmp.Compare(k.Day, o.Day), cmp.Compare(k.Affiliate, o.Affiliate),
		cmp.Compare(k.Program, o.Program), cmp.Compare(k.Link, o.Link), cmp.Compare(k.Hour, o.Hour))
}

// StatsDay is the stats_daily day of an instant.
func StatsDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// StatsDelta is what a change adds to one stats_daily row (negative to take back).
type StatsDelta struct {
	Clicks, UniqueClicks, Conversions, Revenue, Commission int64
}

func (d StatsDelta) add(o StatsDelta) StatsDelta {
	return StatsDelta{d.Clicks + o.Clicks, d.UniqueClicks + o.UniqueClicks, d.Conversions + o.Conversions,
		d.Revenue + o.Revenue, d.Commission + o.Commission}
}

// statsUpsert adds a delta to one row, created when missing; positional, so hot paths prepare
// it once per batch (building a named-parameter query costs ~45 µs).
const statsUpsert = `INSERT INTO stats_daily (id, day, affiliate, program, link, clicks, unique_clicks, conversions,
	revenue, commission, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (day, affiliate, program, link) DO UPDATE SET clicks = clicks + excluded.clicks,
		unique_clicks = unique_clicks + excluded.unique_clicks, conversions = conversions + excluded.conversions,
		revenue = revenue + excluded.revenue, commission = commission + excluded.commission, updated = excluded.updated`

// hourlyUpsert adds a delta to a program's hour; a new row takes the program's currency, so
// the overview's query needs no join.
const hourlyUpsert = `INSERT INTO stats_program_hourly (id, hour, program, currency, clicks, unique_clicks, conversions,
	revenue, commission) VALUES (?, ?, ?, COALESCE((SELECT currency FROM programs WHERE id = ?), ''), ?, ?, ?, ?, ?)
	ON CONFLICT (program, hour) DO UPDATE SET clicks = clicks + excluded.clicks,
		unique_clicks = unique_clicks + excluded.unique_clicks, conversions = conversions + excluded.conversions,
		revenue = revenue + excluded.revenue, commission = commission + excluded.commission`

// Preparer is a database or a transaction that prepares statements.
type Preparer interface {
	Prepare(query string) (*sql.Stmt, error)
}

// StatsStmt is the stats_daily and hourly upserts prepared for a batch.
type StatsStmt struct{ daily, hourly *sql.Stmt }

// PrepareStats prepares the upserts on p (a database, or a transaction: statements prepared on
// the database are bound to one with tx.Stmt by Bind).
func PrepareStats(p Preparer) (*StatsStmt, error) {
	daily, err := p.Prepare(statsUpsert)
	if err != nil {
		return nil, fmt.Errorf("prepare stats_daily upsert: %w", err)
	}
	hourly, err := p.Prepare(hourlyUpsert)
	if err != nil {
		daily.Close()
		return nil, fmt.Errorf("prepare stats_program_hourly upsert: %w", err)
	}
	return &StatsStmt{daily: daily, hourly: hourly}, nil
}

// Bind returns the statements for use inside tx; the result is closed with the transaction.
func (s *StatsStmt) Bind(tx *sql.Tx) *StatsStmt {
	return &StatsStmt{daily: tx.Stmt(s.daily), hourly: tx.Stmt(s.hourly)}
}

// Close releases the statements.
func (s *StatsStmt) Close() error {
	return cmp.Or(s.daily.Close(), s.hourly.Close())
}

// addDaily adds d to k's stats_daily row; now is the row's updated stamp (DBTime).
func (s *StatsStmt) addDaily(k StatsKey, d StatsDelta, now string) error {
	_, err := s.daily.Exec(NewID(), k.Day, k.Affiliate, k.Program, k.Link,
		d.Clicks, d.UniqueClicks, d.Conversions, d.Revenue, d.Commission, now)
	if err != nil {
		return fmt.Errorf("upsert stats_daily %v: %w", k, err)
	}
	return nil
}

// hourKey is one stats_program_hourly row.
type hourKey struct{ Program, Hour string }

// AddAll adds every delta to its stats_daily row, in the order of the unique index, and to its
// program's hour, inside tx (the PocketBase transaction the statements are bound to), and
// hands the deltas to the board once tx commits.
func (s *StatsStmt) AddAll(tx core.App, deltas map[StatsKey]StatsDelta, now time.Time) error {
	stamp := DBTime(now)
	hours := map[hourKey]StatsDelta{}
	for _, k := range slices.SortedFunc(maps.Keys(deltas), StatsKey.Compare) {
		d := deltas[k]
		if d == (StatsDelta{}) {
			continue
		}
		if k.Hour == "" {
			return fmt.Errorf("stats key %v: no hour (use StatsKeyAt)", k)
		}
		if err := s.addDaily(k, d, stamp); err != nil {
			return err
		}
		h := hourKey{k.Program, k.Day + " " + k.Hour}
		hours[h] = hours[h].add(d)
	}
	for _, h := range slices.SortedFunc(maps.Keys(hours), func(a, b hourKey) int {
		return cmp.Or(cmp.Compare(a.Program, b.Program), cmp.Compare(a.Hour, b.Hour))
	}) {
		d := hours[h]
		if d == (StatsDelta{}) {
			continue
		}
		if _, err := s.hourly.Exec(NewID(), h.Hour, h.Program, h.Program,
			d.Clicks, d.UniqueClicks, d.Conversions, d.Revenue, d.Commission); err != nil {
			return fmt.Errorf("upsert stats_program_hourly %v: %w", h, err)
		}
	}
	trackBoard(tx, deltas)
	return nil
}

// AddStats adds deltas to their stats_daily and hourly rows inside tx (a PocketBase
// transaction app). For one-off changes; batches keep a StatsStmt.
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
	return s.AddAll(tx, deltas, time.Now())
}

// MergeLinkStats moves a link's stats_daily rows onto its affiliate's rows without a link
// (the affiliate-code rows of the same days), inside tx, before the link is deleted: its
// figures stay with the affiliate. The affiliate's and program's totals do not change, so
// neither the hourly rollup nor the board does.
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
		FROM stats_daily WHERE link = {:link} ORDER BY day, affiliate, program`).Bind(dbx.Params{"link": link}).All(&rows)
	if err != nil {
		return fmt.Errorf("stats_daily rows of link %s: %w", link, err)
	}
	if _, err := tx.DB().NewQuery("DELETE FROM stats_daily WHERE link = {:link}").Bind(dbx.Params{"link": link}).Execute(); err != nil {
		return fmt.Errorf("delete stats_daily rows of link %s: %w", link, err)
	}
	if len(rows) == 0 {
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
	stamp := DBTime(time.Now())
	for _, r := range rows {
		k := StatsKey{Day: r.Day, Affiliate: r.Affiliate, Program: r.Program}
		d := StatsDelta{Clicks: r.Clicks, UniqueClicks: r.Unique, Conversions: r.Conversions, Revenue: r.Revenue, Commission: r.Commission}
		if err := s.addDaily(k, d, stamp); err != nil {
			return err
		}
	}
	return nil
}
