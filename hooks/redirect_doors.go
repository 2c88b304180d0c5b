package hooks

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// The doors of /r/{code}: no visitor is lost. A code that credits no click (its affiliate is
// not approved, its link archived or its program inactive) still sends the visitor to the
// program's own destination; an unknown code answers the 404 page, or the configured
// fallback URL. Neither ever redirects where the request says (no open redirect), sets a
// cookie or stores a click: the visitor is only counted, per day, in inactive_redirects.

// doorFlushEvery is how often the door counters are written: one small transaction a second
// at most, and none while nobody walks through a door.
const doorFlushEvery = time.Second

// InactiveReason is why a code of an affiliate with status, in a program active or not,
// through a link archived or not, credits no click; "" when it credits one.
func InactiveReason(status string, active, archived bool) string {
	switch {
	case !active:
		return collections.InactiveProgram
	case status == collections.AffiliateSuspended:
		return collections.InactiveAffiliateSuspended
	case status == collections.AffiliateRejected:
		return collections.InactiveAffiliateRejected
	case status != collections.AffiliateApproved:
		return collections.InactiveAffiliatePending
	case archived:
		return collections.InactiveLinkArchived
	}
	return ""
}

// inactiveDoor sends the visitor of an inactive code to its program's destination, ignoring
// any deep link, and counts it.
func (t *tracker) inactiveDoor(e *core.RequestEvent, target *linkTarget) error {
	location, err := target.Destination.Target("", "")
	if err != nil {
		t.app.Logger().Warn("program destination no longer allowed", "program", target.ProgramID, "error", err)
		return t.unknownDoor(e)
	}
	t.doors.add(target.Inactive, target.ProgramID, target.AffiliateID, target.LinkID)
	return sendOn(e, location)
}

// unknownDoor answers a code nothing resolves: the fallback URL when one is configured
// (counted), else the 404 page.
func (t *tracker) unknownDoor(e *core.RequestEvent) error {
	if t.cfg.FallbackURL == "" {
		return notFoundPage(e)
	}
	t.doors.add(collections.InactiveUnknownCode, "", "", "")
	return sendOn(e, t.cfg.FallbackURL)
}

// sendOn is a 302 to location that records nothing and sets no cookie.
func sendOn(e *core.RequestEvent, location string) error {
	h := e.Response.Header()
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer-when-downgrade")
	e.Response.WriteHeader(http.StatusFound)
	return nil
}

// validateFallbackURL accepts an empty value (no fallback) or an absolute http(s) URL with a
// host: it is the only address besides a program's own destination /r/ may send a visitor to.
func validateFallbackURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("PBA_FALLBACK_URL must be an absolute http:// or https:// URL, got %q", raw)
	}
	return nil
}

// doorKey is one inactive_redirects row.
type doorKey struct{ day, reason, program, affiliate, link string }

// doorCounter aggregates door visits in memory and writes them every doorFlushEvery in one
// transaction, so a door costs a map increment and never waits for the database. A crash
// loses at most the last second's counts; they are a measure, not money.
type doorCounter struct {
	app     core.App
	mu      sync.Mutex
	pending map[doorKey]int64
	loop    flushLoop
}

func newDoorCounter(app core.App) *doorCounter {
	return &doorCounter{app: app, pending: map[doorKey]int64{}}
}

func (d *doorCounter) add(reason, program, affiliate, link string) {
	k := doorKey{store.StatsDay(time.Now()), reason, program, affiliate, link}
	d.mu.Lock()
	d.pending[k]++
	d.mu.Unlock()
}

// start writes the counters every doorFlushEvery until stop, which writes the rest.
func (d *doorCounter) start() { d.loop.start(doorFlushEvery, d.flush) }

func (d *doorCounter) stop() { d.loop.stop() }

// doorUpsert adds to one inactive_redirects row, created when missing.
const doorUpsert = `INSERT INTO inactive_redirects (id, day, reason, program, affiliate, link, count, updated)
	VALUES ({:id}, {:day}, {:reason}, {:program}, {:affiliate}, {:link}, {:n}, {:now})
	ON CONFLICT (day, program, affiliate, link, reason) DO UPDATE SET count = count + excluded.count, updated = excluded.updated`

// flush writes what accumulated in one transaction; on failure the counts are kept for the
// next flush.
func (d *doorCounter) flush() {
	d.mu.Lock()
	if len(d.pending) == 0 {
		d.mu.Unlock()
		return
	}
	counts := d.pending
	d.pending = map[doorKey]int64{}
	d.mu.Unlock()
	now := store.DBTime(time.Now())
	err := d.app.RunInTransaction(func(tx core.App) error {
		for k, n := range counts {
			_, err := tx.DB().NewQuery(doorUpsert).Bind(dbx.Params{"id": store.NewID(), "day": k.day, "reason": k.reason,
				"program": k.program, "affiliate": k.affiliate, "link": k.link, "n": n, "now": now}).Execute()
			if err != nil {
				return fmt.Errorf("upsert inactive_redirects %v: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		d.app.Logger().Warn("inactive redirect counters not written, retrying", "rows", len(counts), "error", err)
		d.mu.Lock()
		for k, n := range d.pending {
			counts[k] += n
		}
		d.pending = counts
		d.mu.Unlock()
	}
}
