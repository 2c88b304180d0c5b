package hooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// trackerKey is where Register keeps the app's tracker in app.Store().
const trackerKey = "pba.tracker"

// IngestEdgeClicks stores clicks that redirect nodes answered (hooks/scaleout consumes them
// from the click stream) through the click writer, as if they had been answered here: this
// process decides their flags, ceiling and uniqueness, and their stats_daily and pba/live
// effects come with their rows. A click whose id is already stored is skipped, so a batch
// delivered again changes nothing; it returns once every new click is committed, and the
// caller acknowledges the batch only then. It returns how many clicks were new (one past its
// IP's ceiling is counted in click_overflow, not stored). The app must be serving.
func IngestEdgeClicks(ctx context.Context, app core.App, clicks []edgewire.Click) (int, error) {
	t, _ := app.Store().Get(trackerKey).(*tracker)
	if t == nil {
		return 0, errors.New("ingest edge clicks: tracking is not registered")
	}
	t.mu.Lock()
	started := t.started
	t.mu.Unlock()
	if !started {
		return 0, errors.New("ingest edge clicks: the click writer is not running")
	}
	if len(clicks) == 0 {
		return 0, nil
	}
	ids := make([]any, len(clicks))
	for i, c := range clicks {
		ids[i] = c.ID
	}
	var existing []string
	if err := app.DB().Select("id").From("clicks").Where(dbx.In("id", ids...)).Column(&existing); err != nil {
		return 0, fmt.Errorf("ingest edge clicks: stored ids: %w", err)
	}
	skip := make(map[string]bool, len(existing)+len(clicks))
	for _, id := range existing {
		skip[id] = true
	}
	// In id (time) order, in two waves: a click returning with a visitor id another click of
	// this delivery minted waits until that one is committed, so the unique window knows it
	// (on one box the cookie only leaves after the commit; an edge answers before ingestion).
	slices.SortFunc(clicks, func(a, b edgewire.Click) int { return strings.Compare(a.ID, b.ID) })
	minted := map[string]bool{}
	var first, second []clickRow
	for _, c := range clicks {
		if skip[c.ID] {
			continue
		}
		skip[c.ID] = true // the same id twice in one delivery is one click
		row := clickRow{ID: c.ID, LinkID: c.Link, AffiliateID: c.Affiliate, ProgramID: c.Program,
			Visitor: c.Visitor, NewVisitor: c.NewVisitor, IPHash: c.IPHash, NetworkHash: c.NetworkHash,
			UserAgent: c.UserAgent, Referrer: c.Referrer, Country: c.Country, SubID: c.SubID, Created: c.CreatedTime()}
		t.classify(&row, c.SelfCookie)
		if c.NewVisitor {
			minted[c.Visitor] = true
		}
		if !c.NewVisitor && minted[c.Visitor] {
			second = append(second, row)
		} else {
			first = append(first, row)
		}
	}
	for _, wave := range [][]clickRow{first, second} {
		if err := t.writer.recordAll(ctx, wave); err != nil {
			return 0, fmt.Errorf("ingest edge clicks: %w", err)
		}
	}
	return len(first) + len(second), nil
}

// edgeDoorBatchKeep is how long the primary remembers a counted door batch: longer than the
// click stream keeps it (scaleout's clickRetention, 7 days), so no delivery outlives its id.
const edgeDoorBatchKeep = 8 * 24 * time.Hour

// IngestEdgeDoors adds the door counts redirect nodes published to inactive_redirects, as the
// primary's own door counter writes them, in one transaction that also records each batch's
// id: a batch delivered again (its id already recorded) is skipped, so every door visit is
// counted once. It returns how many batches were new; the caller acknowledges them after.
func IngestEdgeDoors(ctx context.Context, app core.App, batches []edgewire.Doors) (int, error) {
	if len(batches) == 0 {
		return 0, nil
	}
	now := time.Now()
	added := 0
	err := app.RunInTransaction(func(tx core.App) error {
		for _, b := range batches {
			res, err := tx.DB().NewQuery(`INSERT INTO {{` + collections.EdgeDoorBatches + `}} (id, created) VALUES ({:id}, {:now}) ON CONFLICT (id) DO NOTHING`).
				WithContext(ctx).Bind(dbx.Params{"id": b.ID, "now": store.DBTime(now)}).Execute()
			if err != nil {
				return fmt.Errorf("record door batch %s: %w", b.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				continue // counted before
			}
			added++
			for _, c := range b.Counts {
				_, err := tx.DB().NewQuery(doorUpsert).WithContext(ctx).Bind(dbx.Params{"id": store.NewID(), "day": c.Day, "reason": c.Reason,
					"program": c.Program, "affiliate": c.Affiliate, "link": c.Link, "n": c.N, "now": store.DBTime(now)}).Execute()
				if err != nil {
					return fmt.Errorf("upsert inactive_redirects %+v: %w", c, err)
				}
			}
		}
		_, err := tx.DB().NewQuery(`DELETE FROM {{` + collections.EdgeDoorBatches + `}} WHERE created < {:before}`).
			WithContext(ctx).Bind(dbx.Params{"before": store.DBTime(now.Add(-edgeDoorBatchKeep))}).Execute()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("ingest edge doors: %w", err)
	}
	return added, nil
}
