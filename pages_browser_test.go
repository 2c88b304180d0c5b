package main

import (
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	pagesAdminEmail    = "admin@example.com"
	pagesAdminPassword = "pbaffiliate-admin"
	demoPasswordForUI  = "demo-password-1"
)

// TestPagesInBrowser walks real headless Chromium through the affiliate portal (/portal/) and
// the back office (/admin/, backoffice_browser_test.go) served by the real binary with the demo
// data: sign-in, figures equal to the database's, link creation and its validation error,
// isolation from other affiliates, live updates on clicks, the pending status, signup, and the
// back office's views.
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
	mail := startFakeMail(t) // the server's mail goes to a fake Resend on loopback
	addr := freeAddr(t)
	startServer(t, fmt.Sprintf("serve --http=%s --dir=%s", addr, dir), addr)
	base := "http://" + addr
	db := openDB(t, dir)

	type person struct{ id, name, code, email, program string }
	find := func(code string) person {
		t.Helper()
		var p person
		if err := db.QueryRow(`SELECT id, name, code, email, program FROM affiliates WHERE code = ?`, code).Scan(&p.id, &p.name, &p.code, &p.email, &p.program); err != nil {
			t.Fatalf("demo affiliate %s: %v", code, err)
		}
		return p
	}
	ada, grace, katherine := find("ada-lovelace"), find("grace-hopper"), find("katherine-johnson")
	var graceLinks []string
	rows, err := db.Query(`SELECT code FROM links WHERE affiliate = ?`, grace.id)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		rows.Scan(&c)
		graceLinks = append(graceLinks, c)
	}
	rows.Close()
	if len(graceLinks) == 0 {
		t.Fatal("demo: grace-hopper has no links")
	}

	browser := startPagesBrowser(t, execPath)

	t.Run("portal approved affiliate", func(t *testing.T) {
		p := openTab(t, browser)
		p.navigate(base + "/portal/")
		p.waitFor("the sign-in form", `!document.getElementById("auth").hidden`)
		if focused := pageEval[string](p, `document.activeElement && document.activeElement.id`); focused != "si-email" {
			t.Errorf("focus on load: %q, want the email field", focused)
		}
		p.typeInto("#si-email", ada.email)
		p.typeInto("#si-password", demoPasswordForUI)
		p.click("#signin-form button[type=submit]")
		p.waitFor("the dashboard", `!document.getElementById("dash").hidden && document.getElementById("stat-clicks").dataset.value !== undefined && document.getElementById("bal-paid").dataset.value !== undefined`)
		p.waitFor("the links table", `document.querySelectorAll("#links-body code.link-url").length > 0`)

		// Code and referral link.
		if got := p.text("#ref-code"); got != ada.code {
			t.Errorf("code shown: %q, want %q", got, ada.code)
		}
		if got := pageEval[string](p, `document.getElementById("ref-link").value`); got != base+"/r/"+ada.code {
			t.Errorf("referral link: %q, want %q", got, base+"/r/"+ada.code)
		}
		if got := pageEval[string](p, `document.cookie`); !strings.Contains(got, "pba_self="+ada.id) {
			t.Errorf("document.cookie = %q: want pba_self set to the affiliate", got)
		}

		// The last 30 days, as the database has them.
		from := time.Now().UTC().AddDate(0, 0, -29).Format("2006-01-02")
		want := statsSince(t, db, ada.id, from)
		if want[0] == 0 && want[2] == 0 {
			t.Fatalf("demo data has no stats for %s since %s", ada.code, from)
		}
		checkFigures(t, p, want)

		// Balances by commission status.
		for _, status := range []string{"pending", "payable", "paid"} {
			var sum int64
			if err := db.QueryRow(`SELECT COALESCE(SUM(amount), 0) FROM commissions WHERE affiliate = ? AND status = ?`, ada.id, status).Scan(&sum); err != nil {
				t.Fatal(err)
			}
			if got := p.attr("#bal-"+status, "data-value"); got != fmt.Sprintf("%d usd", sum) {
				t.Errorf("balance %s: %q, want %d usd", status, got, sum)
			}
			if got := p.text("#bal-" + status); got != formatMinor(sum, "usd") {
				t.Errorf("balance %s shown as %q, want %q", status, got, formatMinor(sum, "usd"))
			}
		}
		var commissions int
		db.QueryRow(`SELECT COUNT(*) FROM commissions WHERE affiliate = ?`, ada.id).Scan(&commissions)
		if got := pageEval[int](p, `document.querySelectorAll("#commissions-body tr:not(:has(td.empty))").length`); got != min(commissions, 10) {
			t.Errorf("recent commissions: %d rows, want %d", got, min(commissions, 10))
		}

		// A destination outside the program's allowed domains: the API's error next to the field.
		linksBefore := countRows(t, db, `SELECT COUNT(*) FROM links WHERE affiliate = ?`, ada.id)
		p.typeInto("#ln-destination", "https://evil.test/landing")
		p.typeInto("#ln-label", "Not allowed")
		p.click("#link-form button[type=submit]")
		p.waitFor("the destination error", `document.querySelector('#link-form .field-error[data-for="destination"]').textContent !== ""`)
		if got := p.text(`#link-form .field-error[data-for="destination"]`); !strings.Contains(got, "example.com") {
			t.Errorf("destination error %q: want the allowed domains named", got)
		}
		if got := p.attr("#ln-destination", "aria-invalid"); got != "true" {
			t.Errorf("destination aria-invalid = %q, want true", got)
		}
		if got := countRows(t, db, `SELECT COUNT(*) FROM links WHERE affiliate = ?`, ada.id); got != linksBefore {
			t.Fatalf("links: %d, want %d (nothing stored)", got, linksBefore)
		}

		// A valid link.
		p.typeInto("#ln-destination", "https://example.com/spring-sale")
		p.typeInto("#ln-label", "Spring sale")
		p.click("#link-form button[type=submit]")
		p.waitFor("the new link in the table", `[...document.querySelectorAll("#links-body td")].some((td) => td.textContent === "Spring sale")`)
		var newCode string
		if err := db.QueryRow(`SELECT code FROM links WHERE affiliate = ? AND label = 'Spring sale' AND destination = 'https://example.com/spring-sale'`, ada.id).Scan(&newCode); err != nil {
			t.Fatalf("the new link is not in the database: %v", err)
		}
		if !pageEval[bool](p, `[...document.querySelectorAll("#links-body code.link-url")].some((c) => c.textContent === `+strconv.Quote(base+"/r/"+newCode)+`)`) {
			t.Errorf("the new link's tracking URL %s is not shown", base+"/r/"+newCode)
		}
		if got := p.text(`#link-form .field-error[data-for="destination"]`); got != "" {
			t.Errorf("destination error still shown: %q", got)
		}

		// Live: a click on another affiliate's link changes nothing here; one on ours counts.
		p.waitFor("the live subscription", `document.getElementById("live-dot").classList.contains("on")`)
		before := want[0]
		pageEval[bool](p, `window.pbaSamePage = true`)
		hitRedirect(t, base+"/r/"+grace.code)
		hitRedirect(t, base+"/r/"+newCode)
		p.waitFor("the live click", `document.getElementById("stat-clicks").dataset.value === "`+strconv.FormatInt(before+1, 10)+`"`)
		time.Sleep(1500 * time.Millisecond) // past the pba/live interval and the page's re-read of stats_daily
		if !pageEval[bool](p, `window.pbaSamePage === true`) {
			t.Error("the page reloaded: the live update must come without a reload")
		}
		want = statsSince(t, db, ada.id, from)
		if want[0] != before+1 {
			t.Fatalf("database clicks %d, want %d", want[0], before+1)
		}
		checkFigures(t, p, want)
		p.screenshots("portal")

		// Editing the new link: a destination off the program's domains is refused and changes nothing; a
		// valid one is saved, and the link leads there at once.
		p.click(`#links-body button[aria-label="Edit the link Spring sale"]`)
		p.waitFor("the edit form", `document.getElementById("link-form-h").textContent === "Edit link Spring sale" && !document.getElementById("link-cancel").hidden`)
		p.typeInto("#ln-destination", "https://evil.test/summer")
		p.click("#link-form button[type=submit]")
		p.waitFor("the destination error", `document.querySelector('#link-form .field-error[data-for="destination"]').textContent !== ""`)
		if n := countRows(t, db, `SELECT COUNT(*) FROM links WHERE code = ? AND destination = 'https://example.com/spring-sale'`, newCode); n != 1 {
			t.Fatal("a refused edit changed the link")
		}
		p.typeInto("#ln-destination", "https://example.com/summer")
		p.typeInto("#ln-label", "Summer sale")
		p.click("#link-form button[type=submit]")
		p.waitFor("the edited link in the table", `[...document.querySelectorAll("#links-body td")].some((td) => td.textContent === "Summer sale") && document.getElementById("link-cancel").hidden`)
		if n := countRows(t, db, `SELECT COUNT(*) FROM links WHERE code = ? AND label = 'Summer sale' AND destination = 'https://example.com/summer'`, newCode); n != 1 {
			t.Fatal("the edit is not in the database")
		}
		if loc := redirectLocation(t, base+"/r/"+newCode); !strings.HasPrefix(loc, "https://example.com/summer?pba_click=") {
			t.Errorf("the edited link leads to %q", loc)
		}
		if got := p.text("#link-form-h"); got != "New link" {
			t.Errorf("after saving, the form is %q, want back to New link", got)
		}

		// Payouts with Stripe: this server has no Stripe key, so the API's message is shown.
		p.click("#connect")
		p.waitFor("the onboarding answer", `document.getElementById("connect-msg").textContent !== ""`)
		if got := p.text("#connect-msg"); !strings.Contains(got, "not configured") {
			t.Errorf("connect message: %q, want the API's message that Stripe is not configured", got)
		}

		// Profile: the server's validation error next to the field, then a save.
		p.typeInto("#pf-timezone", "Mars/Olympus")
		p.click("#profile-form button[type=submit]")
		p.waitFor("the time zone error", `document.querySelector('#profile-form .field-error[data-for="timezone"]').textContent !== ""`)
		p.typeInto("#pf-timezone", "Europe/London")
		p.typeInto("#pf-payout-email", "ada.payouts@example.org")
		p.click("#profile-form button[type=submit]")
		p.waitFor("the saved profile", `document.getElementById("profile-msg").textContent === "Saved."`)
		var tz, payoutEmail string
		if err := db.QueryRow(`SELECT timezone, payout_email FROM affiliates WHERE id = ?`, ada.id).Scan(&tz, &payoutEmail); err != nil || tz != "Europe/London" || payoutEmail != "ada.payouts@example.org" {
			t.Errorf("profile in the database: timezone %q, payout_email %q, %v", tz, payoutEmail, err)
		}

		// Isolation: nothing of another affiliate anywhere on the page.
		page := pageEval[string](p, `document.documentElement.outerHTML + "\n" + document.body.innerText + "\n" + JSON.stringify(localStorage)`)
		for _, s := range append([]string{grace.id, grace.name, grace.code, grace.email, katherine.name, katherine.email}, graceLinks...) {
			if strings.Contains(page, s) {
				t.Errorf("the portal of %s shows %q of another affiliate", ada.code, s)
			}
		}
		if ex := p.exceptions(); len(ex) > 0 {
			t.Errorf("script errors: %v", ex)
		}

		// Sign out: back to the form, token gone.
		p.click("#sign-out")
		p.waitFor("the sign-in form after sign out", `!document.getElementById("auth").hidden && document.getElementById("dash").hidden`)
		if got := pageEval[string](p, `localStorage.getItem("pba_portal_auth") || ""`); got != "" {
			t.Errorf("token kept after sign out: %q", got)
		}
	})

	// The pending affiliate's tab stays open until the admin approves it (last subtest).
	var pendingTab *pageTab
	outer := t
	t.Run("portal pending affiliate", func(t *testing.T) {
		p := openTab(outer, browser)
		p.t = t
		pendingTab = p
		p.navigate(base + "/portal/")
		p.waitFor("the sign-in form", `!document.getElementById("auth").hidden`)
		p.typeInto("#si-email", katherine.email)
		p.typeInto("#si-password", demoPasswordForUI)
		p.click("#signin-form button[type=submit]")
		p.waitFor("the status", `!document.getElementById("status").hidden`)
		if got := p.text("#status-value"); got != "pending" {
			t.Errorf("status: %q, want pending", got)
		}
		if got := p.text("#status-h"); !strings.Contains(got, "pending review") {
			t.Errorf("status heading: %q", got)
		}
		if !pageEval[bool](p, `document.getElementById("dash").hidden`) {
			t.Error("a pending affiliate sees the dashboard")
		}
		// Reload: the stored token signs in again.
		p.navigate(base + "/portal/")
		p.waitFor("the status after reload", `!document.getElementById("status").hidden && document.getElementById("status-value").textContent === "pending"`)
	})

	t.Run("portal signup", func(t *testing.T) {
		p := openTab(t, browser)
		p.navigate(base + "/portal/")
		p.waitFor("the signup form", `!document.getElementById("auth").hidden`)
		p.typeInto("#su-name", "Mary Jackson")
		p.typeInto("#su-email", "mary@example.org")
		p.typeInto("#su-password", "a-long-password")
		p.typeInto("#su-password2", "a-different-one")
		p.click("#signup-form button[type=submit]")
		p.waitFor("the password confirmation error", `document.querySelector('#signup-form .field-error[data-for="passwordConfirm"]').textContent !== ""`)
		p.typeInto("#su-password2", "a-long-password")
		p.click("#signup-form button[type=submit]")
		p.waitFor("pending review", `!document.getElementById("status").hidden && document.getElementById("status-value").textContent === "pending"`)
		var status string
		if err := db.QueryRow(`SELECT status FROM affiliates WHERE email = 'mary@example.org'`).Scan(&status); err != nil || status != "pending" {
			t.Fatalf("signed-up affiliate: status %q, %v", status, err)
		}
	})

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
