package hooks

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
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

// reportQuery is a validated stats or leaderboard request.
type reportQuery struct {
	From, To  string // inclusive UTC days, YYYY-MM-DD
	Interval  string // day, week (Monday-based) or month
	Program   string // id, or "" for all
	Affiliate string // id, or "" for all
}

// parseReportQuery validates the query string; errors name the field.
func parseReportQuery(re *core.RequestEvent, now time.Time) (reportQuery, error) {
	q := re.Request.URL.Query()
	rq := reportQuery{Interval: q.Get("interval"), Program: q.Get("program"), Affiliate: q.Get("affiliate")}
	if rq.Interval == "" {
		rq.Interval = "day"
	}
	if rq.Interval != "day" && rq.Interval != "week" && rq.Interval != "month" {
		return rq, re.BadRequestError("Invalid interval.", fieldError("interval", "invalid_interval", "Use day, week or month."))
	}
	to := now.UTC().Truncate(24 * time.Hour)
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

// statsRow is one grouped stats_daily sum.
type statsRow struct {
	Period      string `db:"period"`
	Currency    string `db:"currency"`
	Clicks      int64  `db:"clicks"`
	Unique      int64  `db:"unique_clicks"`
	Conversions int64  `db:"conversions"`
	Revenue     int64  `db:"revenue"`
	Commission  int64  `db:"commission"`
}

// metrics are the row's sums with their rates.
func (r statsRow) metrics() reportMetrics {
	m := reportMetrics{Currency: r.Currency, Clicks: r.Clicks, UniqueClicks: r.Unique, Conversions: r.Conversions, Revenue: r.Revenue, Commission: r.Commission}
	m.finish()
	return m
}

// ownAffiliate is the affiliate a request may report on: an affiliate only itself (naming
// another is a 403), a superuser whichever it names.
func ownAffiliate(re *core.RequestEvent, requested string) (string, error) {
	if re.Auth.Collection().Name != collections.Affiliates {
		return requested, nil
	}
	if requested != "" && requested != re.Auth.Id {
		return "", re.ForbiddenError("Affiliates see their own figures only.", fieldError("affiliate", "forbidden", "Only your own id is allowed."))
	}
	return re.Auth.Id, nil
}

// periodExpr groups stats_daily.day (YYYY-MM-DD) by interval in SQLite.
func periodExpr(interval string) string {
	switch interval {
	case "week": // the Monday of the day's week
		return "date(s.[[day]], '-' || ((CAST(strftime('%w', s.[[day]]) AS INTEGER) + 6) % 7) || ' days')"
	case "month":
		return "substr(s.[[day]], 1, 7)"
	default:
		return "s.[[day]]"
	}
}

// handleStats answers the series and totals of a period. An affiliate gets its own figures
// only: another affiliate's id is a 403, not an empty answer.
func handleStats(re *core.RequestEvent) error {
	rq, err := parseReportQuery(re, time.Now())
	if err != nil {
		return err
	}
	if rq.Affiliate, err = ownAffiliate(re, rq.Affiliate); err != nil {
		return err
	}
	where, params := reportWhere(rq)
	var rows []statsRow
	err = re.App.DB().NewQuery("SELECT " + periodExpr(rq.Interval) + " AS [[period]], p.[[currency]] AS [[currency]], " +
		"SUM(s.[[clicks]]) AS [[clicks]], SUM(s.[[unique_clicks]]) AS [[unique_clicks]], SUM(s.[[conversions]]) AS [[conversions]], " +
		"SUM(s.[[revenue]]) AS [[revenue]], SUM(s.[[commission]]) AS [[commission]] " +
		"FROM {{stats_daily}} s JOIN {{programs}} p ON p.[[id]] = s.[[program]] WHERE " + where +
		" GROUP BY [[period]], [[currency]] ORDER BY [[period]], [[currency]]").Bind(params).All(&rows)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("stats: %w", err))
	}
	series := make([]map[string]any, 0, len(rows))
	totals := map[string]*reportMetrics{}
	for _, r := range rows {
		m := r.metrics()
		t := totals[r.Currency]
		if t == nil {
			t = &reportMetrics{Currency: r.Currency}
			totals[r.Currency] = t
		}
		t.Clicks, t.UniqueClicks, t.Conversions = t.Clicks+m.Clicks, t.UniqueClicks+m.UniqueClicks, t.Conversions+m.Conversions
		t.Revenue, t.Commission = t.Revenue+m.Revenue, t.Commission+m.Commission
		series = append(series, map[string]any{"period": r.Period, "metrics": m})
	}
	totalList := make([]reportMetrics, 0, len(totals))
	for _, t := range totals {
		t.finish()
		totalList = append(totalList, *t)
	}
	sort.Slice(totalList, func(i, j int) bool { return totalList[i].Currency < totalList[j].Currency })
	return re.JSON(http.StatusOK, map[string]any{
		"from": rq.From, "to": rq.To, "interval": rq.Interval, "program": rq.Program, "affiliate": rq.Affiliate,
		"series": series, "totals": totalList,
	})
}

