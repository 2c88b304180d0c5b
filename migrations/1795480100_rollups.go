package migrations

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/security"
)

// The reporting rollups (collections/rollups.go): stats_program_hourly, the program-wide
// figures per UTC hour with the currency on the row, and stats_dims_daily, clicks by country
// and referrer domain per program and by sub per affiliate. Superusers only (no rules; the
// reporting routes answer everyone else), and commission_totals, what each program owes by
// currency and status, kept by triggers on commissions. On an existing install they are built
// from stats_daily and the facts:
//   - every (program, day) of the hourly rollup sums exactly to stats_daily's; within the day,
//     clicks go to the hours of their click rows, sales and revenue to the hours of their
//     occurred_at, commission to its sale's hour, each only when those facts add up to the
//     day's figure; otherwise (clicks pruned by retention) the day's figure goes to 12:00 UTC,
//     which is the same calendar day in almost every time zone;
//   - the dims count the click rows still stored; clicks of a day that retention pruned are
//     counted under the value "" (unknown), so each (program, day) sums to stats_daily's.
func init() {
	m.Register(rollupsUp, rollupsDown)
}

func rollupsUp(app core.App) error {
	programs, err := app.FindCollectionByNameOrId("programs")
	if err != nil {
		return err
	}
	affiliates, err := app.FindCollectionByNameOrId("affiliates")
	if err != nil {
		return err
	}
	hourly := core.NewBaseCollection("stats_program_hourly")
	hourly.Fields.Add(
		&core.TextField{Name: "hour", Required: true, Pattern: `^\d{4}-\d{2}-\d{2} \d{2}$`, Help: "UTC hour, YYYY-MM-DD HH."},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.TextField{Name: "currency", Pattern: `^[a-z]{3}$`},
		&core.NumberField{Name: "clicks", OnlyInt: true},
		&core.NumberField{Name: "unique_clicks", OnlyInt: true},
		&core.NumberField{Name: "conversions", OnlyInt: true},
		&core.NumberField{Name: "revenue", OnlyInt: true, Help: "Minor units of currency."},
		&core.NumberField{Name: "commission", OnlyInt: true, Help: "Minor units of currency."},
	)
	hourly.AddIndex("idx_stats_program_hourly_key", true, "program, hour", "")
	hourly.AddIndex("idx_stats_program_hourly_hour", false, "hour", "")
	if err := app.Save(hourly); err != nil {
		return fmt.Errorf("create stats_program_hourly: %w", err)
	}
	dims := core.NewBaseCollection("stats_dims_daily")
	dims.Fields.Add(
		&core.SelectField{Name: "dim", Required: true, MaxSelect: 1, Values: []string{"country", "referrer", "sub"}},
		&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
		&core.RelationField{Name: "affiliate", MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true,
			Help: "The affiliate of a sub row; empty on country and referrer rows (the program's)."},
		&core.TextField{Name: "day", Required: true, Pattern: `^\d{4}-\d{2}-\d{2}$`, Help: "UTC day."},
		&core.TextField{Name: "value", Max: 253, Help: "Country code, referrer domain or sub; empty: none or unknown."},
		&core.NumberField{Name: "clicks", OnlyInt: true},
		&core.NumberField{Name: "unique_clicks", OnlyInt: true},
	)
	dims.AddIndex("idx_stats_dims_daily_key", true, "dim, affiliate, program, day, value", "")
	if err := app.Save(dims); err != nil {
		return fmt.Errorf("create stats_dims_daily: %w", err)
	}
	// What each program owes, by currency and status: kept by triggers on commissions, so
	// every writer (the engine, status changes, payouts, the dashboard) moves it in its own
	// statement; the overview's "commissions owed" reads a handful of rows.
	totals := core.NewBaseCollection("commission_totals")
	totals.Fields.Add(
		&core.TextField{Name: "program", Max: 15},
		&core.TextField{Name: "currency", Max: 3},
		&core.TextField{Name: "status", Max: 16},
		&core.NumberField{Name: "amount", OnlyInt: true, Help: "Minor units of currency."},
		&core.NumberField{Name: "count", OnlyInt: true},
	)
	totals.AddIndex("idx_commission_totals_key", true, "program, currency, status", "")
	if err := app.Save(totals); err != nil {
		return fmt.Errorf("create commission_totals: %w", err)
	}
	for _, q := range commissionTotalsSQL {
		if _, err := app.DB().NewQuery(q).Execute(); err != nil {
			return fmt.Errorf("commission_totals: %w", err)
		}
	}
	return backfillRollups(app)
}

