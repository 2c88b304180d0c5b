package store

import (
	"cmp"
	"database/sql"
	"fmt"
	"maps"
	"slices"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// stats_dims_daily counts clicks by one more dimension than stats_daily: country and referrer
// domain per program (affiliate ""), sub per affiliate. The click writer adds a batch's dims
// in the transaction of its clicks; sales carry no country, referrer or sub, so only clicks
// and unique clicks are counted (docs/data-model.md).

// DimKey is one stats_dims_daily row.
type DimKey struct{ Dim, Program, Affiliate, Day, Value string }

// Compare orders keys as the unique (dim, affiliate, program, day, value) index.
func (k DimKey) Compare(o DimKey) int {
	return cmp.Or(cmp.Compare(k.Dim, o.Dim), cmp.Compare(k.Affiliate, o.Affiliate), cmp.Compare(k.Program, o.Program),
		cmp.Compare(k.Day, o.Day), cmp.Compare(k.Value, o.Value))
}

// DimDelta is what a batch adds to one row.
type DimDelta struct{ Clicks, UniqueClicks int64 }

// DimDeltas are a batch's dims rows.
type DimDeltas map[DimKey]DimDelta

// AddClick counts one unflagged click in the three rows it belongs to: its program's country
// and referrer domain (referrerDomain as the click writer groups it) and its affiliate's sub.
func (m DimDeltas) AddClick(program, affiliate, day, country, referrerDomain, sub string, unique bool) {
	var u int64
	if unique {
		u = 1
	}
	for _, k := range [...]DimKey{
		{Dim: collections.DimCountry, Program: program, Day: day, Value: country},
		{Dim: collections.DimReferrer, Program: program, Day: day, Value: referrerDomain},
		{Dim: collections.DimSub, Program: program, Affiliate: affiliate, Day: day, Value: sub},
	} {
		d := m[k]
		m[k] = DimDelta{d.Clicks + 1, d.UniqueClicks + u}
	}
}

const dimsUpsert = `INSERT INTO stats_dims_daily (id, dim, program, affiliate, day, value, clicks, unique_clicks)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (dim, affiliate, program, day, value) DO UPDATE SET clicks = clicks + excluded.clicks,
		unique_clicks = unique_clicks + excluded.unique_clicks`

// DimsStmt is the stats_dims_daily upsert prepared for batches.
type DimsStmt struct{ stmt *sql.Stmt }

// PrepareDims prepares the upsert on p (bound to a transaction by Bind).
func PrepareDims(p Preparer) (*DimsStmt, error) {
	stmt, err := p.Prepare(dimsUpsert)
	if err != nil {
		return nil, fmt.Errorf("prepare stats_dims_daily upsert: %w", err)
	}
	return &DimsStmt{stmt: stmt}, nil
}

// Bind returns the statement for use inside tx; the result is closed with the transaction.
func (s *DimsStmt) Bind(tx *sql.Tx) *DimsStmt { return &DimsStmt{stmt: tx.Stmt(s.stmt)} }

// Close releases the statement.
func (s *DimsStmt) Close() error { return s.stmt.Close() }

// AddAll adds every delta to its row, in the order of the unique index.
func (s *DimsStmt) AddAll(deltas DimDeltas) error {
	for _, k := range slices.SortedFunc(maps.Keys(deltas), DimKey.Compare) {
		d := deltas[k]
		if d == (DimDelta{}) {
			continue
		}
		if _, err := s.stmt.Exec(NewID(), k.Dim, k.Program, k.Affiliate, k.Day, k.Value, d.Clicks, d.UniqueClicks); err != nil {
			return fmt.Errorf("upsert stats_dims_daily %v: %w", k, err)
		}
	}
	return nil
}
