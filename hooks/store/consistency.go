package store

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// The rollups' invariant (docs/ledger.md): stats_daily equals the facts, and every rollup
// derived from stats_daily equals it. These queries measure the gaps; the engine's property
// tests compare them before and after each step (their fixtures write rows of their own) and
// the soak (internal/soak) requires them empty after crashes.

// CommissionGaps is, per stats_daily key ("day/affiliate/program/link"), stats_daily.commission
// minus the net commission of that key's sales (non-void sale, recurring and clawback
// commissions and reinstatements, by the day the conversion occurred). Keys without a gap are
// left out.
func CommissionGaps(app core.App) (map[string]int64, error) {
	var rows []struct {
		Key    string `db:"k"`
		Amount int64  `db:"amount"`
	}
	err := app.DB().NewQuery(`SELECT day || '/' || affiliate || '/' || program || '/' || link AS k, SUM(commission) AS amount
			FROM stats_daily GROUP BY k
		UNION ALL
		SELECT substr(v.occurred_at, 1, 10) || '/' || v.affiliate || '/' || v.program || '/' || v.link AS k, -SUM(c.amount) AS amount
			FROM commissions c JOIN conversions v ON v.id = c.conversion
			WHERE c.status != 'void' AND (c.kind IN ('sale', 'recurring', 'clawback') OR c.ref LIKE 'reinstate:%') GROUP BY k`).All(&rows)
	if err != nil {
		return nil, fmt.Errorf("commission gaps: %w", err)
	}
	gaps := map[string]int64{}
	for _, r := range rows {
		if gaps[r.Key] += r.Amount; gaps[r.Key] == 0 {
			delete(gaps, r.Key)
		}
	}
	return gaps, nil
}

// SaleGap is a stats_daily key whose conversions or revenue differ from its sales'.
type SaleGap struct {
	Key         string `db:"k"`
	Conversions int64  `db:"n"`
	Revenue     int64  `db:"revenue"`
}

// SaleGaps is, per stats_daily key, its conversions and revenue minus those of the key's
// sales (rejected ones do not count; revenue is net of the refunds applied), keys in order.
func SaleGaps(app core.App) ([]SaleGap, error) {
	var rows []SaleGap
	err := app.DB().NewQuery(`SELECT k, SUM(n) AS n, SUM(revenue) AS revenue FROM (
		SELECT day || '/' || affiliate || '/' || program || '/' || link AS k, conversions AS n, revenue FROM stats_daily
		UNION ALL
		SELECT substr(occurred_at, 1, 10) || '/' || affiliate || '/' || program || '/' || link AS k, -1 AS n,
			-(amount - refund_applied) AS revenue FROM conversions WHERE status != 'rejected')
		GROUP BY k HAVING SUM(n) != 0 OR SUM(revenue) != 0 ORDER BY k`).All(&rows)
	if err != nil {
		return nil, fmt.Errorf("sale gaps: %w", err)
	}
	return rows, nil
}

// ClickGaps lists the stats_daily keys whose clicks or unique clicks differ from the
// unflagged click rows of that key (by the click's UTC day). Retention deletes old click rows
// and keeps their counts, so this holds only for databases whose clicks were never expired.
func ClickGaps(app core.App) ([]string, error) {
	var rows []struct {
		K string `db:"k"`
	}
	err := app.DB().NewQuery(`SELECT k FROM (
		SELECT day || '/' || affiliate || '/' || program || '/' || link AS k, clicks AS n, unique_clicks AS u FROM stats_daily
		UNION ALL
		SELECT substr(created, 1, 10) || '/' || affiliate || '/' || program || '/' || link AS k, -1 AS n,
			-CASE WHEN "unique" THEN 1 ELSE 0 END AS u FROM clicks WHERE flag = '')
		GROUP BY k HAVING SUM(n) != 0 OR SUM(u) != 0 ORDER BY k`).All(&rows)
	if err != nil {
		return nil, fmt.Errorf("click gaps: %w", err)
	}
	keys := make([]string, len(rows))
	for i, r := range rows {
		keys[i] = r.K
	}
	return keys, nil
}

