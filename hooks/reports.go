package hooks

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Limits of the reporting routes.
const (
	// reportDefaultDays is the period when from/to are not given.
	reportDefaultDays = 30
	// reportMaxDays bounds one request (about ten years).
	reportMaxDays = 3660
	// leaderboardMax bounds limit.
	leaderboardMax = 100
)

// reportQuery is a validated stats, leaderboard or breakdown request.
type reportQuery struct {
	From, To  string // inclusive days, YYYY-MM-DD (UTC, or local days of TZ for program-wide stats)
	Interval  string // day, week (Monday-based) or month
	Program   string // id, or "" for all
	Affiliate string // id, or "" for all
	TZ        *time.Location
	Compare   bool // compare=previous: the totals of the period of the same length just before
}

// parseReportQuery validates the query string; errors name the field.
func parseReportQuery(re *core.RequestEvent, now time.Time) (reportQuery, error) {
	q := re.Request.URL.Query()
	rq := reportQuery{Interval: q.Get("interval"), Program: q.Get("program"), Affiliate: q.Get("affiliate"), TZ: time.UTC}
	if rq.Interval == "" {
		rq.Interval = "day"
	}
	if rq.Interval != "day" && rq.Interval != "week" && rq.Interval != "month" {
		return rq, re.BadRequestError("Invalid interval.", fieldError("interval", "invalid_interval", "Use day, week or month."))
	}
	if v := q.Get("tz"); v != "" {
		loc, err := time.LoadLocation(v)
		if err != nil || v == "Local" {
			return rq, re.BadRequestError("Invalid tz.", fieldError("tz", "invalid_timezone", "Use an IANA time zone such as Europe/Berlin."))
		}
		rq.TZ = loc
	}
	switch q.Get("compare") {
	case "":
	case "previous":
		rq.Compare = true
	default:
		return rq, re.BadRequestError("Invalid compare.", fieldError("compare", "invalid_compare", "Use previous."))
	}
	nowIn := now.In(rq.TZ)
	to := time.Date(nowIn.Year(), nowIn.Month(), nowIn.Day(), 0, 0, 0, 0, time.UTC)
	if v := q.Get("to"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return rq, re.BadRequestError("Invalid to.", fieldError("to", "invalid_date", "Use YYYY-MM-DD."))
		}
		to = t
	}
	from := to.AddDate(0, 0, -(reportDefaultDays - 1))
	if v := q.Get("from"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return rq, re.BadRequestError("Invalid from.", fieldError("from", "invalid_date", "Use YYYY-MM-DD."))
		}
		from = t
	}
	if from.After(to) {
		return rq, re.BadRequestError("Invalid period.", fieldError("from", "after_to", "from must not be after to."))
	}
	if to.Sub(from) > reportMaxDays*24*time.Hour {
		return rq, re.BadRequestError("Period too long.", fieldError("from", "too_long", fmt.Sprintf("At most %d days per request.", reportMaxDays)))
	}
	rq.From, rq.To = from.Format(time.DateOnly), to.Format(time.DateOnly)
	if rq.Program != "" {
		if _, err := re.App.FindRecordById(collections.Programs, rq.Program); err != nil {
			return rq, re.BadRequestError("Unknown program.", fieldError("program", "unknown_program", "No program has this id."))
		}
	}
	return rq, nil
}

// reportMetrics are the sums of a period, with the rates derived from them. Money is minor
// units of Currency; rates are not money and are plain numbers.
type reportMetrics struct {
	Currency     string  `json:"currency"`
	Clicks       int64   `json:"clicks"`
	UniqueClicks int64   `json:"unique_clicks"`
	Conversions  int64   `json:"conversions"`
	Revenue      int64   `json:"revenue"`
	Commission   int64   `json:"commission"`
	CR           float64 `json:"cr"`          // conversions per click, in percent
	UniqueRate   float64 `json:"unique_rate"` // unique clicks per click, in percent
	EPC          int64   `json:"epc"`         // commission per click, minor units, rounded half to even
	AOV          int64   `json:"aov"`         // revenue per conversion, minor units, rounded half to even
	Formatted    string  `json:"commission_formatted"`
}

