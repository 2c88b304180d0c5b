package hooks

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	_ "time/tzdata" // affiliates' time zones work on hosts without a zone database

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Tunables of the weekly digest.
const (
	// digestWindow is how long after the end of an affiliate's week (Monday 00:00 in their
	// time zone) its digest may still be queued; after a longer outage that week is skipped
	// rather than reported days late.
	digestWindow = 48 * time.Hour
	// digestPage is how many affiliates one query of the digest run reads.
	digestPage = 500
)

// digests queues, hourly, the weekly digest of every affiliate whose week just ended in their
// own time zone, with the week's figures computed then and frozen on the delivery.
type digests struct {
	app     core.App
	outbox  *mailOutbox
	content *mailContent
	now     func() time.Time
	signal  func() // wakes the mail worker
}

// newDigests returns the weekly digests of an app, queued through outbox.
func newDigests(app core.App, outbox *mailOutbox, content *mailContent, now func() time.Time, signal func()) *digests {
	return &digests{app: app, outbox: outbox, content: content, now: now, signal: signal}
}

// bind adds the hourly digest cron job.
func (g *digests) bind() {
	g.app.Cron().MustAdd(digestCronJob, "5 * * * *", func() {
		err := g.queueDigests()
		if err != nil {
			g.app.Logger().Error("weekly digest", "error", err)
		}
		metricsOf(g.app).jobDone(digestCronJob, err)
		g.signal()
	})
}

// digestAffiliate is what the digest run reads of an affiliate.
type digestAffiliate struct {
	ID       string `db:"id"`
	Email    string `db:"email"`
	Program  string `db:"program"`
	Timezone string `db:"timezone"`
}

// digestRun caches, for one run, the time zones and each program's ranking per week.
type digestRun struct {
	locs  map[string]*time.Location
	ranks map[string]map[string]int // program|week start -> affiliate -> rank (1 = most commission)
	sizes map[string]int            // same key -> how many affiliates are ranked
}

// queueDigests queues the weekly digest of every approved affiliate whose week (Monday to
// Sunday in their own time zone) ended within digestWindow and who had activity in it. The
// figures are computed now and frozen on the delivery. Marketing mail: the worker records a
// skip for affiliates who opted out or are suppressed. Idempotency keys make it safe to run
// any number of times, in any number of processes.
func (g *digests) queueDigests() error {
	now := g.now()
	run := &digestRun{locs: map[string]*time.Location{}, ranks: map[string]map[string]int{}, sizes: map[string]int{}}
	last := ""
	for {
		var page []digestAffiliate
		err := g.app.DB().Select("id", "email", "program", "timezone").From(collections.Affiliates).
			Where(dbx.HashExp{"status": collections.AffiliateApproved}).
			AndWhere(dbx.NewExp("[[id]] > {:last}", dbx.Params{"last": last})).
			OrderBy("id").Limit(digestPage).All(&page)
		if err != nil {
			return fmt.Errorf("list affiliates for digests: %w", err)
		}
		for _, a := range page {
			if err := g.queueDigest(run, a, now); err != nil {
				return err
			}
		}
		if len(page) < digestPage {
			return nil
		}
		last = page[len(page)-1].ID
	}
}

// queueDigest queues one affiliate's digest for the week that ended last, if it is due.
func (g *digests) queueDigest(run *digestRun, a digestAffiliate, now time.Time) error {
	if a.Email == "" {
		return nil
	}
	loc := run.location(a.Timezone)
	start, end := lastWeek(now, loc)
	if now.Sub(end) > digestWindow {
		return nil
	}
	key := digestKeyPrefix + a.ID + ":" + start.Format(time.DateOnly)
	var exists int
	err := g.app.DB().NewQuery("SELECT 1 FROM {{deliveries}} WHERE [[idempotency_key]] = {:key}").Bind(dbx.Params{"key": key}).Row(&exists)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("find digest %s: %w", key, err)
	}
	report, active, err := g.digestReport(run, a, start, end)
	if err != nil || !active {
		return err
	}
	raw, err := json.Marshal(report)
	if err != nil {
		return fmt.Errorf("encode digest %s: %w", key, err)
	}
	_, err = g.outbox.enqueue(g.app.DB(), deliveryRow{
		Affiliate: a.ID, Email: a.Email, Template: templateWeeklyDigest, Status: collections.DeliveryQueued,
		IdempotencyKey: key, Marketing: true, Data: string(raw),
	})
	return err
}

// location is the affiliate's time zone; empty or unknown (the field is validated on save,
// but the zone database may differ between machines) is UTC.
func (r *digestRun) location(name string) *time.Location {
	if loc, ok := r.locs[name]; ok {
		return loc
	}
	loc := time.UTC
	if name != "" {
		if l, err := time.LoadLocation(name); err == nil {
			loc = l
		}
	}
	r.locs[name] = loc
	return loc
}

// lastWeek is the last complete Monday-to-Sunday week before now in loc, as instants.
func lastWeek(now time.Time, loc *time.Location) (time.Time, time.Time) {
	local := now.In(loc)
	daysSinceMonday := (int(local.Weekday()) + 6) % 7
	end := time.Date(local.Year(), local.Month(), local.Day()-daysSinceMonday, 0, 0, 0, 0, loc)
	return end.AddDate(0, 0, -7), end
}

