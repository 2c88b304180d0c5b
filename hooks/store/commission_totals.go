package store

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/pocketbase/pocketbase/core"
)

// commission_totals holds what each program owes by currency and status. SQLite triggers on
// commissions keep it through every update and deletion and every insertion but of sale and
// recurring commissions: those are counted here by their writers, once per batch, in the
// batch's transaction (migration 1795480100 explains why).

// TotalsKey is one commission_totals row.
type TotalsKey struct{ Program, Currency, Status string }

// TotalsDelta is what a batch adds to a row.
type TotalsDelta struct{ Amount, Count int64 }

const totalsUpsert = `INSERT INTO commission_totals (id, program, currency, status, amount, count) VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (program, currency, status) DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count`

// AddCommissionTotals adds the sale and recurring commissions a batch inserted to their rows,
// inside tx.
func AddCommissionTotals(tx core.App, deltas map[TotalsKey]TotalsDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	sqlTx, err := SQLTx(tx)
	if err != nil {
		return err
	}
	for _, k := range slices.SortedFunc(maps.Keys(deltas), func(a, b TotalsKey) int {
		return cmp.Or(cmp.Compare(a.Program, b.Program), cmp.Compare(a.Currency, b.Currency), cmp.Compare(a.Status, b.Status))
	}) {
		d := deltas[k]
		if _, err := sqlTx.Exec(totalsUpsert, NewID(), k.Program, k.Currency, k.Status, d.Amount, d.Count); err != nil {
			return fmt.Errorf("commission_totals %v: %w", k, err)
		}
	}
	return nil
}
