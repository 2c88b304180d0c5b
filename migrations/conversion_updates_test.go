package migrations

import (
	"testing"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/tests"
)

// Migration 1795479700: sales marked refunded with less than their amount refunded (an admin's
// status edit the engine never acted on) are refunded in full, refunds above the amount are
// capped, and each correction leaves a row in the sale's history.
func TestConversionUpdatesRefundsMarkedSales(t *testing.T) {
	app, err := tests.NewTestApp(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Cleanup()
	if err := conversionUpdatesDown(app); err != nil {
		t.Fatal(err)
	}
	for _, row := range []dbx.Params{
		{"id": "marked000000001", "status": "refunded", "amount": 5000, "refunded_amount": 0},
		{"id": "partial00000001", "status": "approved", "amount": 5000, "refunded_amount": 2000},
		{"id": "overrefunded001", "status": "refunded", "amount": 5000, "refunded_amount": 6000},
		{"id": "refunded0000001", "status": "refunded", "amount": 5000, "refunded_amount": 5000},
	} {
		row["affiliate"], row["program"], row["currency"], row["source"], row["external_id"] = "a", "p", "usd", "api", row["id"]
		if _, err := app.DB().Insert("conversions", row).Execute(); err != nil {
			t.Fatal(err)
		}
	}
	if err := conversionUpdatesUp(app); err != nil {
		t.Fatal(err)
	}
	var got []struct {
		ID       string `db:"id"`
		Refunded int    `db:"refunded_amount"`
		Events   int    `db:"events"`
	}
	err = app.DB().NewQuery(`SELECT id, refunded_amount, (SELECT COUNT(*) FROM conversion_events e WHERE e.conversion = c.id
		AND e.door = 'system' AND e.refunded_after = c.amount) AS events FROM conversions c ORDER BY id`).All(&got)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{"marked000000001": {5000, 1}, "partial00000001": {2000, 0}, "overrefunded001": {5000, 1}, "refunded0000001": {5000, 0}}
	for _, g := range got {
		if w := want[g.ID]; g.Refunded != w[0] || g.Events != w[1] {
			t.Errorf("%s: refunded %d with %d history rows, want %d with %d", g.ID, g.Refunded, g.Events, w[0], w[1])
		}
	}
}
