package hooks

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// visitorEraseSummary is the answer of POST /api/pba/visitors/{visitor}/erase and the summary
// of its privacy_requests row.
type visitorEraseSummary struct {
	// Clicks are the visitor's click rows made anonymous.
	Clicks int `json:"clicks"`
	// Conversions are sales whose click or attribution notes named one of those clicks.
	Conversions int `json:"conversions"`
}

// visitorRefChunk bounds the click ids one scan of the sales' attribution notes looks for.
const visitorRefChunk = 100

// handleVisitorErase is POST /api/pba/visitors/{visitor}/erase (superusers): the visitor id
// is the pba_vid cookie's value (or the visitor track.js reported).
func (p *privacy) handleVisitorErase(e *core.RequestEvent) error {
	visitor := strings.TrimSpace(e.Request.PathValue("visitor"))
	if visitor == "" || len(visitor) > 64 || !textcheck.Line(visitor) {
		return e.BadRequestError("Invalid visitor.", fieldError("visitor", "invalid_visitor", "A visitor id: the pba_vid cookie's value, at most 64 characters."))
	}
	s, err := p.eraseVisitor(visitor)
	if err != nil {
		return e.InternalServerError("", err)
	}
	if err := recordRequest(e.App, e, collections.PrivacyVisitorErase, visitor, s); err != nil {
		return e.InternalServerError("", err)
	}
	return e.JSON(http.StatusOK, s)
}

// erasedClick is one of the visitor's clicks: its id before and after, and the unique
// window's key.
type erasedClick struct {
	ID        string `db:"id"`
	Link      string `db:"link"`
	Affiliate string `db:"affiliate"`
	newID     string
}

// eraseVisitor makes a visitor's clicks anonymous. The rows stay, so stats_daily, its rollups
// and the consistency checks (store.ClickGaps counts unflagged rows per day, affiliate,
// program and link) keep agreeing with them, but each row gets a new random id and becomes
// its own visitor, and loses its hashed IP, user agent, referrer, country and sub id: nothing
// ties it to the visitor, its cookie (whose value was its first click's id) or its other
// clicks. Sales attributed to those clicks follow the new ids (relations to clicks anywhere in
// the schema, the Stripe attributions and the attribution notes in conversions.metadata), so
// the ledger is untouched. The unique window forgets the visitor's keys.
func (p *privacy) eraseVisitor(visitor string) (visitorEraseSummary, error) {
	var s visitorEraseSummary
	var clicks []erasedClick
	// The minting click by primary key, the later ones through idx_clicks_visitor.
	err := p.app.DB().NewQuery(`SELECT id, link, affiliate FROM {{clicks}} WHERE id = {:v} AND visitor = {:v}
		UNION ALL SELECT id, link, affiliate FROM {{clicks}} WHERE visitor = {:v} AND visitor != id`).
		Bind(dbx.Params{"v": visitor}).All(&clicks)
	if err != nil {
		return s, fmt.Errorf("clicks of visitor: %w", err)
	}
	if len(clicks) == 0 {
		return s, nil
	}
	refs, err := clickRefs(p.app)
	if err != nil {
		return s, err
	}
	// Sales whose attribution notes name a click ("click <id>: expired"): a scan of the
	// conversions on the read connection, outside the write transaction.
	noted := map[string]bool{}
	for start := 0; start < len(clicks); start += visitorRefChunk {
		var or []dbx.Expression
		for i, c := range clicks[start:min(start+visitorRefChunk, len(clicks))] {
			key := fmt.Sprintf("c%d", i)
			or = append(or, dbx.NewExp("instr(metadata, {:"+key+"}) > 0", dbx.Params{key: c.ID}))
		}
		var ids []string
		if err := p.app.DB().Select("id").From(collections.Conversions).Where(dbx.Or(or...)).Column(&ids); err != nil {
			return s, fmt.Errorf("sales noting the visitor's clicks: %w", err)
		}
		for _, id := range ids {
			noted[id] = true
		}
	}

	err = p.app.RunInTransaction(func(tx core.App) error {
		touched := map[string]bool{}
		for i := range clicks {
			c := &clicks[i]
			c.newID = store.NewID()
			_, err := tx.DB().NewQuery(`UPDATE {{clicks}} SET id = {:new}, visitor = {:new}, ip_hash = '', user_agent = '',
				referrer = '', country = '', sub_id = '' WHERE id = {:old}`).Bind(dbx.Params{"new": c.newID, "old": c.ID}).Execute()
			if err != nil {
				return fmt.Errorf("erase click %s: %w", c.ID, err)
			}
			for _, r := range refs {
				var ids []string
				if r.collection == collections.Conversions {
					if err := tx.DB().Select("id").From(r.collection).Where(dbx.HashExp{r.field: c.ID}).Column(&ids); err != nil {
						return err
					}
					for _, id := range ids {
						touched[id] = true
					}
				}
				if _, err := tx.DB().Update(r.collection, dbx.Params{r.field: c.newID}, dbx.HashExp{r.field: c.ID}).Execute(); err != nil {
					return fmt.Errorf("erase click %s in %s.%s: %w", c.ID, r.collection, r.field, err)
				}
			}
		}
		for id := range noted {
			var meta string
			if err := tx.DB().Select("metadata").From(collections.Conversions).Where(dbx.HashExp{"id": id}).Row(&meta); err != nil {
				return fmt.Errorf("sale %s: %w", id, err)
			}
			out := meta
			for _, c := range clicks {
				out = strings.ReplaceAll(out, c.ID, c.newID)
			}
			if out == meta {
				continue
			}
			if _, err := tx.DB().Update(collections.Conversions, dbx.Params{"metadata": out}, dbx.HashExp{"id": id}).Execute(); err != nil {
				return fmt.Errorf("sale %s: %w", id, err)
			}
			touched[id] = true
		}
		s.Conversions = len(touched)
		return nil
	})
	if err != nil {
		return visitorEraseSummary{}, fmt.Errorf("erase visitor: %w", err)
	}
	s.Clicks = len(clicks)
	if p.tracking != nil && p.tracking.unique != nil {
		now := time.Now().UnixMilli()
		for _, c := range clicks {
			p.tracking.unique.Forget(p.tracking.unique.Key(visitor, c.Link, c.Affiliate), now)
		}
	}
	return s, nil
}

// clickRef is a field that holds a click id.
type clickRef struct{ collection, field string }

// clickRefs lists the fields that hold click ids: every single relation to clicks in the
// schema (conversions.click), and stripe_attributions.click (text: the click of a trial).
func clickRefs(app core.App) ([]clickRef, error) {
	clicksCol, err := app.FindCachedCollectionByNameOrId(collections.Clicks)
	if err != nil {
		return nil, err
	}
	all, err := app.FindAllCollections()
	if err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	refs := []clickRef{{collections.StripeAttributions, collections.StripeAttributionClick}}
	for _, c := range all {
		for _, f := range c.Fields {
			if rel, ok := f.(*core.RelationField); ok && rel.CollectionId == clicksCol.Id && !rel.IsMultiple() && !c.IsView() {
				refs = append(refs, clickRef{c.Name, rel.Name})
			}
		}
	}
	return refs, nil
}
