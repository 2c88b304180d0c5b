package hooks

import (
	"fmt"
	"sync"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
)

// retentionCronJob prunes what grows without bound and is no longer needed: raw clicks past
// every attribution window (stats_daily keeps their counts), customer-wide Stripe attributions
// past theirs, and old bookkeeping rows.
const retentionCronJob = "pbaRetention"

// bookkeepingRetention is how long processed Stripe and billing provider event ids and finished
// affiliate webhook deliveries are kept. Stripe retries an event for three days (Paddle, Lemon
// Squeezy and Shopify for less); the portal shows recent deliveries. provider_refunds stay: they
// are a sale's refunds.
const bookkeepingRetention = 90 * 24 * time.Hour

// retentionChunk is how many rows one transaction deletes at most: the click writer shares the
// single write connection, and a redirect waits for it, so the job never holds it for long.
const retentionChunk = 2000

// retention deletes expired rows in small transactions. It needs no database lease: deleting
// what is expired is the same whichever process does it, and twice is the same as once.
type retention struct {
	app       core.App
	clickDays int // 0 keeps clicks forever
	now       func() time.Time
	mu        sync.Mutex // one run at a time in this process
}

// retentionStats is what a run deleted.
type retentionStats struct {
	Clicks, ClickOverflow, InactiveRedirects, StripeEvents, ProviderEvents, WebhookDeliveries int64
	StripeAttributions                                                                        int64
	Skipped                                                                                   bool
}

func registerRetention(app core.App, cfg Config) {
	r := &retention{app: app, clickDays: cfg.ClickRetentionDays, now: time.Now}
	app.Cron().MustAdd(retentionCronJob, "40 3 * * *", func() {
		st, err := r.run()
		metricsOf(app).jobDone(retentionCronJob, err)
		if err != nil {
			app.Logger().Error("retention run failed", "error", err)
			return
		}
		app.Logger().Info("retention run", "clicks", st.Clicks, collections.ClickOverflow, st.ClickOverflow,
			collections.InactiveRedirects, st.InactiveRedirects,
			collections.StripeEvents, st.StripeEvents, collections.ProviderEvents, st.ProviderEvents,
			collections.WebhookDeliveries, st.WebhookDeliveries, collections.StripeAttributions, st.StripeAttributions)
	})
}

// run is one pass; it returns at once (Skipped) when a pass is already running.
func (r *retention) run() (retentionStats, error) {
	var st retentionStats
	if !r.mu.TryLock() {
		st.Skipped = true
		return st, nil
	}
	defer r.mu.Unlock()
	cutoff, err := r.clickCutoff()
	if err != nil {
		return st, err
	}
	if !cutoff.IsZero() {
		if st.Clicks, err = r.pruneClicks(cutoff); err != nil {
			return st, err
		}
		// The clicks counted instead of stored go with the clicks of their hour.
		st.ClickOverflow, err = r.pruneOldest(collections.ClickOverflow, "hour < {:before}", store.DBTime(cutoff))
		if err != nil {
			return st, err
		}
		// So do the daily counts of visitors sent on without a click (whole UTC days before it).
		st.InactiveRedirects, err = r.pruneOldest(collections.InactiveRedirects, "day < {:before}", store.DBTime(cutoff)[:10])
		if err != nil {
			return st, err
		}
	}
	before := store.DBTime(r.now().Add(-bookkeepingRetention))
	if st.StripeEvents, err = r.pruneOldest(collections.StripeEvents, "created < {:before}", before); err != nil {
		return st, err
	}
	if st.ProviderEvents, err = r.pruneOldest(collections.ProviderEvents, "created < {:before}", before); err != nil {
		return st, err
	}
	if st.WebhookDeliveries, err = r.pruneOldest(collections.WebhookDeliveries, "status != 'pending' AND updated < {:before}", before); err != nil {
		return st, err
	}
	st.StripeAttributions, err = r.pruneCustomerAttributions()
	return st, err
}