func rollupsDown(app core.App) error {
	for _, t := range []string{"update", "delete"} {
		if _, err := app.DB().NewQuery("DROP TRIGGER IF EXISTS commission_totals_" + t).Execute(); err != nil {
			return err
		}
	}
	for _, name := range []string{"stats_dims_daily", "stats_program_hourly", "commission_totals"} {
		c, err := app.FindCollectionByNameOrId(name)
		if err != nil {
			continue
		}
		if err := app.Delete(c); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	return nil
}

// commissionTotalsSQL creates the triggers that keep commission_totals through every change
// of a commission's status, amount, program or currency and every deletion, and fills it.
// Insertions are counted by their writers (hooks/store.AddCommissionTotals: the engine once
// per batch, the record hook for the rest): a trigger on insert, even one whose WHEN is
// false, cost the engine a third of its time per conversion. A row's id is made once, when
// its (program, currency, status) first appears.
var commissionTotalsSQL = []string{
	`CREATE TRIGGER commission_totals_delete AFTER DELETE ON commissions BEGIN
		UPDATE commission_totals SET amount = amount - OLD.amount, count = count - 1
		WHERE program = OLD.program AND currency = OLD.currency AND status = OLD.status;
	END`,
	`CREATE TRIGGER commission_totals_update AFTER UPDATE OF program, currency, status, amount ON commissions
	WHEN OLD.program IS NOT NEW.program OR OLD.currency IS NOT NEW.currency OR OLD.status IS NOT NEW.status OR OLD.amount IS NOT NEW.amount
	BEGIN
		UPDATE commission_totals SET amount = amount - OLD.amount, count = count - 1
		WHERE program = OLD.program AND currency = OLD.currency AND status = OLD.status;
		INSERT INTO commission_totals (id, program, currency, status, amount, count)
		VALUES (substr(lower(hex(randomblob(8))), 1, 15), NEW.program, NEW.currency, NEW.status, NEW.amount, 1)
		ON CONFLICT (program, currency, status) DO UPDATE SET amount = amount + excluded.amount, count = count + 1;
	END`,
	`INSERT INTO commission_totals (id, program, currency, status, amount, count)
		SELECT substr(lower(hex(randomblob(8))), 1, 15), program, currency, status, SUM(amount), COUNT(*)
		FROM commissions GROUP BY program, currency, status`,
}

// rollupFigures are the additive counters of a rollup row.
type rollupFigures struct{ clicks, unique, conversions, revenue, commission int64 }

// backfillRollups builds both rollups from stats_daily and the facts (see above).
func backfillRollups(app core.App) error {
	db := app.DB()
	type dayKey struct{ program, day string }
	days := map[dayKey]*rollupFigures{}
	rows, err := db.NewQuery(`SELECT program, day, SUM(clicks), SUM(unique_clicks), SUM(conversions), SUM(revenue), SUM(commission)
		FROM stats_daily GROUP BY program, day`).Rows()
	if err != nil {
		return fmt.Errorf("stats_daily days: %w", err)
	}
	for rows.Next() {
		var k dayKey
		f := &rollupFigures{}
		if err := rows.Scan(&k.program, &k.day, &f.clicks, &f.unique, &f.conversions, &f.revenue, &f.commission); err != nil {
			rows.Close()
			return err
		}
		days[k] = f
	}
	rows.Close()
	if len(days) == 0 {
		return nil
	}

	// Hour histograms of the facts, per (program, hour).
	type hourKey struct{ program, hour string }
	hours := map[hourKey]*rollupFigures{}
	at := func(k hourKey) *rollupFigures {
		f := hours[k]
		if f == nil {
			f = &rollupFigures{}
			hours[k] = f
		}
		return f
	}
	scan := func(query string, fill func(k hourKey, a, b int64)) error {
		rows, err := db.NewQuery(query).Rows()
		if err != nil {
			return fmt.Errorf("hour histogram: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var k hourKey
			var a, b int64
			if err := rows.Scan(&k.program, &k.hour, &a, &b); err != nil {
				return err
			}
			fill(k, a, b)
		}
		return rows.Err()
	}
	if err := scan(`SELECT program, substr(created, 1, 13), COUNT(*), SUM("unique") FROM clicks WHERE flag = ''
		GROUP BY program, substr(created, 1, 13)`, func(k hourKey, a, b int64) { f := at(k); f.clicks, f.unique = a, b }); err != nil {
		return err
	}
	if err := scan(`SELECT program, substr(occurred_at, 1, 13), COUNT(*), SUM(amount - refund_applied) FROM conversions
		WHERE status != 'rejected' GROUP BY program, substr(occurred_at, 1, 13)`,
		func(k hourKey, a, b int64) { f := at(k); f.conversions, f.revenue = a, b }); err != nil {
		return err
	}
	if err := scan(`SELECT c.program, substr(v.occurred_at, 1, 13), 0, SUM(c.amount) FROM commissions c
		JOIN conversions v ON v.id = c.conversion WHERE c.status != 'void' AND c.kind IN ('sale', 'recurring')
		GROUP BY c.program, substr(v.occurred_at, 1, 13)`, func(k hourKey, _, b int64) { at(k).commission = b }); err != nil {
		return err
	}
	// Per day, the facts' sums: a histogram is used only where it adds up to stats_daily.
	factDays := map[dayKey]*rollupFigures{}
	for k, f := range hours {
		dk := dayKey{k.program, k.hour[:10]}
		s := factDays[dk]
		if s == nil {
			s = &rollupFigures{}
			factDays[dk] = s
		}
		s.clicks, s.unique, s.conversions = s.clicks+f.clicks, s.unique+f.unique, s.conversions+f.conversions
		s.revenue, s.commission = s.revenue+f.revenue, s.commission+f.commission
	}
	out := map[hourKey]*rollupFigures{}
	put := func(k hourKey) *rollupFigures {
		f := out[k]
		if f == nil {
			f = &rollupFigures{}
			out[k] = f
		}
		return f
	}
	for dk, want := range days {
		got := factDays[dk]
		if got == nil {
			got = &rollupFigures{}
		}
		clicksOK := got.clicks == want.clicks && got.unique == want.unique
		salesOK := got.conversions == want.conversions && got.revenue == want.revenue
		commissionOK := got.commission == want.commission
		for h := 0; h < 24; h++ {
			hk := hourKey{dk.program, fmt.Sprintf("%s %02d", dk.day, h)}
			f := hours[hk]
			if f == nil {
				continue
			}
			o := put(hk)
			if clicksOK {
				o.clicks, o.unique = f.clicks, f.unique
			}
			if salesOK {
				o.conversions, o.revenue = f.conversions, f.revenue
			}
			if commissionOK {
				o.commission = f.commission
			}
		}
		noon := put(hourKey{dk.program, dk.day + " 12"})
		if !clicksOK {
			noon.clicks, noon.unique = want.clicks, want.unique
		}
		if !salesOK {
			noon.conversions, noon.revenue = want.conversions, want.revenue
		}
		if !commissionOK {
			noon.commission = want.commission
		}
	}
	if err := insertRollupRows(app, `INSERT INTO stats_program_hourly (id, hour, program, currency, clicks, unique_clicks,
		conversions, revenue, commission) VALUES (?, ?, ?, (SELECT currency FROM programs WHERE id = ?), ?, ?, ?, ?, ?)`,
		func(exec func(args ...any) error) error {
			for k, f := range out {
				if *f == (rollupFigures{}) {
					continue
				}
				if err := exec(k.hour, k.program, k.program, f.clicks, f.unique, f.conversions, f.revenue, f.commission); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
		return err
	}
	return backfillDims(app)
}

// backfillDims counts the stored clicks by country, referrer domain and sub, and the clicks
// stats_daily has beyond them (pruned rows) under "".
func backfillDims(app core.App) error {
	db := app.DB()
	type dimKey struct{ dim, program, affiliate, day, value string }
	counts := map[dimKey][2]int64{}
	add := func(k dimKey, clicks, unique int64) {
		c := counts[k]
		counts[k] = [2]int64{c[0] + clicks, c[1] + unique}
	}
	group := func(query string, key func(program, affiliate, day, value string) dimKey) error {
		rows, err := db.NewQuery(query).Rows()
		if err != nil {
			return fmt.Errorf("click dims: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var program, affiliate, day, value string
			var clicks, unique int64
			if err := rows.Scan(&program, &affiliate, &day, &value, &clicks, &unique); err != nil {
				return err
			}
			add(key(program, affiliate, day, value), clicks, unique)
		}
		return rows.Err()
	}
	if err := group(`SELECT program, '', substr(created, 1, 10), country, COUNT(*), SUM("unique") FROM clicks WHERE flag = ''
		GROUP BY program, substr(created, 1, 10), country`, func(p, _, d, v string) dimKey { return dimKey{"country", p, "", d, v} }); err != nil {
		return err
	}
	if err := group(`SELECT program, '', substr(created, 1, 10), referrer, COUNT(*), SUM("unique") FROM clicks WHERE flag = ''
		GROUP BY program, substr(created, 1, 10), referrer`, func(p, _, d, v string) dimKey {
		return dimKey{"referrer", p, "", d, rollupReferrerDomain(v)}
	}); err != nil {
		return err
	}
	if err := group(`SELECT program, affiliate, substr(created, 1, 10), sub_id, COUNT(*), SUM("unique") FROM clicks WHERE flag = ''
		GROUP BY program, affiliate, substr(created, 1, 10), sub_id`, func(p, a, d, v string) dimKey { return dimKey{"sub", p, a, d, v} }); err != nil {
		return err
	}
	// What stats_daily counts beyond the stored rows goes to "".
	type sum struct {
		Program   string `db:"program"`
		Affiliate string `db:"affiliate"`
		Day       string `db:"day"`
		Clicks    int64  `db:"clicks"`
		Unique    int64  `db:"unique_clicks"`
	}
	var perAffiliate []sum
	if err := db.NewQuery(`SELECT program, affiliate, day, SUM(clicks) AS clicks, SUM(unique_clicks) AS unique_clicks
		FROM stats_daily GROUP BY program, affiliate, day HAVING SUM(clicks) != 0 OR SUM(unique_clicks) != 0`).All(&perAffiliate); err != nil {
		return fmt.Errorf("stats_daily clicks: %w", err)
	}
	type pd struct{ program, day string }
	perProgram := map[pd][2]int64{}
	stored := map[dimKey][2]int64{} // stored clicks per (dim, program, affiliate, day)
	for k, c := range counts {
		s := dimKey{k.dim, k.program, k.affiliate, k.day, ""}
		t := stored[s]
		stored[s] = [2]int64{t[0] + c[0], t[1] + c[1]}
	}
	for _, r := range perAffiliate {
		p := perProgram[pd{r.Program, r.Day}]
		perProgram[pd{r.Program, r.Day}] = [2]int64{p[0] + r.Clicks, p[1] + r.Unique}
		s := stored[dimKey{"sub", r.Program, r.Affiliate, r.Day, ""}]
		if d0, d1 := r.Clicks-s[0], r.Unique-s[1]; d0 != 0 || d1 != 0 {
			add(dimKey{"sub", r.Program, r.Affiliate, r.Day, ""}, d0, d1)
		}
	}
	for k, want := range perProgram {
		for _, dim := range []string{"country", "referrer"} {
			s := stored[dimKey{dim, k.program, "", k.day, ""}]
			if d0, d1 := want[0]-s[0], want[1]-s[1]; d0 != 0 || d1 != 0 {
				add(dimKey{dim, k.program, "", k.day, ""}, d0, d1)
			}
		}
	}
	return insertRollupRows(app, `INSERT INTO stats_dims_daily (id, dim, program, affiliate, day, value, clicks, unique_clicks)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, func(exec func(args ...any) error) error {
		for k, c := range counts {
			if c == [2]int64{} {
				continue
			}
			if err := exec(k.dim, k.program, k.affiliate, k.day, k.value, c[0], c[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// rollupReferrerDomain is the referrer breakdown's grouping of a referrer (the click writer's
// rule at the time of this migration): lower-case host without port or "www.", "" for none.
func rollupReferrerDomain(referrer string) string {
	u, err := url.Parse(referrer)
	if referrer == "" || err != nil || u.Host == "" {
		return ""
	}
	host := strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), "www.")
	if len(host) > 253 {
		return ""
	}
	return host
}

// insertRollupRows runs one prepared insert (with a new id first) for every row fill gives.
func insertRollupRows(app core.App, query string, fill func(exec func(args ...any) error) error) error {
	dbxDB, ok := app.NonconcurrentDB().(*dbx.Tx)
	if !ok {
		return errors.New("rollups backfill: not inside the migration's transaction")
	}
	builder, ok := dbxDB.Builder.(interface{ Executor() dbx.Executor })
	if !ok {
		return errors.New("rollups backfill: unexpected transaction builder")
	}
	tx, ok := builder.Executor().(*sql.Tx)
	if !ok {
		return errors.New("rollups backfill: unexpected transaction executor")
	}
	stmt, err := tx.Prepare(query)
	if err != nil {
		return fmt.Errorf("prepare rollup insert: %w", err)
	}
	defer stmt.Close()
	return fill(func(args ...any) error {
		if _, err := stmt.Exec(append([]any{security.PseudorandomStringWithAlphabet(15, "abcdefghijklmnopqrstuvwxyz0123456789")}, args...)...); err != nil {
			return fmt.Errorf("insert rollup row %v: %w", args, err)
		}
		return nil
	})
}
