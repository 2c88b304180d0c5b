package hooks

import (
	"fmt"
	"net/http"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
)

// ledgerReport is the answer of a ledger check: ok when problems is empty.
type ledgerReport struct {
	OK       bool            `json:"ok"`
	Problems []string        `json:"problems"`
	Balances []store.Balance `json:"balances"`
}

// checkLedger verifies the invariant of docs/ledger.md for one affiliate ("" = all): the non-void
// commissions split exactly into pending, payable and paid; every paid commission belongs to
// exactly one paid payout; every live payout's amount is the sum of its commissions in its
// currency; amounts have the sign of their kind.
func checkLedger(app core.App, affiliate string) (ledgerReport, error) {
	rep := ledgerReport{Problems: []string{}, Balances: []store.Balance{}}
	scope, params := "", dbx.Params{"a": affiliate}
	if affiliate != "" {
		scope = " AND c.affiliate = {:a}"
	}
	balances, err := store.Balances(app.DB(), affiliate)
	if err != nil {
		return rep, fmt.Errorf("ledger: %w", err)
	}
	rep.Balances = balances
	for _, b := range rep.Balances {
		if b.Pending+b.Payable+b.Paid != b.Total {
			rep.Problems = append(rep.Problems, fmt.Sprintf("affiliate %s %s: pending %d + payable %d + paid %d != total %d",
				b.Affiliate, b.Currency, b.Pending, b.Payable, b.Paid, b.Total))
		}
	}

	checks := []struct {
		what  string
		query string
	}{
		{"paid commission without a paid payout", `SELECT c.id FROM commissions c LEFT JOIN payouts p ON p.id = c.payout
			WHERE c.status = 'paid' AND (p.id IS NULL OR p.status != 'paid')` + scope},
		{"payout whose amount is not the sum of its commissions", `SELECT p.id FROM payouts p
			WHERE p.status IN ('pending', 'processing', 'paid') AND p.amount != IFNULL((SELECT SUM(c.amount) FROM commissions c
			WHERE c.payout = p.id AND c.status != 'void'), 0)` + scopeOn("p", affiliate)},
		{"commission in another currency than its payout", `SELECT c.id FROM commissions c JOIN payouts p ON p.id = c.payout
			WHERE c.currency != p.currency` + scope},
		{"commission paid by a payout of another affiliate", `SELECT c.id FROM commissions c JOIN payouts p ON p.id = c.payout
			WHERE c.affiliate != p.affiliate` + scope},
		{"amount with the wrong sign for its kind", `SELECT c.id FROM commissions c WHERE c.status != 'void' AND
			((c.kind IN ('sale', 'recurring', 'bonus') AND c.amount <= 0) OR (c.kind = 'clawback' AND c.amount >= 0))` + scope},
	}
	for _, ch := range checks {
		var ids []string
		if err := app.DB().NewQuery(ch.query).Bind(params).Column(&ids); err != nil {
			return rep, fmt.Errorf("ledger check %q: %w", ch.what, err)
		}
		for _, id := range ids {
			rep.Problems = append(rep.Problems, ch.what+": "+id)
		}
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

func scopeOn(alias, affiliate string) string {
	if affiliate == "" {
		return ""
	}
	return " AND " + alias + ".affiliate = {:a}"
}

// handleLedgerCheck answers GET /api/pba/ledger/check[?affiliate=] (superusers).
func handleLedgerCheck(re *core.RequestEvent) error {
	rep, err := checkLedger(re.App, re.Request.URL.Query().Get("affiliate"))
	if err != nil {
		return re.InternalServerError("", err)
	}
	return re.JSON(http.StatusOK, rep)
}

// handleRun answers POST /api/pba/commissions/run (superusers): one engine pass now.
func (e *commissionEngine) handleRun(re *core.RequestEvent) error {
	st, err := e.runNow()
	if err != nil {
		return re.InternalServerError("", err)
	}
	return re.JSON(http.StatusOK, st)
}

// handleEvaluateTiers answers POST /api/pba/tiers/evaluate[?period=YYYY-MM] (superusers;
// default the previous month).
func (e *commissionEngine) handleEvaluateTiers(re *core.RequestEvent) error {
	period := re.Request.URL.Query().Get("period")
	if period == "" {
		period = previousMonth(e.now())
	}
	if _, err := time.Parse("2006-01", period); err != nil {
		return re.BadRequestError("Invalid period.", fieldError("period", "invalid", "A month like 2026-10."))
	}
	by := "superuser"
	if re.Auth != nil {
		by = re.Auth.Email()
	}
	moves, err := evaluateTiers(re.App, period, by)
	if err != nil {
		return re.InternalServerError("", err)
	}
	return re.JSON(http.StatusOK, map[string]any{"period": period, "moves": moves})
}