// finish derives the rates of m.
func (m *reportMetrics) finish() {
	if m.Clicks > 0 {
		m.CR = percent(m.Conversions, m.Clicks)
		m.UniqueRate = percent(m.UniqueClicks, m.Clicks)
		m.EPC = divHalfEven(m.Commission, m.Clicks)
	}
	if m.Conversions > 0 {
		m.AOV = divHalfEven(m.Revenue, m.Conversions)
	}
	m.Formatted = money.FormatWithCode(m.Commission, m.Currency)
}

// percent is 100·a/b rounded to two decimals.
func percent(a, b int64) float64 {
	return float64(divHalfEven(a*10000, b)) / 100
}

// divHalfEven divides integers, rounding half to even (banker's rounding, like commissions).
func divHalfEven(a, b int64) int64 {
	q, r := a/b, a%b
	if r < 0 {
		r = -r
	}
	twice := 2 * r
	if twice > b || (twice == b && q%2 != 0) {
		if (a < 0) != (b < 0) {
			return q - 1
		}
		return q + 1
	}
	return q
}

// statsRow is one grouped sum of a rollup.
type statsRow struct {
	Period      string `db:"period"`
	Currency    string `db:"currency"`
	Clicks      int64  `db:"clicks"`
	Unique      int64  `db:"unique_clicks"`
	Conversions int64  `db:"conversions"`
	Revenue     int64  `db:"revenue"`
	Commission  int64  `db:"commission"`
}

func (r *statsRow) add(o statsRow) {
	r.Clicks, r.Unique, r.Conversions = r.Clicks+o.Clicks, r.Unique+o.Unique, r.Conversions+o.Conversions
	r.Revenue, r.Commission = r.Revenue+o.Revenue, r.Commission+o.Commission
}

// metrics are the row's sums with their rates.
func (r statsRow) metrics() reportMetrics {
	m := reportMetrics{Currency: r.Currency, Clicks: r.Clicks, UniqueClicks: r.Unique, Conversions: r.Conversions, Revenue: r.Revenue, Commission: r.Commission}
	m.finish()
	return m
}

// isAffiliate reports whether an affiliate signed in makes the request (else a superuser, or
// an API key the route's scope let through).
func isAffiliate(re *core.RequestEvent) bool {
	return re.Auth != nil && re.Auth.Collection().Name == collections.Affiliates
}

// ownAffiliate is the affiliate a request may report on: an affiliate only itself (naming
// another is a 403), a superuser whichever it names.
func ownAffiliate(re *core.RequestEvent, requested string) (string, error) {
	if !isAffiliate(re) { // a superuser or an API key with stats:read
		return requested, nil
	}
	if requested != "" && requested != re.Auth.Id {
		return "", re.ForbiddenError("Affiliates see their own figures only.", fieldError("affiliate", "forbidden", "Only your own id is allowed."))
	}
	return re.Auth.Id, nil
}

// periodOf is the period (day YYYY-MM-DD, week: its Monday, month YYYY-MM) of a local day.
func periodOf(day time.Time, interval string) string {
	switch interval {
	case "week":
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7)).Format(time.DateOnly)
	case "month":
		return day.Format("2006-01")
	}
	return day.Format(time.DateOnly)
}

