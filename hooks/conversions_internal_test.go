package hooks

import (
	"strings"
	"testing"

	"github.com/pocketbase/dbx"
)

// TestFirstClickReadsIndexes guards first-click attribution, which runs while the conversion
// holds the write connection: both of its reads must use an index, never scan the clicks table.
func TestFirstClickReadsIndexes(t *testing.T) {
	app := newWriterTestApp(t)
	for name, query := range map[string]string{"minting": firstClickMintingSQL, "later": firstClickLaterSQL} {
		rows, err := app.DB().NewQuery("EXPLAIN QUERY PLAN " + query).
			Bind(dbx.Params{"visitor": "v", "program": "p", "since": "2026-01-01"}).Rows()
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "; ")
		if strings.Contains(all, "SCAN") || !strings.Contains(all, "USING INDEX") {
			t.Errorf("%s: plan %q, want an index search and no scan", name, all)
		}
	}
}
