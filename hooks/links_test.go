package hooks_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// Deleting a link keeps everything it brought: its clicks and sales stay with the affiliate
// (without a link), and its stats_daily rows are added to the affiliate's rows without a link,
// also on a day that already has one.
func TestDeletingALinkKeepsItsFigures(t *testing.T) {
	env := newEngineEnv(t)
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	env.sale("affiliate-a", 5000, time.Now()) // by affiliate code: today's row without a link
	type totals struct {
		Clicks      int `db:"clicks"`
		Conversions int `db:"conversions"`
		Revenue     int `db:"revenue"`
		Commission  int `db:"commission"`
		Rows        int `db:"n"`
	}
	sum := func() (s totals) {
		t.Helper()
		err := env.app.DB().NewQuery(`SELECT SUM(clicks) AS clicks, SUM(conversions) AS conversions, SUM(revenue) AS revenue,
			SUM(commission) AS commission, COUNT(*) AS n FROM stats_daily WHERE affiliate = {:a}`).
			Bind(map[string]any{"a": fx.A.ID}).One(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := sum()
	clicks, _ := env.app.CountRecords(collections.Clicks)

	rec := pbatest.Request(env.handler, http.MethodDelete, "/api/collections/links/records/"+fx.RowsA.Link, fx.Superuser.Token, "")
	if rec.Code != 204 {
		t.Fatalf("delete link: %d %s", rec.Code, rec.Body)
	}

	after := sum()
	if after.Rows != before.Rows-1 || after.Clicks != before.Clicks || after.Conversions != before.Conversions ||
		after.Revenue != before.Revenue || after.Commission != before.Commission {
		t.Fatalf("stats_daily of the affiliate: before %+v, after %+v (one row fewer, same sums)", before, after)
	}
	if n, _ := env.app.CountRecords(collections.Clicks); n != clicks {
		t.Fatalf("%d clicks after deleting the link, want %d", n, clicks)
	}
	if c := mustFind(t, env.app, collections.Clicks, fx.RowsA.Click); c.GetString("link") != "" {
		t.Fatalf("click still on the deleted link: %v", c.FieldsData())
	}
	if c := mustFind(t, env.app, collections.Conversions, fx.RowsA.Conversion); c.GetString("link") != "" {
		t.Fatalf("sale still on the deleted link: %v", c.FieldsData())
	}
	rollupsConsistent(t, env.app, gaps, saleGaps, "after deleting the link")
	env.ledgerOK()
}