// periods lists every period of from..to (YYYY-MM-DD, inclusive) in order.
func periods(from, to, interval string) []string {
	f, _ := time.Parse(time.DateOnly, from)
	t, _ := time.Parse(time.DateOnly, to)
	var out []string
	for d := f; !d.After(t); d = d.AddDate(0, 0, 1) {
		if p := periodOf(d, interval); len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	return out
}

// previousPeriod is the range of the same length that ends the day before from.
func previousPeriod(from, to string) (string, string) {
	f, _ := time.Parse(time.DateOnly, from)
	t, _ := time.Parse(time.DateOnly, to)
	days := int(t.Sub(f).Hours()/24) + 1
	return f.AddDate(0, 0, -days).Format(time.DateOnly), f.AddDate(0, 0, -1).Format(time.DateOnly)
}

// statsRows reads a range's sums per period and currency: program-wide from the hourly rollup
// (local days of rq.TZ: every row is an hour, bucketed here), an affiliate's from stats_daily
// (UTC days; the affiliate's index).
func statsRows(app core.App, rq reportQuery, from, to string) ([]statsRow, error) {
	db := app.DB()
	var rows []statsRow
	if rq.Affiliate != "" {
		where := "s.[[affiliate]] = {:affiliate} AND s.[[day]] >= {:from} AND s.[[day]] <= {:to}"
		params := dbx.Params{"affiliate": rq.Affiliate, "from": from, "to": to}
		if rq.Program != "" {
			where += " AND s.[[program]] = {:program}"
			params["program"] = rq.Program
		}
		err := db.NewQuery("SELECT s.[[day]] AS [[period]], p.[[currency]] AS [[currency]], " +
			"SUM(s.[[clicks]]) AS [[clicks]], SUM(s.[[unique_clicks]]) AS [[unique_clicks]], SUM(s.[[conversions]]) AS [[conversions]], " +
			"SUM(s.[[revenue]]) AS [[revenue]], SUM(s.[[commission]]) AS [[commission]] " +
			"FROM {{" + collections.StatsDaily + "}} s JOIN {{programs}} p ON p.[[id]] = s.[[program]] WHERE " + where +
			" GROUP BY s.[[day]], p.[[currency]]").Bind(params).All(&rows)
		if err != nil {
			return nil, fmt.Errorf("affiliate stats: %w", err)
		}
		for i := range rows {
			d, _ := time.Parse(time.DateOnly, rows[i].Period)
			rows[i].Period = periodOf(d, rq.Interval)
		}
		return rows, nil
	}
	f, _ := time.ParseInLocation(time.DateOnly, from, rq.TZ)
	t, _ := time.ParseInLocation(time.DateOnly, to, rq.TZ)
	start, end := f.UTC(), t.AddDate(0, 0, 1).UTC()
	// SQLite buckets the hours into local days itself (a day's rows, not its hours, come
	// back): each hour is shifted by the zone's offset in force then, one CASE arm per span
	// between the zone's transitions in the range (a year has three at most).
	shift, args := "?", []any{}
	for at := start; ; {
		_, offset := at.In(rq.TZ).Zone()
		_, next := at.In(rq.TZ).ZoneBounds()
		modifier := fmt.Sprintf("%+d minutes", offset/60)
		if next.IsZero() || !next.Before(end) {
			args = append(args, modifier)
			break
		}
		shift += " WHEN hour < ? THEN ?"
		args = append(args, next.UTC().Format("2006-01-02 15"), modifier)
		at = next.UTC()
	}
	if len(args) > 1 { // "?" WHEN … THEN … ELSE the last offset
		shift = "CASE" + strings.TrimPrefix(shift, "?") + " ELSE ? END"
	}
	query := "SELECT date(hour || ':00', " + shift + ") AS day, currency, SUM(clicks), SUM(unique_clicks), SUM(conversions), " +
		"SUM(revenue), SUM(commission) FROM " + collections.StatsProgramHourly + " WHERE hour >= ? AND hour < ?"
	args = append(args, start.Format("2006-01-02 15"), end.Format("2006-01-02 15"))
	if rq.Program != "" {
		query += " AND program = ?"
		args = append(args, rq.Program)
	}
	query += " GROUP BY day, currency"
	sqlDB, ok := app.ConcurrentDB().(*dbx.DB)
	if !ok {
		return nil, fmt.Errorf("program stats: unexpected database %T", app.ConcurrentDB())
	}
	res, err := sqlDB.DB().Query(query, args...)
	if err != nil {
		return nil, fmt.Errorf("program stats: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var r statsRow
		var day string
		if err := res.Scan(&day, &r.Currency, &r.Clicks, &r.Unique, &r.Conversions, &r.Revenue, &r.Commission); err != nil {
			return nil, fmt.Errorf("program stats: %w", err)
		}
		d, err := time.Parse(time.DateOnly, day)
		if err != nil {
			return nil, fmt.Errorf("program stats day %q: %w", day, err)
		}
		r.Period = periodOf(d, rq.Interval)
		rows = append(rows, r)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("program stats: %w", err)
	}
	return rows, nil
}

// totalsOf sums rows per currency, in currency order.
func totalsOf(rows []statsRow) []reportMetrics {
	sums := map[string]*statsRow{}
	for _, r := range rows {
		t := sums[r.Currency]
		if t == nil {
			t = &statsRow{Currency: r.Currency}
			sums[r.Currency] = t
		}
		t.add(r)
	}
	out := make([]reportMetrics, 0, len(sums))
	for _, c := range slices.Sorted(maps.Keys(sums)) {
		out = append(out, sums[c].metrics())
	}
	return out
}

// programCurrency is a program's currency ("" when unknown).
func programCurrency(db dbx.Builder, program string) string {
	var c string
	_ = db.NewQuery("SELECT [[currency]] FROM {{programs}} WHERE [[id]] = {:id}").Bind(dbx.Params{"id": program}).Row(&c)
	return c
}

// handleStats answers the series and totals of a period, and with compare=previous the
// totals of the period before it. An affiliate gets its own figures only: another
// affiliate's id is a 403, not an empty answer. The series has every period of the range for
// every currency present (the program's currency when one is named), zeros included.
func handleStats(re *core.RequestEvent) error {
	rq, err := parseReportQuery(re, time.Now())
	if err != nil {
		return err
	}
	if rq.Affiliate, err = ownAffiliate(re, rq.Affiliate); err != nil {
		return err
	}
	if rq.Affiliate != "" {
		rq.TZ = time.UTC // an affiliate's figures are per UTC day (stats_daily)
	}
	db := re.App.DB()
	rows, err := statsRows(re.App, rq, rq.From, rq.To)
	if err != nil {
		return re.InternalServerError("", err)
	}
	byPeriod := map[[2]string]*statsRow{}
	currencies := map[string]bool{}
	if rq.Program != "" {
		if c := programCurrency(db, rq.Program); c != "" {
			currencies[c] = true
		}
	}
	for _, r := range rows {
		currencies[r.Currency] = true
		k := [2]string{r.Period, r.Currency}
		if byPeriod[k] == nil {
			byPeriod[k] = &statsRow{Period: r.Period, Currency: r.Currency}
		}
		byPeriod[k].add(r)
	}
	series := []map[string]any{}
	for _, p := range periods(rq.From, rq.To, rq.Interval) {
		for _, c := range slices.Sorted(maps.Keys(currencies)) {
			r := statsRow{Period: p, Currency: c}
			if got := byPeriod[[2]string{p, c}]; got != nil {
				r = *got
			}
			series = append(series, map[string]any{"period": p, "metrics": r.metrics()})
		}
	}
	out := map[string]any{
		"from": rq.From, "to": rq.To, "interval": rq.Interval, "tz": rq.TZ.String(), "program": rq.Program, "affiliate": rq.Affiliate,
		"series": series, "totals": totalsOf(rows),
	}
	if rq.Compare {
		pf, pt := previousPeriod(rq.From, rq.To)
		prev, err := statsRows(re.App, rq, pf, pt)
		if err != nil {
			return re.InternalServerError("", err)
		}
		out["previous"] = map[string]any{"from": pf, "to": pt, "totals": totalsOf(prev)}
	}
	return re.JSON(http.StatusOK, out)
}

// leaderboardOrder is the ranking of by=: money and counts compare directly, rates (CR:
// conversions per click, EPC: commission per click) by cross-multiplying, so no float rounds
// a tie away.
func leaderboardOrder(by string) (string, store.BoardLess, bool) {
	switch by {
	case "", "commission":
		return "commission", func(a, b store.BoardRow) bool { return a.Commission < b.Commission }, true
	case "revenue":
		return by, func(a, b store.BoardRow) bool { return a.Revenue < b.Revenue }, true
	case "conversions", "sales":
		return "conversions", func(a, b store.BoardRow) bool { return a.Conversions < b.Conversions }, true
	case "clicks":
		return by, func(a, b store.BoardRow) bool { return a.Clicks < b.Clicks }, true
	case "cr":
		return by, func(a, b store.BoardRow) bool { return a.Conversions*b.Clicks < b.Conversions*a.Clicks }, true
	case "epc":
		return by, func(a, b store.BoardRow) bool { return a.Commission*b.Clicks < b.Commission*a.Clicks }, true
	}
	return "", nil, false
}

// intParam reads an optional integer in lo..hi; errors name the field.
func intParam(re *core.RequestEvent, name string, def, lo, hi int) (int, error) {
	v := re.Request.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, re.BadRequestError("Invalid "+name+".", fieldError(name, "invalid_"+name, fmt.Sprintf("Use %d to %d.", lo, hi)))
	}
	return n, nil
}

// handleLeaderboard ranks affiliates for a range of UTC days from the in-memory board (work
// grows with the program's affiliates, not with affiliates × days). Money is only ranked
// within one currency: without a program filter, programs of different currencies are a 400.
// Rates rank affiliates with at least min_clicks clicks (default 1).
func handleLeaderboard(re *core.RequestEvent) error {
	rq, err := parseReportQuery(re, time.Now())
	if err != nil {
		return err
	}
	by, less, ok := leaderboardOrder(re.Request.URL.Query().Get("by"))
	if !ok {
		return re.BadRequestError("Invalid by.", fieldError("by", "invalid_metric", "Use commission, revenue, conversions, clicks, cr or epc."))
	}
	limit, err := intParam(re, "limit", 10, 1, leaderboardMax)
	if err != nil {
		return err
	}
	minClicks := 0
	if by == "cr" || by == "epc" {
		minClicks = 1
	}
	if minClicks, err = intParam(re, "min_clicks", minClicks, 0, 1<<30); err != nil {
		return err
	}
	db := re.App.DB()
	var programs []struct {
		ID       string `db:"id"`
		Currency string `db:"currency"`
	}
	q := db.Select("id", "currency").From(collections.Programs)
	if rq.Program != "" {
		q = q.Where(dbx.HashExp{"id": rq.Program})
	}
	// ?currency= ranks the programs of one currency together (the overview's board when
	// programs differ in currency).
	if c := re.Request.URL.Query().Get("currency"); c != "" {
		if !money.ValidCurrency(c) || c != strings.ToLower(c) {
			return re.BadRequestError("Invalid currency.", fieldError("currency", "invalid_currency", "Use a lowercase ISO 4217 code such as usd."))
		}
		q = q.AndWhere(dbx.HashExp{"currency": c})
	}
	if err := q.All(&programs); err != nil {
		return re.InternalServerError("", fmt.Errorf("leaderboard programs: %w", err))
	}
	currencyOf := map[string]string{}
	ids := make([]string, 0, len(programs))
	for _, p := range programs {
		currencyOf[p.ID] = p.Currency
		ids = append(ids, p.ID)
	}
	if distinct := slices.Compact(slices.Sorted(maps.Values(currencyOf))); len(distinct) > 1 && (by == "commission" || by == "revenue" || by == "epc") {
		return re.BadRequestError("Programs of several currencies.", fieldError("program", "required", "Choose a program: money is ranked within one currency."))
	}
	keep := func(r store.BoardRow) bool { return r.Clicks >= int64(minClicks) }
	top, err := store.TopAffiliates(re.App, ids, rq.From, rq.To, limit, less, keep)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("leaderboard: %w", err))
	}
	affIDs := make([]any, len(top))
	for i, r := range top {
		affIDs[i] = r.Affiliate
	}
	var affs []struct {
		ID      string `db:"id"`
		Name    string `db:"name"`
		Code    string `db:"code"`
		Program string `db:"program"`
	}
	if len(affIDs) > 0 {
		if err := db.Select("id", "name", "code", "program").From(collections.Affiliates).Where(dbx.In("id", affIDs...)).All(&affs); err != nil {
			return re.InternalServerError("", fmt.Errorf("leaderboard names: %w", err))
		}
	}
	type who struct{ name, code, program string }
	names := make(map[string]who, len(affs))
	for _, a := range affs {
		names[a.ID] = who{a.Name, a.Code, a.Program}
	}
	out := make([]map[string]any, len(top))
	for i, r := range top {
		w := names[r.Affiliate]
		program := cmp.Or(r.Program, w.program)
		row := statsRow{Currency: currencyOf[program], Clicks: r.Clicks, Unique: r.Unique, Conversions: r.Conversions, Revenue: r.Revenue, Commission: r.Commission}
		out[i] = map[string]any{"rank": i + 1, "affiliate": r.Affiliate, "name": w.name, "code": w.code, "metrics": row.metrics()}
	}
	return re.JSON(http.StatusOK, map[string]any{"from": rq.From, "to": rq.To, "program": rq.Program, "by": by, "affiliates": out})
}

