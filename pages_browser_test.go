package main

import (
	"database/sql"
	"fmt"
	"strconv"
	"testing"
	"time"
)

const (
	pagesAdminEmail    = "admin@example.com"
	pagesAdminPassword = "pbaffiliate-admin"
	demoPasswordForUI  = "demo-password-1"
)

// TestPagesInBrowser walks real headless Chromium through the affiliate portal (/portal/,
// portal_browser_test.go) and the back office (/admin/, backoffice_browser_test.go) served by
// the real binary with the demo data.
func TestPagesInBrowser(t *testing.T) {
	execPath := chromiumPath(t)
	start := time.Now()

	dir := t.TempDir()
	if out, err := runProgram(t, "demo --dir="+dir).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	if out, err := runProgram(t, fmt.Sprintf("superuser upsert %s %s --dir=%s", pagesAdminEmail, pagesAdminPassword, dir)).CombinedOutput(); err != nil {
		t.Fatalf("superuser: %v\n%s", err, out)
	}
	mail := startFakeMail(t)                      // the server's mail goes to a fake Resend on loopback
	t.Setenv("PBA_WEBHOOK_ALLOW_PRIVATE", "true") // webhooks reach the tests' receivers on loopback
	addr := freeAddr(t)
	startServer(t, fmt.Sprintf("serve --http=%s --dir=%s", addr, dir), addr)
	base := "http://" + addr
	db := openDB(t, dir)

	find := func(code string) portalPerson {
		t.Helper()
		var p portalPerson
		if err := db.QueryRow(`SELECT id, name, code, email, program FROM affiliates WHERE code = ?`, code).Scan(&p.id, &p.name, &p.code, &p.email, &p.program); err != nil {
			t.Fatalf("demo affiliate %s: %v", code, err)
		}
		return p
	}
	w := &portalWorld{base: base, db: db, mail: mail, axe: axeSource(t),
		adminToken: authToken(t, base, "_superusers", pagesAdminEmail, pagesAdminPassword),
		ada:        find("ada-lovelace"), grace: find("grace-hopper"), katherine: find("katherine-johnson")}
	rows, err := db.Query(`SELECT code FROM links WHERE affiliate = ?`, w.grace.id)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		rows.Scan(&c)
		w.graceLinks = append(w.graceLinks, c)
	}
	rows.Close()
	if len(w.graceLinks) == 0 {
		t.Fatal("demo: grace-hopper has no links")
	}

	browser := startPagesBrowser(t, execPath)
	outer := t
	// Each portal subtest has a tab of its own; the pending applicant's stays open for the back office.
	pendingTab := portalSubtests(t, func(t *testing.T) *pageTab {
		p := openTab(outer, browser)
		p.t = t
		return p
	}, w)
	katherine := w.katherine

	backOfficeSubtests(t, func(t *testing.T) *pageTab {
		p := openTab(outer, browser) // one tab for every back office subtest
		p.t = t
		return p
	}, base, db, mail, katherine.id, katherine.code, pendingTab)
	t.Logf("pages walk-through took %v", time.Since(start).Round(time.Millisecond))
}

// statsSince sums an affiliate's stats_daily rows from the UTC day from on: clicks, unique
// clicks, conversions, revenue, commission.
func statsSince(t *testing.T, db *sql.DB, affiliate, from string) [5]int64 {
	t.Helper()
	var s [5]int64
	err := db.QueryRow(`SELECT COALESCE(SUM(clicks), 0), COALESCE(SUM(unique_clicks), 0), COALESCE(SUM(conversions), 0),
		COALESCE(SUM(revenue), 0), COALESCE(SUM(commission), 0) FROM stats_daily WHERE affiliate = ? AND day >= ?`, affiliate, from).
		Scan(&s[0], &s[1], &s[2], &s[3], &s[4])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkFigures compares the portal's 30-day figures with want (see statsSince).
func checkFigures(t *testing.T, p *pageTab, want [5]int64) {
	t.Helper()
	for i, id := range []string{"stat-clicks", "stat-unique", "stat-conversions", "stat-revenue", "stat-commission"} {
		if got := p.attr("#"+id, "data-value"); got != strconv.FormatInt(want[i], 10) {
			t.Errorf("%s: %q, want %d", id, got, want[i])
		}
		shown := groupThousands(strconv.FormatInt(want[i], 10))
		if i >= 3 {
			shown = formatMinor(want[i], "usd")
		}
		if got := p.text("#" + id); got != shown {
			t.Errorf("%s shown as %q, want %q", id, got, shown)
		}
	}
}

func countRows(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
