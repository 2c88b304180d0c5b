package hooks

import (
	"fmt"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// tierMove is one affiliate changing tier.
type tierMove struct {
	Affiliate string `json:"affiliate"`
	From      string `json:"from"`
	To        string `json:"to"`
	Reason    string `json:"reason"`
}

// evaluateTiers places every approved affiliate of every program with tiers on the tier its
// performance in period (a calendar month, "2026-10") earns: up or down. Each move is saved on
// the affiliate and recorded once per affiliate and period in tier_changes (who, from, to,
// why), so running it again for the same month changes nothing.
func evaluateTiers(app core.App, period, by string) ([]tierMove, error) {
	start, err := time.Parse("2006-01", period)
	if err != nil {
		return nil, fmt.Errorf("tier period %q: %w", period, err)
	}
	end := start.AddDate(0, 1, 0)
	var programIDs []string
	if err := app.DB().NewQuery("SELECT DISTINCT program FROM tiers").Column(&programIDs); err != nil {
		return nil, fmt.Errorf("programs with tiers: %w", err)
	}
	var moves []tierMove
	for _, programID := range programIDs {
		ctx := newRuleContext(app)
		tiers, err := ctx.programTiers(programID)
		if err != nil {
			return nil, err
		}
		var perf []struct {
			Affiliate string `db:"id"`
			Tier      string `db:"tier"`
			N         int    `db:"n"`
			Revenue   int64  `db:"revenue"`
		}
		err = app.DB().NewQuery(`SELECT a.id AS id, a.tier AS tier,
				(SELECT COUNT(*) FROM conversions c WHERE c.affiliate = a.id AND c.program = a.program AND c.status = 'approved'
					AND c.occurred_at >= {:from} AND c.occurred_at < {:to}) AS n,
				(SELECT IFNULL(SUM(c.amount - c.refunded_amount), 0) FROM conversions c WHERE c.affiliate = a.id AND c.program = a.program
					AND c.status = 'approved' AND c.occurred_at >= {:from} AND c.occurred_at < {:to}) AS revenue
			FROM affiliates a WHERE a.program = {:p} AND a.status = 'approved'`).
			Bind(dbx.Params{"p": programID, "from": store.DBTime(start), "to": store.DBTime(end)}).All(&perf)
		if err != nil {
			return nil, fmt.Errorf("tier performance: %w", err)
		}
		for _, p := range perf {
			target := ""
			reason := fmt.Sprintf("%d sales, %d in revenue in %s: no tier reached", p.N, p.Revenue, period)
			if t, ok := rules.TierFor(tiers, rules.Performance{Revenue: p.Revenue, Conversions: p.N}); ok {
				target = t.ID
				reason = fmt.Sprintf("%d sales, %d in revenue in %s: %s", p.N, p.Revenue, period, t.Name)
			}
			if target == p.Tier {
				continue
			}
			move := tierMove{Affiliate: p.Affiliate, From: p.Tier, To: target, Reason: reason}
			err := app.RunInTransaction(func(tx core.App) error {
				n, err := tx.CountRecords("tier_changes", dbx.HashExp{"affiliate": p.Affiliate, "period": period})
				if err != nil || n > 0 {
					return err // already moved for this period
				}
				a, err := tx.FindRecordById(collections.Affiliates, p.Affiliate)
				if err != nil {
					return err
				}
				a.Set(collections.AffiliateTier, target)
				if err := tx.Save(a); err != nil {
					return err
				}
				col, err := tx.FindCachedCollectionByNameOrId("tier_changes")
				if err != nil {
					return err
				}
				rec := core.NewRecord(col)
				rec.Load(map[string]any{"affiliate": p.Affiliate, "from_tier": p.Tier, "to_tier": target, "period": period,
					"reason": reason, "by": by})
				moves = append(moves, move)
				return tx.Save(rec)
			})
			if err != nil {
				return moves, fmt.Errorf("move affiliate %s: %w", p.Affiliate, err)
			}
		}
	}
	return moves, nil
}
