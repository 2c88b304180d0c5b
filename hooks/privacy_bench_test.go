package hooks_test

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// BenchmarkPrivacyErase erases one affiliate per iteration from a database with
// PBA_BENCH_CLICKS click rows (default 200,000) of another affiliate: the sweep scans every
// table for the erased values, the clicks table being the largest. Reports ms per erasure and
// ns per click row scanned.
func BenchmarkPrivacyErase(b *testing.B) {
	clicks := 200_000
	if v, err := strconv.Atoi(os.Getenv("PBA_BENCH_CLICKS")); err == nil && v > 0 {
		clicks = v
	}
	app := fx.App(b)
	defer app.Cleanup()
	h := pbatest.Serve(b, app)
	_, err := app.DB().NewQuery(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {:n})
		INSERT INTO clicks (id, link, affiliate, program, visitor, ip_hash, user_agent, referrer, country, sub_id, "unique", flag, created)
		SELECT printf('bench%010d', i), '', {:a}, {:p}, printf('bench%010d', i), 'hash', 'Mozilla/5.0 (X11; Linux x86_64) Bench/1.0',
			'https://blog.example.org/post', 'DE', '', 0, 'bot', '2026-01-01 00:00:00.000Z' FROM n`).
		Bind(dbx.Params{"n": clicks, "a": fx.B.ID, "p": fx.ProgramP}).Execute()
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	for i := range ids {
		r, err := pbatest.Save(app, collections.Affiliates, map[string]any{"name": fmt.Sprintf("Bench Person %d", i), "email": fmt.Sprintf("bench-%d@example.org", i),
			"password": pbatest.Password, "passwordConfirm": pbatest.Password, "program": fx.ProgramP, "payout_email": fmt.Sprintf("pay-%d@example.org", i)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = r.Id
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res := pbatest.Request(h, http.MethodPost, "/api/pba/affiliates/"+ids[i]+"/erase", fx.Superuser.Token, `{"confirm":"`+ids[i]+`"}`)
		if res.Code != http.StatusOK {
			b.Fatalf("erase: %d %s", res.Code, res.Body)
		}
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp/1e6, "ms/erase")
	b.ReportMetric(perOp/float64(clicks), "ns/click-row")
}
