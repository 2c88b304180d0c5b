package hooks

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Click floods cannot fill the disk. One IP may store PBA_CLICK_IP_CEILING click rows an hour
// (clickpolicy.IPCeiling decides, in newClick); past that, its flagged clicks (never credited,
// never in stats_daily) go through the writer like any click, in the same batch transaction,
// but only add to a click_overflow row per hour, IP hash, program, affiliate, link and flag.
// So the count is as durable and exact as the clicks are, and stats_daily does not change.
// /r/ still sends the visitor on (without a click id or cookie: there is no click to name);
// POST /api/pba/clicks answers 429.

// overflowKey is one click_overflow row.
type overflowKey struct{ hour, ipHash, program, affiliate, link, flag string }

func (k overflowKey) compare(o overflowKey) int {
	return cmp.Or(cmp.Compare(k.hour, o.hour), cmp.Compare(k.ipHash, o.ipHash), cmp.Compare(k.program, o.program),
		cmp.Compare(k.affiliate, o.affiliate), cmp.Compare(k.link, o.link), cmp.Compare(k.flag, o.flag))
}

// clickOverflow is what a batch counts instead of storing, by click_overflow row.
type clickOverflow map[overflowKey]int64

// add counts r when it is a flagged click past its ceiling, and reports whether it did (the
// batch then stores nothing else of it).
func (o *clickOverflow) add(r *clickRow) bool {
	if !r.Overflow || r.Flag == "" {
		return false
	}
	if *o == nil {
		*o = clickOverflow{}
	}
	hour := store.DBTime(r.Created.UTC().Truncate(time.Hour))
	// Counted by network, as the ceiling counts: an IPv6 flood rotating addresses in its /64
	// adds to one row, not a row per address.
	(*o)[overflowKey{hour, cmp.Or(r.NetworkHash, r.IPHash), r.ProgramID, r.AffiliateID, r.LinkID, r.Flag}]++
	return true
}

// overflowUpsert adds to one click_overflow row, created when missing.
const overflowUpsert = `INSERT INTO click_overflow (id, hour, ip_hash, program, affiliate, link, flag, clicks, updated)
	VALUES ({:id}, {:hour}, {:ip}, {:program}, {:affiliate}, {:link}, {:flag}, {:n}, {:now})
	ON CONFLICT (hour, ip_hash, program, affiliate, link, flag) DO UPDATE SET clicks = clicks + excluded.clicks,
		updated = excluded.updated`

// write upserts the counts inside tx, in the order of the unique index. A flood from one IP
// makes one row a batch, so the statement is not prepared ahead.
func (o clickOverflow) write(tx core.App) error {
	if len(o) == 0 {
		return nil
	}
	now := store.DBTime(time.Now())
	for _, k := range slices.SortedFunc(maps.Keys(o), overflowKey.compare) {
		_, err := tx.DB().NewQuery(overflowUpsert).Bind(dbx.Params{"id": store.NewID(), "hour": k.hour, "ip": k.ipHash,
			"program": k.program, "affiliate": k.affiliate, "link": k.link, "flag": k.flag, "n": o[k], "now": now}).Execute()
		if err != nil {
			return fmt.Errorf("upsert click_overflow %v: %w", k, err)
		}
	}
	return nil
}

// OverCeiling answers POST /api/pba/clicks for a click counted past its IP's ceiling: 429
// until the hour ends. It is written as an answer, not returned as an error, so PocketBase's
// activity log does not keep a line (with the flooder's user agent and referrer) per click.
func OverCeiling(e *core.RequestEvent, at time.Time) error {
	retry := clickpolicy.UntilNextHour(at)
	e.Response.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	return e.JSON(http.StatusTooManyRequests, map[string]any{
		"status":  http.StatusTooManyRequests,
		"message": "Too many clicks from this address this hour; they are counted, not recorded. Retry after the hour.",
		"data":    map[string]any{},
	})
}