// expiredCustomerAttributions is the condition of a customer-wide Stripe attribution (no
// subscription) past its program's attribution window from the signup, plus a day as for
// clicks (the longest window of all when its program is unknown; its creation when it has no
// signup time): its click could no longer be credited (withKeptAttribution), and a referral
// without a subscription does not last for ever. A subscription's attribution stays: every
// renewal is credited with it.
const expiredCustomerAttributions = `subscription = '' AND IIF(attributed_at != '', attributed_at, created) < strftime('%Y-%m-%d %H:%M:%fZ', {:before}, '-' ||
	(1 + IFNULL((SELECT cookie_days FROM programs WHERE id = stripe_attributions.program), (SELECT IFNULL(MAX(cookie_days), 0) FROM programs))) || ' days')`

// pruneCustomerAttributions deletes the expired customer-wide Stripe attributions.
func (r *retention) pruneCustomerAttributions() (int64, error) {
	return r.pruneOldest(collections.StripeAttributions, expiredCustomerAttributions, store.DBTime(r.now()))
}

// clickCutoff is the creation time before which clicks can go: older than the configured
// retention and than every program's attribution window (so a sale can still be attributed
// to any click it could be credited to), or zero when clicks are kept.
func (r *retention) clickCutoff() (time.Time, error) {
	if r.clickDays <= 0 {
		return time.Time{}, nil
	}
	var cookieDays int
	if err := r.app.DB().NewQuery("SELECT IFNULL(MAX(cookie_days), 0) FROM programs").Row(&cookieDays); err != nil {
		return time.Time{}, fmt.Errorf("longest attribution window: %w", err)
	}
	return r.now().AddDate(0, 0, -max(r.clickDays, cookieDays+1)), nil
}

// expiredClicksDelete deletes one rowid range's expired clicks that no sale is attributed to
// (through the partial idx_conversions_click, whose condition it repeats).
const expiredClicksDelete = `DELETE FROM clicks WHERE rowid > {:last} AND rowid <= {:upto} AND created < {:cutoff}
	AND NOT EXISTS (SELECT 1 FROM conversions WHERE click = clicks.id AND click != '')`

// pruneClicks deletes clicks older than cutoff (clickCutoff), except those a sale is
// attributed to. The writer appends clicks in time order, so the old ones are the first
// rowids: the job walks rowid ranges from the start and stops at the first range with nothing
// old, without reading the rest of the table.
func (r *retention) pruneClicks(cutoff time.Time) (int64, error) {
	params := dbx.Params{"cutoff": store.DBTime(cutoff), "chunk": retentionChunk}
	var total int64
	for last := int64(0); ; {
		var span struct {
			Upto int64 `db:"upto"`
			Old  int64 `db:"old"`
		}
		params["last"] = last
		err := r.app.DB().NewQuery(`SELECT IFNULL(MAX(rowid), 0) AS upto, IFNULL(SUM(created < {:cutoff}), 0) AS old
			FROM (SELECT rowid, created FROM clicks WHERE rowid > {:last} ORDER BY rowid LIMIT {:chunk})`).Bind(params).One(&span)
		if err != nil {
			return total, fmt.Errorf("read clicks after rowid %d: %w", last, err)
		}
		if span.Old == 0 {
			return total, nil
		}
		params["upto"] = span.Upto
		res, err := r.app.DB().NewQuery(expiredClicksDelete).Bind(params).Execute()
		if err != nil {
			return total, fmt.Errorf("delete clicks up to rowid %d: %w", span.Upto, err)
		}
		n, _ := res.RowsAffected()
		total += n
		last = span.Upto
	}
}

// pruneOldest deletes the rows of table matching where (bound to before), oldest first, a
// chunk per transaction.
func (r *retention) pruneOldest(table, where, before string) (int64, error) {
	var total int64
	for {
		res, err := r.app.DB().NewQuery("DELETE FROM " + table + " WHERE rowid IN (SELECT rowid FROM " + table +
			" WHERE " + where + " ORDER BY rowid LIMIT {:chunk})").
			Bind(dbx.Params{"before": before, "chunk": retentionChunk}).Execute()
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", table, err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < retentionChunk {
			return total, nil
		}
	}
}