// derivedRollups are the rollups kept from stats_daily's deltas, each as a query of the keys
// where it disagrees with stats_daily (or with the facts it sums, for commission_totals).
var derivedRollups = []struct{ name, query string }{
	{"stats_program_hourly", `
		WITH d AS (SELECT program, day, SUM(clicks) c, SUM(unique_clicks) u, SUM(conversions) n, SUM(revenue) r, SUM(commission) m
			FROM stats_daily GROUP BY program, day),
		h AS (SELECT program, substr(hour, 1, 10) AS day, SUM(clicks) c, SUM(unique_clicks) u, SUM(conversions) n, SUM(revenue) r,
			SUM(commission) m FROM stats_program_hourly GROUP BY program, substr(hour, 1, 10))
		SELECT COALESCE(d.program, h.program) || '/' || COALESCE(d.day, h.day) AS k FROM d FULL OUTER JOIN h ON h.program = d.program AND h.day = d.day
		WHERE COALESCE(d.c, 0) != COALESCE(h.c, 0) OR COALESCE(d.u, 0) != COALESCE(h.u, 0) OR COALESCE(d.n, 0) != COALESCE(h.n, 0)
			OR COALESCE(d.r, 0) != COALESCE(h.r, 0) OR COALESCE(d.m, 0) != COALESCE(h.m, 0)`},
	{"stats_program_hourly currency", `SELECT h.program || '/' || h.hour AS k FROM stats_program_hourly h
		JOIN programs p ON p.id = h.program WHERE h.currency != p.currency`},
	{"stats_dims_daily " + collections.DimCountry, dimsMismatch(collections.DimCountry)},
	{"stats_dims_daily " + collections.DimReferrer, dimsMismatch(collections.DimReferrer)},
	{"stats_dims_daily sub", `
		WITH d AS (SELECT program, affiliate, day, SUM(clicks) c, SUM(unique_clicks) u FROM stats_daily GROUP BY program, affiliate, day HAVING c != 0 OR u != 0),
		x AS (SELECT program, affiliate, day, SUM(clicks) c, SUM(unique_clicks) u FROM stats_dims_daily WHERE dim = 'sub'
			GROUP BY program, affiliate, day HAVING c != 0 OR u != 0)
		SELECT COALESCE(d.affiliate, x.affiliate) || '/' || COALESCE(d.day, x.day) AS k FROM d
		FULL OUTER JOIN x ON x.program = d.program AND x.affiliate = d.affiliate AND x.day = d.day
		WHERE COALESCE(d.c, 0) != COALESCE(x.c, 0) OR COALESCE(d.u, 0) != COALESCE(x.u, 0)`},
	{"commission_totals", `
		WITH c AS (SELECT program, currency, status, SUM(amount) a, COUNT(*) n FROM commissions GROUP BY program, currency, status),
		t AS (SELECT program, currency, status, amount a, count n FROM commission_totals WHERE count != 0 OR amount != 0)
		SELECT COALESCE(c.program, t.program) || '/' || COALESCE(c.status, t.status) AS k FROM c FULL OUTER JOIN t
			ON t.program = c.program AND t.currency = c.currency AND t.status = c.status
		WHERE COALESCE(c.a, 0) != COALESCE(t.a, 0) OR COALESCE(c.n, 0) != COALESCE(t.n, 0)`},
}

// dimsMismatch compares a program-wide click dimension (country, referrer) with stats_daily
// per (program, day).
func dimsMismatch(dim string) string {
	return `
		WITH d AS (SELECT program, day, SUM(clicks) c, SUM(unique_clicks) u FROM stats_daily GROUP BY program, day HAVING c != 0 OR u != 0),
		x AS (SELECT program, day, SUM(clicks) c, SUM(unique_clicks) u FROM stats_dims_daily WHERE dim = '` + dim + `' AND affiliate = ''
			GROUP BY program, day HAVING c != 0 OR u != 0)
		SELECT COALESCE(d.program, x.program) || '/' || COALESCE(d.day, x.day) AS k FROM d FULL OUTER JOIN x ON x.program = d.program AND x.day = d.day
		WHERE COALESCE(d.c, 0) != COALESCE(x.c, 0) OR COALESCE(d.u, 0) != COALESCE(x.u, 0)`
}

// DerivedRollupMismatches returns, per derived rollup (the hourly rollup, the dims, the
// commission totals) that disagrees with stats_daily, the keys where it does.
func DerivedRollupMismatches(app core.App) (map[string][]string, error) {
	out := map[string][]string{}
	for _, d := range derivedRollups {
		var rows []struct {
			K string `db:"k"`
		}
		if err := app.DB().NewQuery(d.query).All(&rows); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		for _, r := range rows {
			out[d.name] = append(out[d.name], r.K)
		}
	}
	return out, nil
}

// RollupProblems checks a whole database: stats_daily equals its sales, commissions and
// clicks, and the derived rollups equal stats_daily. Empty means consistent.
func RollupProblems(app core.App) ([]string, error) {
	var problems []string
	gaps, err := CommissionGaps(app)
	if err != nil {
		return nil, err
	}
	for k, v := range gaps {
		problems = append(problems, fmt.Sprintf("stats_daily.commission %s off by %d", k, v))
	}
	sales, err := SaleGaps(app)
	if err != nil {
		return nil, err
	}
	for _, g := range sales {
		problems = append(problems, fmt.Sprintf("stats_daily conversions/revenue %s off by %d/%d", g.Key, g.Conversions, g.Revenue))
	}
	clicks, err := ClickGaps(app)
	if err != nil {
		return nil, err
	}
	for _, k := range clicks {
		problems = append(problems, "stats_daily clicks "+k+" differ from the click rows")
	}
	derived, err := DerivedRollupMismatches(app)
	if err != nil {
		return nil, err
	}
	for name, keys := range derived {
		problems = append(problems, fmt.Sprintf("%s differs from stats_daily at %v", name, keys))
	}
	return problems, nil
}
