package hooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
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
