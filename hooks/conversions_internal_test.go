package hooks

import (
	"strings"
	"testing"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestFirstClickReadsIndexes guards first-click attribution, which runs while the conversion
// holds the write connection: both of its reads must use an index, never scan the clicks table.
func TestFirstClickReadsIndexes(t *testing.T) {
	app := pbatest.TempApp(t)
	params := dbx.Params{"visitor": "v", "program": "p", "since": "2026-01-01"}
	for name, query := range map[string]string{"minting": firstClickMintingSQL, "later": firstClickLaterSQL} {
		checkIndexedPlan(t, app, name, query, params)
	}
}

// TestSaleCommissionReadsIndexes guards refunds and conversion edits: finding a sale's
// commissions must not scan every commission.
func TestSaleCommissionReadsIndexes(t *testing.T) {
	app := pbatest.TempApp(t)
	params := dbx.Params{"c": "conv", "prefix": "reject:conv:%"}
	for name, query := range map[string]string{"sale": saleCommissionSQL, "net": saleNetSQL, "entries": saleEntryCountSQL} {
		checkIndexedPlan(t, app, name, query, params)
	}
}

// checkIndexedPlan fails unless every table query reads is searched through an index.
func checkIndexedPlan(t *testing.T, app core.App, name, query string, params dbx.Params) {
	t.Helper()
	rows, err := app.DB().NewQuery("EXPLAIN QUERY PLAN " + query).Bind(params).Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	all := strings.Join(plan, "; ")
	scans := strings.Contains(strings.ReplaceAll(all, "SCAN CONSTANT ROW", ""), "SCAN") // a table scan, not SELECT (x) + (y)
	if scans || !strings.Contains(all, "USING INDEX") {
		t.Errorf("%s: plan %q, want an index search and no scan", name, all)
	}
}