// breakdownMax bounds limit on /api/pba/breakdown.
const breakdownMax = 500

// handleBreakdown answers a range's figures by link or sub for one affiliate (an affiliate
// gets its own only), or by country or referrer domain for a program (superusers). Links come
// from stats_daily (every figure); country, referrer and sub from stats_dims_daily (clicks and
// unique clicks: sales carry none of them). Rows are ranked by clicks, then value.
func handleBreakdown(re *core.RequestEvent) error {
	rq, err := parseReportQuery(re, time.Now())
	if err != nil {
		return err
	}
	dim := re.Request.URL.Query().Get("dim")
	limit, err := intParam(re, "limit", 50, 1, breakdownMax)
	if err != nil {
		return err
	}
	isAffiliate := isAffiliate(re)
	switch dim {
	case "link", collections.DimSub:
		if rq.Affiliate, err = ownAffiliate(re, rq.Affiliate); err != nil {
			return err
		}
		if rq.Affiliate == "" {
			return re.BadRequestError("Missing affiliate.", fieldError("affiliate", "required", "Name the affiliate."))
		}
	case collections.DimCountry, collections.DimReferrer:
		if isAffiliate {
			return re.ForbiddenError("Program breakdowns are for admins.", fieldError("dim", "forbidden", "Use link or sub."))
		}
	default:
		return re.BadRequestError("Invalid dim.", fieldError("dim", "invalid_dim", "Use link, sub, country or referrer."))
	}
	db := re.App.DB()
	params := dbx.Params{"from": rq.From, "to": rq.To, "limit": limit, "affiliate": rq.Affiliate, "program": rq.Program, "dim": dim}
	programFilter := ""
	if rq.Program != "" {
		programFilter = " AND s.[[program]] = {:program}"
	}
	if dim == "link" {
		var rows []struct {
			Link  string `db:"link"`
			Code  string `db:"code"`
			Label string `db:"label"`
			statsRow
		}
		err := db.NewQuery("SELECT s.[[link]] AS [[link]], COALESCE(l.[[code]], '') AS [[code]], COALESCE(l.[[label]], '') AS [[label]], " +
			"MAX(p.[[currency]]) AS [[currency]], SUM(s.[[clicks]]) AS [[clicks]], SUM(s.[[unique_clicks]]) AS [[unique_clicks]], " +
			"SUM(s.[[conversions]]) AS [[conversions]], SUM(s.[[revenue]]) AS [[revenue]], SUM(s.[[commission]]) AS [[commission]] " +
			"FROM {{" + collections.StatsDaily + "}} s JOIN {{programs}} p ON p.[[id]] = s.[[program]] LEFT JOIN {{links}} l ON l.[[id]] = s.[[link]] " +
			"WHERE s.[[affiliate]] = {:affiliate} AND s.[[day]] >= {:from} AND s.[[day]] <= {:to}" + programFilter +
			" GROUP BY s.[[link]] ORDER BY [[clicks]] DESC, [[commission]] DESC, s.[[link]] LIMIT {:limit}").Bind(params).All(&rows)
		if err != nil {
			return re.InternalServerError("", fmt.Errorf("breakdown by link: %w", err))
		}
		out := make([]map[string]any, len(rows))
		for i, r := range rows {
			out[i] = map[string]any{"value": r.Link, "code": r.Code, "label": r.Label, "metrics": r.metrics()}
		}
		return re.JSON(http.StatusOK, map[string]any{"dim": dim, "from": rq.From, "to": rq.To, "affiliate": rq.Affiliate, "program": rq.Program, "rows": out})
	}
	var rows []struct {
		Value  string `db:"value"`
		Clicks int64  `db:"clicks"`
		Unique int64  `db:"unique_clicks"`
	}
	err = db.NewQuery("SELECT s.[[value]] AS [[value]], SUM(s.[[clicks]]) AS [[clicks]], SUM(s.[[unique_clicks]]) AS [[unique_clicks]] " +
		"FROM {{" + collections.StatsDims + "}} s WHERE s.[[dim]] = {:dim} AND s.[[affiliate]] = {:affiliate}" + programFilter +
		" AND s.[[day]] >= {:from} AND s.[[day]] <= {:to} GROUP BY s.[[value]] ORDER BY [[clicks]] DESC, s.[[value]] LIMIT {:limit}").
		Bind(params).All(&rows)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("breakdown by %s: %w", dim, err))
	}
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		rate := 0.0
		if r.Clicks > 0 {
			rate = percent(r.Unique, r.Clicks)
		}
		out[i] = map[string]any{"value": r.Value, "clicks": r.Clicks, "unique_clicks": r.Unique, "unique_rate": rate}
	}
	return re.JSON(http.StatusOK, map[string]any{"dim": dim, "from": rq.From, "to": rq.To, "affiliate": rq.Affiliate, "program": rq.Program, "rows": out})
}