// digestReport computes an affiliate's figures for [start, end); active tells whether there
// was anything to report (a click, a sale or a commission).
func (g *digests) digestReport(run *digestRun, a digestAffiliate, start, end time.Time) (digestReport, bool, error) {
	from, to := store.DBTime(start), store.DBTime(end)
	r := digestReport{Period: start.Format("2 Jan") + " – " + end.AddDate(0, 0, -1).Format("2 Jan 2006")}
	db := g.app.DB()
	err := db.NewQuery("SELECT COUNT(*) FROM {{clicks}} WHERE [[affiliate]] = {:a} AND [[created]] >= {:from} AND [[created]] < {:to} AND [[flag]] = ''").
		Bind(dbx.Params{"a": a.ID, "from": from, "to": to}).Row(&r.Clicks)
	if err != nil {
		return r, false, fmt.Errorf("digest clicks of %s: %w", a.ID, err)
	}
	err = db.NewQuery("SELECT COUNT(*) FROM {{conversions}} WHERE [[affiliate]] = {:a} AND [[occurred_at]] >= {:from} AND [[occurred_at]] < {:to} AND [[status]] = {:approved}").
		Bind(dbx.Params{"a": a.ID, "from": from, "to": to, "approved": collections.ConversionApproved}).Row(&r.Conversions)
	if err != nil {
		return r, false, fmt.Errorf("digest conversions of %s: %w", a.ID, err)
	}
	var sums []struct {
		Currency string `db:"currency"`
		Total    int64  `db:"total"`
	}
	err = db.NewQuery("SELECT [[currency]], SUM([[amount]]) AS [[total]] FROM {{commissions}} WHERE [[affiliate]] = {:a} AND [[created]] >= {:from} AND [[created]] < {:to} AND [[status]] != {:void} GROUP BY [[currency]]").
		Bind(dbx.Params{"a": a.ID, "from": from, "to": to, "void": collections.CommissionVoid}).All(&sums)
	if err != nil {
		return r, false, fmt.Errorf("digest commissions of %s: %w", a.ID, err)
	}
	if r.Clicks == 0 && r.Conversions == 0 && len(sums) == 0 {
		return r, false, nil
	}
	totals := map[string]int64{}
	for _, s := range sums {
		totals[s.Currency] += s.Total
	}
	currency := ""
	if p, err := g.app.FindRecordById(collections.Programs, a.Program); err == nil {
		currency = p.GetString(collections.FieldCurrency)
	}
	r.Commission = balanceText(totals, currency)

	var best struct {
		Code  string `db:"code"`
		Label string `db:"label"`
		N     int    `db:"n"`
	}
	err = db.NewQuery("SELECT l.[[code]] AS [[code]], l.[[label]] AS [[label]], COUNT(*) AS [[n]] FROM {{clicks}} c JOIN {{links}} l ON l.[[id]] = c.[[link]] " +
		"WHERE c.[[affiliate]] = {:a} AND c.[[created]] >= {:from} AND c.[[created]] < {:to} AND c.[[flag]] = '' " +
		"GROUP BY c.[[link]] ORDER BY [[n]] DESC, l.[[code]] LIMIT 1").
		Bind(dbx.Params{"a": a.ID, "from": from, "to": to}).One(&best)
	switch {
	case err == nil:
		r.BestLink, r.BestClicks = best.Label, best.N
		if r.BestLink == "" {
			r.BestLink = best.Code
		}
		r.BestLinkURL = g.content.publicBase() + "/r/" + best.Code
	case !errors.Is(err, sql.ErrNoRows):
		return r, false, fmt.Errorf("digest best link of %s: %w", a.ID, err)
	}

	ranks, n, err := g.programRanks(run, a.Program, start, end)
	if err != nil {
		return r, false, err
	}
	prev, _, err := g.programRanks(run, a.Program, start.AddDate(0, 0, -7), start)
	if err != nil {
		return r, false, err
	}
	r.Rank, r.PreviousRank, r.Ranked = ranks[a.ID], prev[a.ID], n
	if r.Rank > 0 && r.PreviousRank > 0 {
		r.RankChange = r.PreviousRank - r.Rank
	}
	return r, true, nil
}

// programRanks ranks a program's affiliates by net commission created in [start, end):
// 1 is the most, ties share a rank; only positive totals are ranked. Cached per run and week.
func (g *digests) programRanks(run *digestRun, program string, start, end time.Time) (map[string]int, int, error) {
	key := program + "|" + store.DBTime(start)
	if r, ok := run.ranks[key]; ok {
		return r, run.sizes[key], nil
	}
	var rows []struct {
		Affiliate string `db:"affiliate"`
		Total     int64  `db:"total"`
	}
	err := g.app.DB().NewQuery("SELECT [[affiliate]], SUM([[amount]]) AS [[total]] FROM {{commissions}} " +
		"WHERE [[program]] = {:p} AND [[created]] >= {:from} AND [[created]] < {:to} AND [[status]] != {:void} " +
		"GROUP BY [[affiliate]] HAVING [[total]] > 0 ORDER BY [[total]] DESC, [[affiliate]]").
		Bind(dbx.Params{"p": program, "from": store.DBTime(start), "to": store.DBTime(end), "void": collections.CommissionVoid}).All(&rows)
	if err != nil {
		return nil, 0, fmt.Errorf("rank program %s: %w", program, err)
	}
	ranks := make(map[string]int, len(rows))
	for i, r := range rows {
		ranks[r.Affiliate] = i + 1
		if i > 0 && r.Total == rows[i-1].Total { // ties share a rank: 1, 2, 2, 4
			ranks[r.Affiliate] = ranks[rows[i-1].Affiliate]
		}
	}
	run.ranks[key], run.sizes[key] = ranks, len(rows)
	return ranks, len(rows), nil
}