// reportWhere is the stats_daily filter of a query.
func reportWhere(rq reportQuery) (string, dbx.Params) {
	where := "s.[[day]] >= {:from} AND s.[[day]] <= {:to}"
	params := dbx.Params{"from": rq.From, "to": rq.To}
	if rq.Program != "" {
		where += " AND s.[[program]] = {:program}"
		params["program"] = rq.Program
	}
	if rq.Affiliate != "" {
		where += " AND s.[[affiliate]] = {:affiliate}"
		params["affiliate"] = rq.Affiliate
	}
	return where, params
}

// leaderboardOrder maps by= to the column ranked on.
func leaderboardOrder(by string) (string, bool) {
	switch by {
	case "", "commission":
		return "commission", true
	case "revenue", "conversions", "clicks":
		return by, true
	}
	return "", false
}

// handleLeaderboard ranks affiliates for a period. Money is only ranked within one currency:
// without a program filter, programs of different currencies are a 400.
func handleLeaderboard(re *core.RequestEvent) error {
	rq, err := parseReportQuery(re, time.Now())
	if err != nil {
		return err
	}
	q := re.Request.URL.Query()
	by, ok := leaderboardOrder(q.Get("by"))
	if !ok {
		return re.BadRequestError("Invalid by.", fieldError("by", "invalid_metric", "Use commission, revenue, conversions or clicks."))
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > leaderboardMax {
			return re.BadRequestError("Invalid limit.", fieldError("limit", "invalid_limit", fmt.Sprintf("Use 1 to %d.", leaderboardMax)))
		}
		limit = n
	}
	where, params := reportWhere(rq)
	var currencies []string
	err = re.App.DB().NewQuery("SELECT DISTINCT p.[[currency]] FROM {{stats_daily}} s JOIN {{programs}} p ON p.[[id]] = s.[[program]] WHERE " + where).
		Bind(params).Column(&currencies)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("leaderboard currencies: %w", err))
	}
	if len(currencies) > 1 && (by == "commission" || by == "revenue") {
		return re.BadRequestError("Programs of several currencies.", fieldError("program", "required", "Choose a program: money is ranked within one currency."))
	}
	var rows []struct {
		Affiliate string `db:"affiliate"`
		Name      string `db:"name"`
		Code      string `db:"code"`
		statsRow
	}
	params["limit"] = limit
	err = re.App.DB().NewQuery("SELECT s.[[affiliate]] AS [[affiliate]], a.[[name]] AS [[name]], a.[[code]] AS [[code]], MAX(p.[[currency]]) AS [[currency]], " +
		"SUM(s.[[clicks]]) AS [[clicks]], SUM(s.[[unique_clicks]]) AS [[unique_clicks]], SUM(s.[[conversions]]) AS [[conversions]], " +
		"SUM(s.[[revenue]]) AS [[revenue]], SUM(s.[[commission]]) AS [[commission]] " +
		"FROM {{stats_daily}} s JOIN {{programs}} p ON p.[[id]] = s.[[program]] JOIN {{affiliates}} a ON a.[[id]] = s.[[affiliate]] " +
		"WHERE " + where + " GROUP BY s.[[affiliate]] ORDER BY [[" + by + "]] DESC, s.[[affiliate]] LIMIT {:limit}").Bind(params).All(&rows)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("leaderboard: %w", err))
	}
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		out[i] = map[string]any{"rank": i + 1, "affiliate": r.Affiliate, "name": r.Name, "code": r.Code, "metrics": r.metrics()}
	}
	return re.JSON(http.StatusOK, map[string]any{"from": rq.From, "to": rq.To, "program": rq.Program, "by": by, "affiliates": out})
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