// handleOwed answers what programs owe their affiliates per currency: pending (in the hold
// period) and payable commissions, from commission_totals (a few rows, kept by triggers on
// commissions): the overview's "commissions owed". Superusers; ?program= narrows to one.
func handleOwed(re *core.RequestEvent) error {
	program := re.Request.URL.Query().Get("program")
	where := "[[status]] IN ({:pending}, {:payable})"
	params := dbx.Params{"pending": collections.CommissionPending, "payable": collections.CommissionPayable}
	if program != "" {
		where += " AND [[program]] = {:program}"
		params["program"] = program
	}
	type owed struct {
		Currency string `db:"currency" json:"currency"`
		Pending  int64  `db:"pending" json:"pending"`
		Payable  int64  `db:"payable" json:"payable"`
	}
	out := []owed{}
	err := re.App.DB().NewQuery("SELECT [[currency]], SUM(CASE WHEN [[status]] = {:pending} THEN [[amount]] ELSE 0 END) AS [[pending]], " +
		"SUM(CASE WHEN [[status]] = {:payable} THEN [[amount]] ELSE 0 END) AS [[payable]] FROM {{" + collections.CommissionTotals + "}} " +
		"WHERE " + where + " GROUP BY [[currency]] HAVING SUM([[count]]) > 0 ORDER BY [[currency]]").Bind(params).All(&out)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("owed: %w", err))
	}
	return re.JSON(http.StatusOK, map[string]any{"program": program, "balances": out})
}

// handleBalance answers an affiliate's commission totals per currency: pending (in the hold
// period), payable (next payout, clawbacks netted), paid. Affiliates get their own; superusers
// name one with ?affiliate=.
func handleBalance(re *core.RequestEvent) error {
	affiliate, err := ownAffiliate(re, re.Request.URL.Query().Get("affiliate"))
	if err != nil {
		return err
	}
	if affiliate == "" {
		return re.BadRequestError("Missing affiliate.", fieldError("affiliate", "required", "Name the affiliate."))
	}
	balances, err := store.Balances(re.App.DB(), affiliate)
	if err != nil {
		return re.InternalServerError("", err)
	}
	type balance struct {
		Currency string `json:"currency"`
		Pending  int64  `json:"pending"`
		Payable  int64  `json:"payable"`
		Paid     int64  `json:"paid"`
	}
	out := []balance{}
	for _, b := range balances {
		if b.Live > 0 { // a currency whose commissions are all void is not shown
			out = append(out, balance{Currency: b.Currency, Pending: b.Pending, Payable: b.Payable, Paid: b.Paid})
		}
	}
	return re.JSON(http.StatusOK, map[string]any{"affiliate": affiliate, "balances": out})
}
