package hooks

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// pbaRetention deletes expired clicks past every attribution window (more than one chunk of
// them) and the click_overflow counts of their hours, keeps the clicks sales are attributed
// to, and prunes old bookkeeping rows; a second run finds nothing.
func TestRetentionPrunesExpiredRows(t *testing.T) {
	app := pbatest.TempApp(t)
	now := time.Now().UTC()
	ago := func(days int) time.Time { return now.AddDate(0, 0, -days) }
	clicksAt := func(n int, at time.Time) []string {
		rows := make([]clickRow, n)
		ids := make([]string, n)
		for i := range rows {
			rows[i] = testClick(i)
			rows[i].Created = at
			ids[i] = rows[i].ID
		}
		if err := app.RunInTransaction(func(tx core.App) error { return writeClicks(tx, rows) }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	old := clicksAt(retentionChunk+500, ago(500))
	credited := old[7]
	mustExec(t, app, "INSERT INTO conversions (id, click, external_id, source, amount) VALUES ('conv00000000001', {:c}, 'o-1', 'api', 100)", dbx.Params{"c": credited})
	clicksAt(3, ago(150)) // expired under 90 days, kept under a 200-day attribution window
	clicksAt(5, ago(10))
	// click_overflow counts: more than a chunk of old hours, then 4 hours 150 days ago and 2 recent.
	overflowAt := func(hours int, at time.Time) {
		mustExec(t, app, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {:hours} - 1)
			INSERT INTO click_overflow (id, hour, ip_hash, program, affiliate, link, flag, clicks)
			SELECT lower(hex(randomblob(8))), strftime('%Y-%m-%d %H:00:00.000Z', {:at}, '-' || i || ' hours'), 'h', 'p', 'a', '', 'rate', 3 FROM n`,
			dbx.Params{"hours": hours, "at": store.DBTime(at)})
	}
	overflowAt(retentionChunk+100, ago(500))
	overflowAt(4, ago(150))
	overflowAt(2, ago(10))
	// inactive_redirects: one row a day for 300 days, from 400 days ago; those before the
	// cutoff day (201 days ago) go with the clicks.
	mustExec(t, app, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 299)
		INSERT INTO inactive_redirects (id, day, reason, program, affiliate, link, count, updated)
		SELECT lower(hex(randomblob(8))), date({:at}, '+' || i || ' days'), 'unknown_code', '', '', '', 2, {:at} FROM n`,
		dbx.Params{"at": store.DBTime(ago(400))})
	for _, q := range []string{
		"INSERT INTO stripe_events (id, event_id, type, created) VALUES ('se0000000000001', 'evt_old', 'x', {:old}), ('se0000000000002', 'evt_new', 'x', {:new})",
		"INSERT INTO provider_events (id, provider, event_id, type, created) VALUES ('pe0000000000001', 'paddle', 'evt_old', 'x', {:old}), ('pe0000000000002', 'shopify', 'evt_new', 'x', {:new})",
		"INSERT INTO provider_refunds (id, provider, sale, refund_id, amount, created) VALUES ('pr0000000000001', 'shopify', 'o1', 'r1', 100, {:old})",
		`INSERT INTO webhook_deliveries (id, affiliate, event, event_id, url, status, updated) VALUES
			('wd0000000000001', 'a', 'e', 'e1', 'https://x.test', 'sent', {:old}),
			('wd0000000000002', 'a', 'e', 'e2', 'https://x.test', 'pending', {:old}),
			('wd0000000000003', 'a', 'e', 'e3', 'https://x.test', 'failed', {:new})`,
	} {
		mustExec(t, app, q, dbx.Params{"old": store.DBTime(ago(100)), "new": store.DBTime(ago(1))})
	}

	count := func(q string) (n int) {
		t.Helper()
		if err := app.DB().NewQuery(q).Row(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	mustExec(t, app, "UPDATE programs SET cookie_days = 200", nil)
	cutoffDay := store.DBTime(ago(201))[:10]
	var oldDoors int64
	if err := app.DB().NewQuery("SELECT COUNT(*) FROM inactive_redirects WHERE day < {:d}").Bind(dbx.Params{"d": cutoffDay}).Row(&oldDoors); err != nil || oldDoors < 190 {
		t.Fatalf("inactive_redirects before the cutoff: %d %v", oldDoors, err)
	}
	r := &retention{app: app, clickDays: 90, now: time.Now}
	st, err := r.run()
	if err != nil {
		t.Fatal(err)
	}
	if want := (retentionStats{Clicks: int64(len(old) - 1), ClickOverflow: retentionChunk + 100, InactiveRedirects: oldDoors,
		StripeEvents: 1, ProviderEvents: 1, WebhookDeliveries: 1}); st != want {
		t.Fatalf("first run deleted %+v, want %+v", st, want)
	}
	if n := count("SELECT COUNT(*) FROM clicks"); n != 1+3+5 {
		t.Fatalf("%d clicks left, want 9 (the credited one, the 150-day-old within the window, the recent)", n)
	}
	if n := count("SELECT COUNT(*) FROM provider_refunds"); n != 1 {
		t.Fatal("a provider refund was deleted: it is part of its sale's refunded amount")
	}
	if n := count(fmt.Sprintf("SELECT COUNT(*) FROM clicks WHERE id = '%s'", credited)); n != 1 {
		t.Fatal("the click a sale is attributed to was deleted")
	}
	if n := count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'"); n != 1 {
		t.Fatal("a pending webhook delivery was deleted")
	}

	// A shorter attribution window lets the 150-day-old clicks go too; then nothing is left to do.
	mustExec(t, app, "UPDATE programs SET cookie_days = 60", nil)
	if st, err = r.run(); err != nil || st != (retentionStats{Clicks: 3, ClickOverflow: 4, InactiveRedirects: 300 - oldDoors}) {
		t.Fatalf("second run: %+v %v, want 3 clicks, 4 click_overflow and the %d other inactive_redirects rows", st, err, 300-oldDoors)
	}
	if n := count("SELECT COUNT(*) FROM click_overflow"); n != 2 {
		t.Fatalf("%d click_overflow rows left, want the 2 recent ones", n)
	}
	if st, err = r.run(); err != nil || st != (retentionStats{}) {
		t.Fatalf("third run: %+v %v, want nothing", st, err)
	}
	// Retention 0 keeps clicks forever.
	clicksAt(2, ago(1000))
	overflowAt(2, ago(1000))
	if st, err = (&retention{app: app, now: time.Now}).run(); err != nil || st.Clicks != 0 || st.ClickOverflow != 0 {
		t.Fatalf("retention off: %+v %v", st, err)
	}
}

// A customer-wide Stripe attribution (no subscription) credits the customer's first paid
// invoice only within its program's attribution window from the signup (the click faces the
// cookie window as usual), so pbaRetention deletes it past that window (the longest of every
// program's when it names none); a subscription's attribution serves every renewal and stays.
func TestRetentionExpiresCustomerAttributions(t *testing.T) {
	app := pbatest.TempApp(t)
	now := time.Now().UTC()
	dflt, err := app.FindFirstRecordByData("programs", "slug", "default")
	if err != nil {
		t.Fatal(err)
	}
	program, err := pbatest.Save(app, "programs", map[string]any{"name": "Long window", "slug": "long", "destination": "https://shop.example.org/",
		"currency": "usd", "commission_type": "percent", "commission_value": 1000, "cookie_days": 60, "active": true,
		"attribution": dflt.Get("attribution"), "payout_schedule": dflt.Get("payout_schedule"), "recurring": dflt.Get("recurring")})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "UPDATE programs SET cookie_days = 30 WHERE id != {:long}", dbx.Params{"long": program.Id})
	var short string
	if err := app.DB().NewQuery("SELECT id FROM programs WHERE id != {:long} LIMIT 1").Bind(dbx.Params{"long": program.Id}).Row(&short); err != nil {
		t.Fatal(err)
	}
	for i, row := range []struct {
		subscription, program string
		days                  int
	}{
		{"", short, 40},       // past its 30-day window: goes
		{"", short, 20},       // within it
		{"", program.Id, 40},  // within the 60-day window
		{"", "", 40},          // no program: within the longest window (60 days)
		{"", "", 70},          // past every window: goes
		{"", "gone", 70},      // a program deleted since: the longest window, past it: goes
		{"sub_1", short, 400}, // a subscription's: kept for its renewals
	} {
		mustExec(t, app, `INSERT INTO stripe_attributions (id, customer, subscription, click, program, attributed_at, created, updated)
			VALUES ({:id}, {:customer}, {:sub}, 'clk', {:program}, {:at}, {:at}, {:at})`, dbx.Params{"id": fmt.Sprintf("sa%013d", i),
			"customer": fmt.Sprintf("cus_%d", i), "sub": row.subscription, "program": row.program, "at": store.DBTime(now.AddDate(0, 0, -row.days))})
	}
	r := &retention{app: app, now: time.Now} // clicks kept forever: the attributions expire all the same
	st, err := r.run()
	if err != nil || st != (retentionStats{StripeAttributions: 3}) {
		t.Fatalf("first run: %+v %v, want 3 stripe_attributions", st, err)
	}
	var left []string
	if err := app.DB().Select("id").From("stripe_attributions").OrderBy("id").Column(&left); err != nil {
		t.Fatal(err)
	}
	if want := "sa0000000000001 sa0000000000002 sa0000000000003 sa0000000000006"; strings.Join(left, " ") != want {
		t.Fatalf("stripe_attributions left %v, want %s", left, want)
	}
	if st, err = r.run(); err != nil || st != (retentionStats{}) {
		t.Fatalf("second run: %+v %v, want nothing", st, err)
	}
}

// TestExpiredClicksDeleteReadsIndexes: the delete walks a rowid range and asks the partial
// click index of conversions, never scanning either table.
func TestExpiredClicksDeleteReadsIndexes(t *testing.T) {
	app := pbatest.TempApp(t)
	rows, err := app.DB().NewQuery("EXPLAIN QUERY PLAN " + expiredClicksDelete).
		Bind(dbx.Params{"last": 0, "upto": 10, "cutoff": "2026-01-01"}).Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan += detail + "; "
	}
	if !strings.Contains(plan, "SEARCH clicks USING INTEGER PRIMARY KEY") || !strings.Contains(plan, "idx_conversions_click") ||
		strings.Contains(plan, "SCAN") {
		t.Fatalf("plan %q", plan)
	}
}

func mustExec(t *testing.T, app core.App, q string, params dbx.Params) {
	t.Helper()
	if _, err := app.DB().NewQuery(q).Bind(params).Execute(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
