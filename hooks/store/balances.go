package store

import (
	"fmt"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Balance is one affiliate's commissions in one currency, by status: what the ledger check,
// GET /api/pba/balance and the mails' balance lines all read, from one query.
type Balance struct {
	Affiliate string `db:"affiliate" json:"affiliate"`
	Currency  string `db:"currency" json:"currency"`
	Pending   int64  `db:"pending" json:"pending"`
	Payable   int64  `db:"payable" json:"payable"`
	Paid      int64  `db:"paid" json:"paid"`
	// Total is every commission that is not void: the ledger holds when it equals
	// Pending + Payable + Paid.
	Total int64 `db:"total" json:"total"`
	// PendingN, PayableN and Live count the pending, payable and non-void commissions, so a
	// reader can tell "no commission" from commissions that sum to zero.
	PendingN int64 `db:"pending_n" json:"-"`
	PayableN int64 `db:"payable_n" json:"-"`
	Live     int64 `db:"live" json:"-"`
}

// Balances sums the commissions of affiliate ("" = every affiliate) by status, a row per
// affiliate and currency in that order.
func Balances(db dbx.Builder, affiliate string) ([]Balance, error) {
	where := ""
	if affiliate != "" {
		where = " WHERE affiliate = {:a}"
	}
	out := []Balance{}
	err := db.NewQuery(`SELECT affiliate, currency,
			SUM(CASE WHEN status = {:pending} THEN amount ELSE 0 END) AS pending,
			SUM(CASE WHEN status = {:payable} THEN amount ELSE 0 END) AS payable,
			SUM(CASE WHEN status = {:paid} THEN amount ELSE 0 END) AS paid,
			SUM(CASE WHEN status != {:void} THEN amount ELSE 0 END) AS total,
			SUM(status = {:pending}) AS pending_n, SUM(status = {:payable}) AS payable_n, SUM(status != {:void}) AS live
		FROM ` + collections.Commissions + where + ` GROUP BY affiliate, currency ORDER BY affiliate, currency`).
		Bind(dbx.Params{"a": affiliate, "pending": collections.CommissionPending, "payable": collections.CommissionPayable,
			"paid": collections.CommissionPaid, "void": collections.CommissionVoid}).All(&out)
	if err != nil {
		return nil, fmt.Errorf("balances of %q: %w", affiliate, err)
	}
	return out, nil
}
