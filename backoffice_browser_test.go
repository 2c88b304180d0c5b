package main

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The back office (/admin/, built from ui/) in headless Chromium against the real binary with
// the demo data. Its subtests run inside TestPagesInBrowser and share its server and browser,
// and one signed-in tab walks through the views in order.

// pageTabOpener opens the back office's tab for a subtest.
type pageTabOpener func(t *testing.T) *pageTab

// backOffice is what the back office subtests share.
type backOffice struct {
	base string
	db   *sql.DB
	p    *pageTab
	axe  string // axe-core's script, or "" when it is not installed (outside CI)
}

// axeSource reads axe-core from ui/node_modules (npm ci in ui/, which `make ui` and .ci/run
// do). Without it the accessibility checks are skipped on a developer machine and fail in CI.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("ui", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("axe-core is not installed (CI=true; run `make ui`): %v", err)
		}
		t.Logf("axe-core not installed (cd ui && npm ci): accessibility checks skipped")
		return ""
	}
	return string(b)
}

// checkAxe runs axe-core on the page as it is and fails on serious or critical violations.
func (b *backOffice) checkAxe(t *testing.T, view string) {
	t.Helper()
	if b.axe == "" {
		return
	}
	if !pageEval[bool](b.p, `typeof window.axe === "object"`) {
		pageEval[bool](b.p, b.axe+"\n;true")
	}
	raw := pageEval[string](b.p, `axe.run(document, {resultTypes: ["violations"]}).then((r) => JSON.stringify({passes: r.passes.length, violations: r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}))}))`)
	var res struct {
		Passes     int
		Violations []struct {
			ID, Impact, Help string
			Nodes            []string
		}
	}
	if err := json.Unmarshal([]byte(raw), &res); err != nil {
		t.Fatalf("axe answer %q: %v", raw, err)
	}
	if res.Passes == 0 {
		t.Errorf("axe on %s checked nothing", view)
	}
	t.Logf("axe on %s: %d rules passed, %d violated", view, res.Passes, len(res.Violations))
	for _, v := range res.Violations {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("axe on %s: %s (%s): %s at %v", view, v.ID, v.Impact, v.Help, v.Nodes)
		} else {
			t.Logf("axe on %s (minor): %s (%s): %s at %v", view, v.ID, v.Impact, v.Help, v.Nodes)
		}
	}
}

// watchCSP records the page's Content-Security-Policy violations in window.pbaCSP (inline
// styles or scripts the header's policy refused).
func watchCSP(p *pageTab) {
	pageEval[bool](p, `(() => { window.pbaCSP = window.pbaCSP || []; document.addEventListener("securitypolicyviolation",
		(e) => window.pbaCSP.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || ""))); return true; })()`)
}

// open goes to a view of the back office by its hash and waits for its heading.
func (b *backOffice) open(t *testing.T, hash, heading string) {
	t.Helper()
	b.p.t = t
	pageEval[bool](b.p, `(location.hash = `+strconv.Quote(hash)+`, true)`)
	b.p.waitFor("the view "+heading, `document.querySelector("main h1") && document.querySelector("main h1").textContent.trim().startsWith(`+strconv.Quote(heading)+`)`)
}

// fakeMail is a Resend API on loopback that accepts every email and keeps its subject and
// recipient: the server under test sends its mail there (RESEND_BASE_URL).
type fakeMail struct {
	mu   sync.Mutex
	n    int
	sent []struct{ To, Subject, HTML string }
}

func startFakeMail(t *testing.T) *fakeMail {
	t.Helper()
	f := &fakeMail{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var mails []struct {
			To      []string `json:"to"`
			Subject string   `json:"subject"`
			HTML    string   `json:"html"`
		}
		if r.URL.Path == "/emails/batch" {
			json.Unmarshal(body, &mails)
		} else {
			mails = mails[:0]
			var one struct {
				To      []string `json:"to"`
				Subject string   `json:"subject"`
				HTML    string   `json:"html"`
			}
			json.Unmarshal(body, &one)
			mails = append(mails, one)
		}
		f.mu.Lock()
		var ids []map[string]string
		for _, m := range mails {
			f.n++
			to := ""
			if len(m.To) > 0 {
				to = m.To[0]
			}
			f.sent = append(f.sent, struct{ To, Subject, HTML string }{to, m.Subject, m.HTML})
			ids = append(ids, map[string]string{"id": fmt.Sprintf("re_fake_%d", f.n)})
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/emails/batch" {
			json.NewEncoder(w).Encode(map[string]any{"data": ids})
		} else {
			json.NewEncoder(w).Encode(ids[0])
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("RESEND_API_KEY", "re_test_key")
	t.Setenv("RESEND_BASE_URL", srv.URL+"/")
	t.Setenv("PBA_MAIL_FROM", "Partners <partners@example.org>")
	return f
}

// subjects are the subjects of the mails sent to address.
func (f *fakeMail) subjects(address string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.sent {
		if m.To == address {
			out = append(out, m.Subject)
		}
	}
	return out
}

// getJSON GETs url with an auth token and decodes the JSON answer into v.
func getJSON(t *testing.T, url, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// sendJSONStatus sends body to url with an auth token, fails unless the answer is want and
// returns the answer's body.
func sendJSONStatus(t *testing.T, method, url, token, body string, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	return b
}

// press sends one key to the page's focused element, as a keyboard would (with Shift when
// back): Tab moves the focus, Enter follows a link or presses a button.
func press(t *testing.T, p *pageTab, key string, back bool) {
	t.Helper()
	var opts []chromedp.KeyOption
	if back {
		opts = append(opts, chromedp.KeyModifiers(chromedp.ModifierShift))
	}
	if err := chromedp.Do(p.ctx, chromedp.KeyEvent(key, opts...)); err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
}

// tabTo presses Tab (Shift+Tab when back) until the focused element matches selector, and
// fails unless the focus is shown there (:focus-visible with an outline).
func tabTo(t *testing.T, p *pageTab, selector string, back bool, most int) {
	t.Helper()
	at := `document.activeElement && document.activeElement.matches(` + strconv.Quote(selector) + `)`
	for i := 0; !pageEval[bool](p, at); i++ {
		if i == most {
			t.Fatalf("%d presses of Tab (back: %v) did not reach %s; the focus is on %s", most, back, selector,
				pageEval[string](p, `document.activeElement ? document.activeElement.outerHTML.slice(0, 200) : "nothing"`))
		}
		press(t, p, kb.Tab, back)
	}
	if shown := pageEval[string](p, `(() => { const e = document.activeElement, s = getComputedStyle(e); return e.matches(":focus-visible") + " " + s.outlineStyle + " " + s.outlineWidth; })()`); !strings.HasPrefix(shown, "true ") || strings.Contains(shown, " none ") || strings.HasSuffix(shown, " 0px") {
		t.Errorf("the focus on %s is not visible (:focus-visible, outline style and width: %s)", selector, shown)
	}
}

// waitDB polls the database until query (one integer) answers want.
func waitDB(t *testing.T, p *pageTab, db *sql.DB, what string, want int64, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got int64
		if err := db.QueryRow(query, args...).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d%s", what, got, want, p.diagnostics())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tap touches the middle of the element on the screen as a finger would (touch events; the
// browser makes the click), without scrolling it into view first.
func tap(t *testing.T, p *pageTab, selector string) {
	t.Helper()
	xy := pageEval[[]float64](p, `(() => { const r = document.querySelector(`+strconv.Quote(selector)+`).getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()`)
	point := []*input.TouchPoint{{X: xy[0], Y: xy[1]}}
	if _, err := chromedp.Call(p.ctx, input.DispatchTouchEvent, input.DispatchTouchEventParams{Type: input.DispatchTouchEventTypeTouchStart, TouchPoints: point}); err != nil {
		t.Fatalf("tap %s: %v", selector, err)
	}
	if _, err := chromedp.Call(p.ctx, input.DispatchTouchEvent, input.DispatchTouchEventParams{Type: input.DispatchTouchEventTypeTouchEnd, TouchPoints: []*input.TouchPoint{}}); err != nil {
		t.Fatalf("tap %s: %v", selector, err)
	}
}

// backOfficeSubtests walks the back office. katherine is a pending applicant whose portal is
// open in pendingTab (nil if that subtest did not run): approving her must reach it live.
func backOfficeSubtests(t *testing.T, browser pageTabOpener, base string, db *sql.DB, mail *fakeMail, katherineID, katherineCode string, pendingTab *pageTab) {
	b := &backOffice{base: base, db: db, axe: axeSource(t)}

	t.Run("back office sign in", func(t *testing.T) {
		b.p = browser(t)
		p := b.p
		// The overview's days are the admin's: make them UTC days, as stats_daily's.
		if _, err := chromedp.Call(p.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "UTC"}); err != nil {
			t.Fatal(err)
		}
		p.navigate(base + "/admin/")
		p.waitFor("the sign-in form", `document.getElementById("si-email") !== null`)
		watchCSP(p)
		b.checkAxe(t, "sign in")
		p.typeInto("#si-email", pagesAdminEmail)
		p.typeInto("#si-password", "wrong-password")
		p.click("form button[type=submit]")
		p.waitFor("the sign-in error", `document.getElementById("signin-err").textContent !== ""`)
		p.typeInto("#si-password", pagesAdminPassword)
		p.click("form button[type=submit]")
		p.waitFor("the back office", `document.getElementById("sign-out") !== null`)
		p.waitFor("the live feed", `document.querySelector("#live-state .dot.on") !== null`)
		// A reload keeps the session (the SDK's auth store, refreshed on load).
		p.navigate(base + "/admin/#/affiliates")
		watchCSP(p)
		p.waitFor("the back office after a reload", `document.getElementById("sign-out") !== null`)
		if got := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth") || "{}").record?.email || ""`); got != pagesAdminEmail {
			t.Errorf("stored session of %q, want %s", got, pagesAdminEmail)
		}
	})
	if b.p == nil || t.Failed() {
		return
	}

	t.Run("affiliates directory", func(t *testing.T) {
		p := b.p
		b.open(t, "#/affiliates", "Affiliates")
		var approved int64
		db.QueryRow(`SELECT COUNT(*) FROM affiliates WHERE status = 'approved'`).Scan(&approved)
		p.waitFor("the directory", `document.querySelectorAll("#affiliates-body tr[id^=aff-]").length > 0`)
		// Filter by status: exactly the approved affiliates, counted as the database has them.
		p.setValue("#f-status", "approved")
		p.waitFor("the status filter", `location.hash.includes("status=approved") && [...document.querySelectorAll("#affiliates-body .badge")].every((b) => b.textContent === "approved")`)
		p.waitFor("the count", `document.querySelector(".pager span").textContent.endsWith(" of `+strconv.FormatInt(approved, 10)+`")`)
		// Search by text.
		p.typeInto("#f-q", "grace")
		p.waitFor("the search", `document.querySelectorAll("#affiliates-body tr[id^=aff-]").length === 1 && document.getElementById("affiliates-body").textContent.includes("Grace Hopper")`)
		b.checkAxe(t, "affiliates")
		p.screenshots("backoffice-affiliates")
		p.setValue("#f-q", "")
		pageEval[bool](p, `(location.hash = "#/affiliates", true)`)
	})

	t.Run("approve an application", func(t *testing.T) {
		p := b.p
		b.open(t, "#/affiliates?tab=applications", "Affiliates")
		p.waitFor("the application", `document.getElementById("aff-`+katherineID+`") !== null`)
		// The portal's applicant (subtest "portal apply") with her answers to the program's questions.
		p.waitFor("the applicant's answers", `[...document.querySelectorAll("#affiliates-body tr")].some((r) => r.textContent.includes("mary@example.org") &&
			r.querySelector(".answers")?.textContent.includes("My newsletter on early computing") && r.querySelector(".answers")?.textContent.includes("https://mary.example.org/space"))`)
		b.checkAxe(t, "applications")
		p.screenshots("backoffice-applications")
		// On a phone: the application is a card whose status and Approve button are on the
		// screen, no sideways scrolling, and the approval is one tap at 390 px.
		if err := chromedp.Do(p.ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch)); err != nil {
			t.Fatal(err)
		}
		if w := pageEval[int](p, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("the applications overflow a 390 px screen: %d px wide", w)
		}
		if w := pageEval[string](p, `(() => { const w = document.querySelector("#affiliates-body").closest(".table-wrap"); return w.scrollWidth + " " + w.clientWidth; })()`); strings.Fields(w)[0] != strings.Fields(w)[1] {
			t.Errorf("the applications scroll sideways at 390 px (scroll and client width %s)", w)
		}
		row := "#aff-" + katherineID
		pageEval[bool](p, `(document.querySelector(`+strconv.Quote(row+` button[data-status="approved"]`)+`).scrollIntoView({block: "center"}), true)`)
		for _, sel := range []string{row + " .badge", row + ` button[data-status="approved"]`, row + ` button[data-status="rejected"]`} {
			box := pageEval[[]float64](p, `(() => { const r = document.querySelector(`+strconv.Quote(sel)+`).getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; })()`)
			if box[0] < 0 || box[1] > 390 || box[2] < 0 || box[3] > 844 {
				t.Errorf("%s is off a 390x844 screen: %v", sel, box)
			}
			if strings.Contains(sel, "button") && box[3]-box[2] < 44 {
				t.Errorf("%s is %.0f px tall: too small to tap (44 px)", sel, box[3]-box[2])
			}
		}
		tap(t, p, row+` button[data-status="approved"]`)
		waitDB(t, p, db, "approved "+katherineCode, 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND status = 'approved'`, katherineID)
		p.waitFor("the application to leave the queue", `document.getElementById("aff-`+katherineID+`") === null`)
		p.waitFor("the confirmation", `document.getElementById("msg").textContent.includes("approval email")`)
		if err := chromedp.Do(p.ctx, chromedp.ResetViewport()); err != nil {
			t.Fatal(err)
		}
		if pendingTab != nil {
			pendingTab.t = t
			pendingTab.waitFor("the approved applicant's portal", `document.getElementById("ref-code")?.textContent === "`+katherineCode+`"`)
		}
		// Bulk: every other waiting application at once.
		var waiting int64
		db.QueryRow(`SELECT COUNT(*) FROM affiliates WHERE status = 'pending'`).Scan(&waiting)
		if waiting == 0 {
			t.Fatal("the test needs another pending application (the portal signup subtest makes one)")
		}
		p.waitFor("the remaining applications", `document.querySelectorAll("#affiliates-body tr[id^=aff-]").length === `+strconv.FormatInt(waiting, 10))
		p.click(`th input[type=checkbox]`)
		p.click("#bulk-approve")
		waitDB(t, p, db, "pending affiliates after the bulk approval", 0, `SELECT COUNT(*) FROM affiliates WHERE status = 'pending'`)
		p.waitFor("the empty queue", `document.querySelector("#affiliates-body td.empty") !== null`)
	})

	t.Run("affiliate page", func(t *testing.T) {
		p := b.p
		var id, name string
		db.QueryRow(`SELECT id, name FROM affiliates WHERE code = 'ada-lovelace'`).Scan(&id, &name)
		b.open(t, "#/affiliates/"+id, name)
		from := time.Now().UTC().AddDate(0, 0, -29).Format("2006-01-02")
		want := statsSince(t, db, id, from)
		p.waitFor("the figures", `document.getElementById("af-clicks").textContent === `+strconv.Quote(groupThousands(strconv.FormatInt(want[0], 10))))
		p.waitFor("the chart", `document.querySelector(".chart canvas") !== null`)
		// A commission override typed as a percent is stored in basis points.
		p.typeInto("#af-override", "12.5%")
		p.typeInto("#af-tags", "newsletter, vip")
		p.click(`#affiliate-form button[type=submit]`)
		waitDB(t, p, db, "ada's commission_override", 1250, `SELECT commission_override FROM affiliates WHERE id = ?`, id)
		p.waitFor("the saved form", `document.getElementById("msg").textContent === "Saved `+name+`."`)
		var tags string
		db.QueryRow(`SELECT tags FROM affiliates WHERE id = ?`, id).Scan(&tags)
		if tags != `["newsletter","vip"]` {
			t.Errorf("tags stored as %s", tags)
		}
		p.typeInto("#af-override", "12.555")
		p.click(`#affiliate-form button[type=submit]`)
		p.waitFor("the override error", `document.getElementById("af-override-err").textContent.includes("two decimals")`)
		b.checkAxe(t, "affiliate page")
		p.screenshots("backoffice-affiliate")
		// Suspend, with the confirmation saying what follows, then reinstate.
		p.click(`#status-actions button[data-status="suspended"]`)
		p.click("#confirm-status")
		waitDB(t, p, db, "ada suspended", 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND status = 'suspended'`, id)
		p.click(`#status-actions button[data-status="approved"]`)
		p.click("#confirm-status")
		waitDB(t, p, db, "ada reinstated", 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND status = 'approved'`, id)
		p.waitFor("the page after reinstating", `document.querySelector('#status-actions button[data-status="suspended"]') !== null`)
		p.setValue("#af-override", "")
		p.click(`#affiliate-form button[type=submit]`)
		waitDB(t, p, db, "ada's override cleared", 0, `SELECT commission_override FROM affiliates WHERE id = ?`, id)

		// An affiliate with no money yet (the applicant approved above): the money axis reads
		// whole cents up to 1.00, not 0.01, 0.01, 0, 0 (fractions of a cent rounded).
		if katherineID == "" {
			return
		}
		var money int64
		db.QueryRow(`SELECT COUNT(*) FROM commissions WHERE affiliate = ?`, katherineID).Scan(&money)
		if money != 0 {
			t.Fatalf("the applicant has %d commissions; the check needs an affiliate with none", money)
		}
		var katherine string
		db.QueryRow(`SELECT name FROM affiliates WHERE id = ?`, katherineID).Scan(&katherine)
		b.open(t, "#/affiliates/"+katherineID, katherine)
		p.waitFor("the chart's money axis", `!!document.querySelector(".chart")?.dataset.moneyTicks`)
		ticks := strings.Split(pageEval[string](p, `document.querySelector(".chart").dataset.moneyTicks`), "|")
		seen := map[string]bool{}
		for _, tick := range ticks {
			if seen[tick] {
				t.Errorf("the money axis repeats %q: %v", tick, ticks)
			}
			seen[tick] = true
		}
		if len(ticks) < 2 || ticks[0] != "0" || ticks[len(ticks)-1] != "1" {
			t.Errorf("the money axis of an affiliate with no money: %v, want 0 … 1", ticks)
		}
		p.screenshots("backoffice-affiliate-no-money")
	})

	t.Run("programs in human units", func(t *testing.T) {
		p := b.p
		b.open(t, "#/programs", "Programs")
		p.waitFor("the programs", `document.querySelectorAll("#programs-body tr[id^=program-]").length > 0`)
		p.waitFor("the default program's terms", `document.getElementById("programs-body").textContent.includes("20% of each sale")`)
		b.checkAxe(t, "programs")
		p.click("#new-program")
		b.open(t, "#/programs/new", "New program")
		p.typeInto("#pg-name", "Spring partners")
		p.typeInto("#pg-destination", "https://acme.io/spring")
		p.typeInto("#pg-domain", "not a domain")
		p.click(`#pg-domain + button`)
		p.waitFor("the domain error", `document.getElementById("pg-domains-err").textContent.includes("is not a domain")`)
		p.typeInto("#pg-domain", "https://Acme.io/")
		p.click(`#pg-domain + button`)
		p.waitFor("the domain in the list", `document.getElementById("pg-domains").textContent.includes("acme.io")`)
		p.typeInto("#pg-commission", "12.5%")
		p.typeInto("#pg-min", "$50")
		p.click(`input[name=preset][value=twice]`)
		p.setValue("#pg-zone", "Europe/Berlin")
		p.waitFor("the next three runs", `document.querySelectorAll("#pg-runs li").length === 3 && document.querySelector("#pg-runs").previousElementSibling.textContent.includes("Europe/Berlin")`)
		b.checkAxe(t, "new program")
		p.screenshots("backoffice-program-new")
		p.click("#program-save")
		p.waitFor("the saved program", `location.hash.startsWith("#/programs/") && !location.hash.endsWith("/new") && document.getElementById("integration-h") !== null`)

		// Read back through the records API as the superuser.
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		var got struct {
			Items []struct {
				ID              string   `json:"id"`
				CommissionValue int      `json:"commission_value"`
				CommissionType  string   `json:"commission_type"`
				MinPayout       int      `json:"min_payout"`
				AllowedDomains  []string `json:"allowed_domains"`
				PayoutSchedule  string   `json:"payout_schedule"`
				PostbackSecret  string   `json:"postback_secret"`
			} `json:"items"`
		}
		getJSON(t, base+`/api/collections/programs/records?filter=`+url.QueryEscape(`name="Spring partners"`), token, &got)
		if len(got.Items) != 1 {
			t.Fatalf("programs named Spring partners: %d", len(got.Items))
		}
		pg := got.Items[0]
		if pg.CommissionType != "percent" || pg.CommissionValue != 1250 || pg.MinPayout != 5000 {
			t.Errorf("stored %s %d, min_payout %d; want percent 1250 bp and 5000", pg.CommissionType, pg.CommissionValue, pg.MinPayout)
		}
		if strings.Join(pg.AllowedDomains, ",") != "acme.io" || pg.PayoutSchedule != "CRON_TZ=Europe/Berlin 0 9 1,15 * *" {
			t.Errorf("stored domains %v, schedule %q", pg.AllowedDomains, pg.PayoutSchedule)
		}
		// The form shows the stored values back in human units.
		if v := pageEval[string](p, `document.getElementById("pg-commission").value + " " + document.getElementById("pg-min").value`); v != "12.5 50.00" {
			t.Errorf("form after saving shows %q, want 12.5 and 50.00", v)
		}
		// The secret is hidden until revealed.
		if strings.Contains(p.text("#pg-secret"), pg.PostbackSecret) {
			t.Error("the postback secret is shown before Reveal")
		}
		p.click(`.secret button[aria-pressed]`)
		p.waitFor("the revealed secret", `document.getElementById("pg-secret").textContent === `+strconv.Quote(pg.PostbackSecret))
		// Rotate it: a new secret is stored and shown, the old one is refused.
		p.click(`.secret button.danger`)
		p.click("#rotate-confirm")
		waitDB(t, p, db, "the rotated secret", 0, `SELECT COUNT(*) FROM programs WHERE id = ? AND postback_secret = ?`, pg.ID, pg.PostbackSecret)
		var rotated string
		db.QueryRow(`SELECT postback_secret FROM programs WHERE id = ?`, pg.ID).Scan(&rotated)
		p.waitFor("the new secret", `document.getElementById("pg-secret").textContent === `+strconv.Quote(rotated))
		sendJSONStatus(t, http.MethodPost, base+"/api/pba/conversions", "Bearer "+pg.PostbackSecret, `{"affiliate_code":"grace-hopper","external_id":"old-secret-1","amount":100}`, http.StatusUnauthorized)
		// A tier at 25%.
		p.click(`#tiers-h ~ .actions button`)
		p.typeInto(`#tiers-body tr:last-child input[aria-label="Tier name"]`, "Gold")
		p.typeInto(`#tiers-body tr:last-child input[aria-label="Monthly revenue from"]`, "1,000")
		p.typeInto(`#tiers-body tr:last-child input[aria-label="Rate"]`, "25%")
		p.click(`#tiers-body tr:last-child button`)
		waitDB(t, p, db, "the Gold tier", 1, `SELECT COUNT(*) FROM tiers WHERE program = ? AND name = 'Gold' AND commission_value = 2500 AND min_revenue = 100000`, pg.ID)
		// A bad edit: the server's error lands next to its field, nothing changes.
		p.typeInto("#pg-destination", "https://elsewhere.io/")
		p.click("#program-save")
		p.waitFor("the destination error", `document.getElementById("pg-destination-err").textContent !== ""`)
		waitDB(t, p, db, "unchanged destination", 1, `SELECT COUNT(*) FROM programs WHERE id = ? AND destination = 'https://acme.io/spring'`, pg.ID)
		b.checkAxe(t, "program")
		p.screenshots("backoffice-program")
		// A coupon in the default program for Grace, then switched off.
		var defaultProgram, grace string
		db.QueryRow(`SELECT program, id FROM affiliates WHERE code = 'grace-hopper'`).Scan(&defaultProgram, &grace)
		b.open(t, "#/programs/"+defaultProgram, "")
		p.waitFor("the coupons", `document.getElementById("coupons-h") !== null`)
		p.typeInto("#cp-code", "Spring25")
		p.typeInto("#cp-aff", "nobody-here")
		p.click(`#cp-code ~ * button[type=submit], form:has(#cp-code) button[type=submit]`)
		p.waitFor("the affiliate error", `document.getElementById("cp-aff-err").textContent !== ""`)
		p.typeInto("#cp-aff", "grace-hopper")
		p.click(`form:has(#cp-code) button[type=submit]`)
		waitDB(t, p, db, "the coupon", 1, `SELECT COUNT(*) FROM coupons WHERE program = ? AND code = 'spring25' AND affiliate = ? AND active = 1`, defaultProgram, grace)
		p.click(`button[aria-label="Deactivate spring25"]`)
		waitDB(t, p, db, "the coupon switched off", 1, `SELECT COUNT(*) FROM coupons WHERE code = 'spring25' AND active = 0`)
	})

	t.Run("sales decisions", func(t *testing.T) {
		p := b.p
		var saleID, order string
		if err := db.QueryRow(`SELECT id, external_id FROM conversions WHERE status = 'approved' ORDER BY occurred_at DESC LIMIT 1`).Scan(&saleID, &order); err != nil {
			t.Fatal(err)
		}
		netCommission := func() (net int64) {
			t.Helper()
			if err := db.QueryRow(`SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE conversion = ? AND status != 'void'`, saleID).Scan(&net); err != nil {
				t.Fatal(err)
			}
			return net
		}
		earned := netCommission()
		if earned <= 0 {
			t.Fatalf("demo sale %s earned %d: the test needs a sale with a commission", order, earned)
		}
		b.open(t, "#/sales?status=approved", "Sales")
		p.waitFor("the sale "+order, `document.getElementById("sale-`+saleID+`") !== null`)
		b.checkAxe(t, "sales")
		review := func() {
			t.Helper()
			p.waitFor("the sale "+order, `document.getElementById("sale-`+saleID+`") !== null`)
			if !pageEval[bool](p, `document.getElementById("panel-`+saleID+`") !== null`) {
				p.click("#sale-" + saleID + " button[aria-expanded]")
			}
			p.waitFor("the sale's panel", `document.getElementById("panel-`+saleID+`") !== null`)
		}
		// Reject with a reason: the unpaid commission is voided.
		review()
		p.click(`#panel-` + saleID + ` button[data-action="reject"]`)
		p.typeInto("#rj-reason", "order cancelled")
		p.click("#rj-submit")
		waitDB(t, p, db, "sale rejected", 1, `SELECT COUNT(*) FROM conversions WHERE id = ? AND status = 'rejected' AND reason = 'order cancelled'`, saleID)
		if got := netCommission(); got != 0 {
			t.Errorf("rejected sale keeps %d of commission, want 0 (was %d)", got, earned)
		}
		p.waitFor("the history row", `document.getElementById("history-`+saleID+`").textContent.includes("Back office: approved → rejected")`)
		// Approve it again: the commission comes back.
		p.click(`#panel-` + saleID + ` button[data-action="approve"]`)
		waitDB(t, p, db, "sale approved again", 1, `SELECT COUNT(*) FROM conversions WHERE id = ? AND status = 'approved'`, saleID)
		if got := netCommission(); got != earned {
			t.Errorf("approved-again sale earns %d, want %d", got, earned)
		}
		// A partial refund typed in major units, stored cumulative in minor units.
		p.waitFor("the refund button", `document.querySelector('#panel-`+saleID+` button[data-action="refund"]') !== null`)
		p.click(`#panel-` + saleID + ` button[data-action="refund"]`)
		p.typeInto("#rf-amount", "999999")
		p.click("#rf-submit")
		p.waitFor("the amount error", `document.getElementById("rf-amount-err").textContent !== ""`)
		p.typeInto("#rf-amount", "10")
		p.typeInto("#rf-reason", "one item returned")
		p.click("#rf-submit")
		waitDB(t, p, db, "partial refund", 1, `SELECT COUNT(*) FROM conversions WHERE id = ? AND status = 'approved' AND refunded_amount = 1000`, saleID)
		p.waitFor("the partial refund's history row", `document.getElementById("history-`+saleID+`").textContent.includes("Back office: approved → approved, refunded 10.00 ")`)
		p.screenshots("backoffice-sales")
		// The full refund: the same form, its amount the rest of the sale. The sale is refunded,
		// its unpaid commission goes to nothing on the engine's run, the history says so.
		var amount int64
		var currency string
		db.QueryRow(`SELECT amount, currency FROM conversions WHERE id = ?`, saleID).Scan(&amount, &currency)
		p.waitFor("the refund button", `document.querySelector('#panel-`+saleID+` button[data-action="refund"]') !== null`)
		p.click(`#panel-` + saleID + ` button[data-action="refund"]`)
		rest := fmt.Sprintf("%d.%02d", (amount-1000)/100, (amount-1000)%100)
		p.waitFor("the rest of the sale as the refund's amount", `document.getElementById("rf-amount").value === "`+rest+`"`)
		p.typeInto("#rf-reason", "customer returned everything")
		p.click("#rf-submit")
		waitDB(t, p, db, "full refund", 1, `SELECT COUNT(*) FROM conversions WHERE id = ? AND status = 'refunded' AND refunded_amount = ? AND reason = 'customer returned everything'`, saleID, amount)
		p.waitFor("the confirmation", `document.getElementById("msg").textContent.includes("(in full)")`)
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		sendJSONStatus(t, http.MethodPost, base+"/api/pba/commissions/run", token, `{}`, http.StatusOK)
		waitDB(t, p, db, "net commission of the refunded sale", 0, `SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE conversion = ? AND status != 'void'`, saleID)
		b.open(t, "#/sales?status=refunded", "Sales")
		review()
		whole := groupThousands(strconv.FormatInt(amount/100, 10)) + fmt.Sprintf(".%02d %s", amount%100, strings.ToUpper(currency))
		p.waitFor("the full refund's history row", `document.getElementById("history-`+saleID+`").textContent.includes("Back office: approved → refunded, refunded `+whole+`")`)
		if got := p.text(`#sale-` + saleID + ` .badge`); got != "refunded" {
			t.Errorf("the sale's status after the full refund: %q", got)
		}
		var events int64
		db.QueryRow(`SELECT COUNT(*) FROM conversion_events WHERE conversion = ? AND door = 'dashboard'`, saleID).Scan(&events)
		if events != 4 {
			t.Errorf("history rows of the back office's decisions: %d, want 4", events)
		}
		p.screenshots("backoffice-sales-refunded")
		// Filter by affiliate, typed as a code.
		var ada string
		var adaSales int64
		db.QueryRow(`SELECT id FROM affiliates WHERE code = 'ada-lovelace'`).Scan(&ada)
		db.QueryRow(`SELECT COUNT(*) FROM conversions WHERE affiliate = ?`, ada).Scan(&adaSales)
		b.open(t, "#/sales", "Sales")
		p.setValue("#s-affiliate", "ada-lovelace")
		p.waitFor("ada's sales", `location.hash.includes("affiliate=`+ada+`") && document.querySelector(".pager span").textContent.endsWith(" of `+strconv.FormatInt(adaSales, 10)+`")`)
		if !pageEval[bool](p, `[...document.querySelectorAll("#sales-body tr[id^=sale-] td:nth-child(2)")].every((td) => td.textContent === "Ada Lovelace")`) {
			t.Error("the affiliate filter shows another affiliate's sales")
		}
		// And by date: the sales of the last week, as the database counts them.
		weekAgo := time.Now().UTC().AddDate(0, 0, -6).Format("2006-01-02")
		var adaWeek int64
		db.QueryRow(`SELECT COUNT(*) FROM conversions WHERE affiliate = ? AND occurred_at >= ?`, ada, weekAgo+" 00:00:00.000Z").Scan(&adaWeek)
		p.setValue("#s-from", weekAgo)
		p.waitFor("ada's sales of the week", `location.hash.includes("from=`+weekAgo+`") && document.querySelector(".pager span").textContent.endsWith(" of `+strconv.FormatInt(adaWeek, 10)+`")`)
		p.setValue("#s-from", "")
		p.setValue("#s-affiliate", "nobody-here")
		p.waitFor("the affiliate error", `document.getElementById("s-affiliate-err").textContent !== ""`)
		// The ledger still balances.
		var check struct {
			OK       bool  `json:"ok"`
			Problems []any `json:"problems"`
		}
		getJSON(t, base+"/api/pba/ledger/check", token, &check)
		if !check.OK {
			t.Errorf("ledger check after the decisions: %v", check.Problems)
		}
	})

	t.Run("payouts preview run and mark paid", func(t *testing.T) {
		p := b.p
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		// Who the server would pay, and who not: the page must say the same.
		var preview struct {
			Programs []struct {
				Lines []struct{ Affiliate, Action, Reason string } `json:"lines"`
			} `json:"programs"`
		}
		getJSON(t, base+"/api/pba/payouts/preview", token, &preview)
		var grace, ada string // one paid, one carried forward below the minimum
		for _, r := range preview.Programs {
			for _, l := range r.Lines {
				if l.Action == "pay" && grace == "" {
					grace = l.Affiliate
				}
				if l.Action == "carry_forward" && ada == "" {
					ada = l.Affiliate
				}
			}
		}
		if grace == "" || ada == "" {
			t.Fatalf("the demo's payout preview needs a payout and a balance below the minimum: %+v", preview)
		}
		b.open(t, "#/payouts", "Payouts")
		p.waitFor("a payout in the preview", `[...document.querySelectorAll('#preview-body tr[data-affiliate="`+grace+`"] .badge')].some((b) => b.textContent === "pay")`)
		p.waitFor("a balance carried forward, with the reason", `document.querySelector('#preview-body tr[data-affiliate="`+ada+`"]').textContent.includes("below the minimum")`)
		b.checkAxe(t, "payouts")
		p.click("#run-now")
		p.click("#run-confirm")
		waitDB(t, p, db, "the new pending manual payout", 1, `SELECT COUNT(*) FROM payouts WHERE affiliate = ? AND status = 'pending' AND method = 'manual'`, grace)
		var payout string
		var amount int64
		db.QueryRow(`SELECT id, amount FROM payouts WHERE affiliate = ? AND status = 'pending'`, grace).Scan(&payout, &amount)
		p.waitFor("the payout in the history", `document.getElementById("payout-`+payout+`") !== null`)
		// Mark it paid: a reference is required.
		p.click("#payout-" + payout + ` button[data-action="paid"]`)
		p.click("#po-paid")
		p.waitFor("the reference error", `document.getElementById("po-ref-err").textContent !== ""`)
		p.typeInto("#po-ref", "PP-2026-001")
		p.click("#po-paid")
		waitDB(t, p, db, "the payout paid", 1, `SELECT COUNT(*) FROM payouts WHERE id = ? AND status = 'paid' AND reference = 'PP-2026-001'`, payout)
		waitDB(t, p, db, "its paid commissions", amount, `SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE payout = ? AND status = 'paid'`, payout)
		// Cancel another pending payout, then pay it again in a new run.
		var other, otherAff string
		if err := db.QueryRow(`SELECT id, affiliate FROM payouts WHERE status = 'pending' LIMIT 1`).Scan(&other, &otherAff); err == nil {
			p.waitFor("the other payout", `document.getElementById("payout-`+other+`") !== null`)
			p.click("#payout-" + other + ` button[data-action="cancel"]`)
			waitDB(t, p, db, "cancelled payout", 1, `SELECT COUNT(*) FROM payouts WHERE id = ? AND status = 'canceled'`, other)
			p.waitFor("pay again", `document.querySelector('#payout-`+other+` button[data-action="retry"]') !== null`)
			p.click("#payout-" + other + ` button[data-action="retry"]`)
			waitDB(t, p, db, "the new payout", 1, `SELECT COUNT(*) FROM payouts WHERE affiliate = ? AND status = 'pending'`, otherAff)
		} else {
			t.Logf("only one payout in the run: cancel not exercised (%v)", err)
		}
		// The history filtered to paid payouts: as many as the database has.
		var paid int64
		db.QueryRow(`SELECT COUNT(*) FROM payouts WHERE status = 'paid'`).Scan(&paid)
		p.setValue("#po-status", "paid")
		p.waitFor("the paid payouts", `location.hash.includes("status=paid") && document.querySelectorAll("#payouts-body tr[id^=payout-]").length === `+strconv.FormatInt(min(paid, 20), 10)+` && [...document.querySelectorAll("#payouts-body .badge")].every((b) => b.textContent === "paid")`)
		p.setValue("#po-status", "")
		p.screenshots("backoffice-payouts")
		var check struct {
			OK       bool  `json:"ok"`
			Problems []any `json:"problems"`
		}
		getJSON(t, base+"/api/pba/ledger/check", token, &check)
		if !check.OK {
			t.Errorf("ledger check after the payouts: %v", check.Problems)
		}
	})

	t.Run("broadcast and templates", func(t *testing.T) {
		p := b.p
		var grace, graceEmail string
		db.QueryRow(`SELECT id, email FROM affiliates WHERE code = 'grace-hopper'`).Scan(&grace, &graceEmail)
		var approved int64
		db.QueryRow(`SELECT COUNT(*) FROM affiliates WHERE status = 'approved'`).Scan(&approved)
		b.open(t, "#/messages", "Messages")
		// The demo's history has a sent broadcast with its delivery counts.
		var demoSent string
		var demoDelivered int64
		if err := db.QueryRow(`SELECT m.id, (SELECT COUNT(*) FROM deliveries d WHERE d.message = m.id AND d.status = 'sent') FROM messages m WHERE m.kind = 'broadcast' AND m.status = 'sent'`).Scan(&demoSent, &demoDelivered); err != nil || demoDelivered == 0 {
			t.Fatalf("the demo has no sent broadcast with deliveries (%d): %v", demoDelivered, err)
		}
		p.waitFor("the demo's sent broadcast", `document.querySelector("#message-`+demoSent+` .counts") && document.querySelector("#message-`+demoSent+` .counts").textContent === "`+strconv.FormatInt(demoDelivered, 10)+` sent"`)
		p.waitFor("the audience", `document.getElementById("bc-audience").textContent.startsWith("`+strconv.FormatInt(approved, 10)+` affiliate")`)
		p.typeInto("#bc-subject", "Spring news for {{.Name}}")
		p.typeInto("#bc-body", "Hello {{.Name}}, your link is {{.Link}}.")
		p.setValue("#bc-for", grace)
		p.waitFor("the preview for Grace", `document.querySelector(".mail-subject") && document.querySelector(".mail-subject").textContent === "Spring news for Grace Hopper"`)
		b.checkAxe(t, "broadcast composer")
		p.screenshots("backoffice-messages")
		p.click("#bc-send")
		waitDB(t, p, db, "the broadcast", 1, `SELECT COUNT(*) FROM messages WHERE kind = 'broadcast' AND subject = 'Spring news for {{.Name}}'`)
		var msg string
		db.QueryRow(`SELECT id FROM messages WHERE kind = 'broadcast' AND subject = 'Spring news for {{.Name}}'`).Scan(&msg)
		waitDB(t, p, db, "broadcast deliveries sent", approved, `SELECT COUNT(*) FROM deliveries WHERE message = ? AND status = 'sent'`, msg)
		p.waitFor("the delivery counts", `document.querySelector("#message-`+msg+` .counts").textContent.includes("`+strconv.FormatInt(approved, 10)+` sent")`)
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(mail.subjects(graceEmail), "Spring news for Grace Hopper") {
			if time.Now().After(deadline) {
				t.Fatalf("the fake mail sender got no broadcast for %s: %v", graceEmail, mail.subjects(graceEmail))
			}
			time.Sleep(100 * time.Millisecond)
		}
		// A broadcast scheduled for tomorrow at 09:30 (the page's zone is UTC) waits for its time.
		tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format("2006-01-02")
		p.typeInto("#bc-subject", "Tomorrow's news for {{.Name}}")
		p.typeInto("#bc-body", "Hello {{.Name}}, see you tomorrow.")
		p.click(`input[name=when][value=later]`)
		p.waitFor("the time field", `document.getElementById("bc-at") !== null`)
		p.click("#bc-send")
		p.waitFor("the missing time", `document.getElementById("bc-at-err").textContent !== ""`)
		p.setValue("#bc-at", tomorrow+"T09:30")
		p.waitFor("the schedule button", `document.getElementById("bc-send").textContent === "Schedule"`)
		p.click("#bc-send")
		waitDB(t, p, db, "the scheduled broadcast", 1, `SELECT COUNT(*) FROM messages WHERE subject = 'Tomorrow''s news for {{.Name}}' AND status = 'scheduled' AND send_at LIKE ?`, tomorrow+" 09:30:00%")
		var scheduled string
		db.QueryRow(`SELECT id FROM messages WHERE subject = 'Tomorrow''s news for {{.Name}}'`).Scan(&scheduled)
		p.waitFor("the scheduled row", `document.querySelector("#message-`+scheduled+` .badge") && document.querySelector("#message-`+scheduled+` .badge").textContent === "scheduled"`)
		if n := countRows(t, db, `SELECT COUNT(*) FROM deliveries WHERE message = ?`, scheduled); n != 0 {
			t.Errorf("the broadcast scheduled for tomorrow has %d deliveries already", n)
		}
		p.screenshots("backoffice-broadcasts")
		// Templates: the server's validation error inline, then a valid edit saved.
		b.open(t, "#/messages?tab=templates", "Messages")
		p.waitFor("a template", `document.getElementById("tpl-subject") && document.getElementById("tpl-subject").value !== ""`)
		p.waitFor("the template preview", `document.querySelector(".mail-subject") !== null`)
		p.typeInto("#tpl-text", "Hi {{.Nope}}")
		p.waitFor("the text error", `document.getElementById("tpl-text-err").textContent.includes("Nope")`)
		p.typeInto("#tpl-text", "Hi {{.Name}}, welcome.")
		p.waitFor("no error", `document.getElementById("tpl-text-err").textContent === "" && !document.getElementById("tpl-save").disabled`)
		p.click("#tpl-save")
		waitDB(t, p, db, "the saved template", 1, `SELECT COUNT(*) FROM mail_templates WHERE text = 'Hi {{.Name}}, welcome.'`)
		b.checkAxe(t, "templates")
	})

	t.Run("materials", func(t *testing.T) {
		p := b.p
		var adaID, adaEmail, graceID string
		db.QueryRow(`SELECT id, email FROM affiliates WHERE code = 'ada-lovelace'`).Scan(&adaID, &adaEmail)
		db.QueryRow(`SELECT id FROM affiliates WHERE code = 'grace-hopper'`).Scan(&graceID)
		banner := filepath.Join(t.TempDir(), "spring-banner.png")
		if err := os.WriteFile(banner, testPNG(t, 468, 60), 0o644); err != nil {
			t.Fatal(err)
		}
		b.open(t, "#/assets", "Materials")
		p.waitFor("the materials list", `document.querySelector("#assets-body td.empty") !== null`)
		// A banner with a body naming a variable the templates do not have: the server's error
		// next to the body, nothing stored.
		p.typeInto("#as-title", "Spring banner")
		p.setValue("#as-kind", "banner")
		if err := chromedp.Do(p.ctx, chromedp.SetUploadFiles(chromedp.CSS("#as-file"), []string{banner})); err != nil {
			t.Fatal(err)
		}
		p.typeInto("#as-body", "Shop with {{.Email}}")
		p.click("#as-save")
		p.waitFor("the body's error", `document.getElementById("as-body-err").textContent.includes("Unknown variable .Email")`)
		waitDB(t, p, db, "assets after the refused save", 0, `SELECT COUNT(*) FROM assets`)
		p.typeInto("#as-body", "Shop {{.Program}} with {{.Name}}: {{.Link}}")
		p.click("#as-active")
		p.click("#as-save")
		waitDB(t, p, db, "the uploaded banner", 1, `SELECT COUNT(*) FROM assets WHERE title = 'Spring banner' AND active AND file != '' AND width = 468 AND height = 60`)
		var id string
		db.QueryRow(`SELECT id FROM assets WHERE title = 'Spring banner'`).Scan(&id)
		p.waitFor("the thumb in the list", `(() => { const i = document.querySelector("#asset-`+id+` img.asset-thumb"); return i && i.complete && i.naturalWidth > 0; })()`)

		// Preview as Ada: exactly what the API gives Ada, with her link.
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth") || "{}").token || ""`)
		preview := func(affiliate, code string) {
			t.Helper()
			var item struct{ HTML, Text, Link string }
			getJSON(t, b.base+"/api/pba/assets/"+id+"?affiliate="+affiliate, token, &item)
			if !strings.Contains(item.Link, "/r/"+code) || !strings.Contains(item.HTML, `<a href="`+item.Link+`"><img src="`) || !strings.Contains(item.HTML, `width="468" height="60"`) {
				t.Fatalf("the API's banner for %s: %+v", code, item)
			}
			p.setValue("#as-for", affiliate)
			p.waitFor("the preview for "+code, `document.getElementById("as-code") && document.getElementById("as-code").textContent === `+strconv.Quote(item.HTML)+
				` && document.getElementById("as-text").textContent === `+strconv.Quote(item.Text))
		}
		p.typeInto("#as-who", "ada")
		p.waitFor("Ada in the picker", `[...document.querySelectorAll("#as-for option")].some((o) => o.value === "`+adaID+`")`)
		preview(adaID, "ada-lovelace")
		b.checkAxe(t, "materials")
		p.screenshots("backoffice-materials")
		p.typeInto("#as-who", "grace")
		p.waitFor("Grace in the picker", `[...document.querySelectorAll("#as-for option")].some((o) => o.value === "`+graceID+`")`)
		preview(graceID, "grace-hopper")
		if strings.Contains(p.text("#as-preview"), "ada-lovelace") {
			t.Error("Grace's preview shows Ada's link")
		}

		// Announce it: one broadcast to the program's approved affiliates, mailed to Ada.
		p.click("#as-announce")
		p.waitFor("the confirmation", `document.getElementById("as-announce-confirm") !== null`)
		b.checkAxe(t, "materials announce")
		p.click("#as-announce-confirm")
		waitDB(t, p, db, "the announcement", 1, `SELECT COUNT(*) FROM messages WHERE kind = 'broadcast' AND subject = 'New promotional material: Spring banner'`)
		p.waitFor("the confirmation message", `document.getElementById("msg").textContent.includes("Announced")`)
		deadline := time.Now().Add(15 * time.Second)
		for !slices.Contains(mail.subjects(adaEmail), "New promotional material: Spring banner") {
			if time.Now().After(deadline) {
				t.Fatalf("no announcement mailed to %s: %v", adaEmail, mail.subjects(adaEmail))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	feedbackSubtests(t, b, base, db, mail)
	incentivesSubtest(t, b)
	webhooksSubtest(t, b)

	// API keys: created with its scopes, the key shown once (and nowhere in the database), it
	// works on the merchant API, then revoked it no longer does.
	t.Run("api keys", func(t *testing.T) {
		p := b.p
		b.open(t, "#/api-keys", "API keys")
		p.typeInto("#key-name", "Shop server")
		p.click(`input[value="sales:read"]`)
		p.click(`input[value="stats:read"]`)
		p.click(`#main form button[type=submit]`)
		p.waitFor("the new key", `(document.getElementById("new-key-value")?.textContent || "").startsWith("pba_")`)
		key := p.text("#new-key-value")
		p.waitFor("the key in the list", `document.querySelector("#api-keys tbody")?.textContent.includes("Shop server")`)
		if list := p.text("#api-keys"); !strings.Contains(list, key[:12]) || strings.Contains(list, key) || !strings.Contains(list, "sales:read, stats:read") {
			t.Errorf("the list shows %q", list)
		}
		sum := sha256.Sum256([]byte(key))
		waitDB(t, p, db, "the key stored hashed", 1, `SELECT COUNT(*) FROM api_keys WHERE hash = ? AND name = 'Shop server'`, hex.EncodeToString(sum[:]))
		var holding int64
		db.QueryRow(`SELECT COUNT(*) FROM api_keys WHERE name LIKE '%' || ? || '%' OR prefix = ? OR hash = ?`, key[4:], key, key).Scan(&holding)
		if holding != 0 {
			t.Error("the database holds the key")
		}
		var sales struct{ Items []any }
		getJSON(t, base+"/api/pba/sales?limit=1", "Bearer "+key, &sales)
		b.checkAxe(t, "api keys")
		p.screenshots("backoffice-api-keys")
		p.click("#new-key-done") // Done: the key is gone from the page
		p.waitFor("the key to leave the page", `!document.body.textContent.includes(`+strconv.Quote(key)+`)`)
		b.open(t, "#/setup", "Setup") // and back: the list read again shows the use
		b.open(t, "#/api-keys", "API keys")
		p.waitFor("last used", `[...document.querySelectorAll("#api-keys tbody tr")].some((r) => r.textContent.includes("Shop server") && !r.textContent.includes("Never"))`)
		p.click(`button[aria-label="Revoke Shop server"]`)
		p.click(`#api-keys button.danger`)
		waitDB(t, p, db, "the key revoked", 1, `SELECT COUNT(*) FROM api_keys WHERE name = 'Shop server' AND revoked AND revoked_at != ''`)
		sendJSONStatus(t, http.MethodGet, base+"/api/pba/sales", "Bearer "+key, "", http.StatusUnauthorized)
	})

	t.Run("setup checklist", func(t *testing.T) {
		p := b.p
		b.open(t, "#/setup", "Setup")
		p.waitFor("the checklist", `document.querySelectorAll("#checklist li").length === 6`)
		// This server has no PBA_PUBLIC_URL and a fake Resend with a sender address.
		if got := p.attr("#setup-public-url", "data-done"); got != "false" || !strings.Contains(p.text("#setup-public-url"), "PBA_PUBLIC_URL") {
			t.Errorf("public URL item: done=%s, %q", got, p.text("#setup-public-url"))
		}
		if got := p.attr("#setup-mail", "data-done"); got != "true" {
			t.Errorf("mail item: done=%s, %q", got, p.text("#setup-mail"))
		}
		page := pageEval[string](p, `document.body.innerText`)
		if strings.Contains(page, "re_test_key") {
			t.Error("the setup page shows the Resend key")
		}
		b.checkAxe(t, "setup")
		p.screenshots("backoffice-setup")
	})

	t.Run("personal data", func(t *testing.T) {
		// A visitor's clicks erased from the setup page by the id of its pba_vid cookie.
		p := b.p
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := client.Get(base + "/r/ada-lovelace")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		var visitor string
		for _, c := range res.Cookies() {
			if c.Name == "pba_vid" {
				visitor = c.Value
			}
		}
		if visitor == "" {
			t.Fatalf("no visitor cookie from /r/: %d", res.StatusCode)
		}
		b.open(t, "#/setup", "Setup")
		p.typeInto("#visitor-id", visitor)
		p.click(`#visitor-erase button[type=submit]`)
		p.waitFor("the visitor's erasure", `(document.getElementById("visitor-erased")?.textContent || "").startsWith("1 click")`)
		waitDB(t, p, db, "clicks of the erased visitor", 0, `SELECT COUNT(*) FROM clicks WHERE visitor = ? OR id = ?`, visitor, visitor)

		// An affiliate's data exported, then erased after typing its email.
		var id, email string
		db.QueryRow(`SELECT id, email FROM affiliates WHERE code = 'edsger-dijkstra'`).Scan(&id, &email)
		if id == "" {
			t.Fatal("the demo has no edsger-dijkstra")
		}
		b.open(t, "#/affiliates/"+id, "Edsger Dijkstra")
		p.click("#af-export")
		p.waitFor("the export", `document.getElementById("msg").textContent.startsWith("Exported the data of")`)
		p.click("#af-erase")
		p.typeInto("#af-erase-confirm", "not-"+email)
		if !pageEval[bool](p, `document.getElementById("af-erase-submit").disabled`) {
			t.Error("the erasure can be sent without the affiliate's email typed")
		}
		p.typeInto("#af-erase-confirm", email)
		p.click("#af-erase-submit")
		waitDB(t, p, db, "the erased affiliate", 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND erased_at != '' AND email LIKE 'erased-%'`, id)
		p.waitFor("the erased page", `document.getElementById("af-erased") !== null && document.querySelector("main h1").textContent.includes("Erased affiliate")`)
		// Erasure is final: the page offers no status decision (the server refuses them too).
		if got := pageEval[string](p, `[...document.querySelectorAll("#status-actions button")].map((b) => b.textContent).join(",")`); got != "" {
			t.Errorf("the erased affiliate's page offers %q", got)
		}
		if n := countRows(t, db, `SELECT COUNT(*) FROM privacy_requests WHERE subject IN (?, ?)`, id, visitor); n != 3 {
			t.Errorf("%d privacy requests recorded, want 3 (visitor erase, export, erase)", n)
		}
		b.checkAxe(t, "personal data")
		p.screenshots("backoffice-privacy")
	})

	t.Run("overview", func(t *testing.T) {
		p := b.p
		b.open(t, "#/overview?range=30d", "Overview")
		p.waitFor("the KPIs", `document.getElementById("kpi-clicks") && document.querySelector("#ov-chart canvas") !== null`)
		from, to := p.attr("#kpis", "data-from"), p.attr("#kpis", "data-to")
		if want := time.Now().UTC().Format("2006-01-02"); to != want {
			t.Errorf("the period ends %s, want today %s", to, want)
		}
		sums := func() (s [4]int64) {
			t.Helper()
			if err := db.QueryRow(`SELECT IFNULL(SUM(clicks), 0), IFNULL(SUM(conversions), 0), IFNULL(SUM(revenue), 0), IFNULL(SUM(commission), 0)
				FROM stats_daily WHERE day >= ? AND day <= ?`, from, to).Scan(&s[0], &s[1], &s[2], &s[3]); err != nil {
				t.Fatal(err)
			}
			return s
		}
		check := func(want [4]int64) {
			t.Helper()
			for i, id := range []string{"clicks", "sales", "revenue", "commission"} {
				p.waitFor("the "+id+" KPI", `document.getElementById("kpi-`+id+`").dataset.value === "`+strconv.FormatInt(want[i], 10)+`"`)
			}
			p.waitFor("the chart's clicks", `document.getElementById("ov-chart").dataset.clicks === "`+strconv.FormatInt(want[0], 10)+`"`)
		}
		want := sums()
		if want[0] == 0 || want[1] == 0 {
			t.Fatalf("demo data has no clicks or sales from %s to %s", from, to)
		}
		check(want)
		// The KPIs equal the stats API's totals for the same period.
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		var api struct {
			Totals []struct{ Clicks, Conversions, Revenue, Commission int64 } `json:"totals"`
		}
		getJSON(t, base+"/api/pba/stats?from="+from+"&to="+to, token, &api)
		if len(api.Totals) != 1 || api.Totals[0].Clicks != want[0] || api.Totals[0].Revenue != want[2] {
			t.Errorf("stats API totals %+v, database %v", api.Totals, want)
		}
		// A click and a sale made now move the counters and the chart without a reload.
		pageEval[bool](p, `window.pbaSamePage = true`)
		hitRedirect(t, base+"/r/grace-hopper")
		want[0]++
		check(want)
		sendJSONStatus(t, http.MethodPost, base+"/api/pba/conversions", token, `{"affiliate_code":"grace-hopper","external_id":"overview-live-1","amount":5123,"currency":"usd"}`, http.StatusCreated)
		want[1]++
		want[2] += 5123
		p.waitFor("the live sale in the feed", `document.getElementById("feed").textContent.includes("Grace Hopper · 51.23 USD")`)
		check([4]int64{want[0], want[1], want[2], sums()[3]})
		if !pageEval[bool](p, `window.pbaSamePage === true`) {
			t.Error("the overview reloaded: live updates must come without a reload")
		}
		// Top affiliates, sorted by sales.
		p.click(`button[aria-label="Sort by Sales"]`)
		p.waitFor("the ranking by sales", `document.querySelector('th[aria-sort="descending"]').textContent.startsWith("Sales") && document.querySelectorAll("#top-body tr").length > 1`)
		p.click(`button[data-range="7d"]`)
		p.waitFor("7 days", `document.getElementById("kpis").dataset.from === "`+time.Now().UTC().AddDate(0, 0, -6).Format("2006-01-02")+`"`)
		b.checkAxe(t, "overview")
		p.screenshots("backoffice-overview")
	})

	// These two add affiliates, a program and a sale: they run after the subtests that count.
	t.Run("keyboard only approval", func(t *testing.T) {
		// An application approved with the keyboard alone: Shift+Tab from the setup page's
		// heading (where a view change puts the focus) back into the navigation, Enter on Affiliates, Tab to the applications tab,
		// Enter, Tab to the row's Approve (one Tab past it and Shift+Tab back), Enter. Every
		// stop shows where the focus is.
		p := b.p
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		id := createRecord(t, base, "affiliates", token, `{"email":"kay.board@example.org","password":"kay-password-1","passwordConfirm":"kay-password-1","name":"Kay Board","status":"pending"}`)
		b.open(t, "#/setup", "Setup")
		p.waitFor("the heading's focus", `document.activeElement === document.querySelector("main h1")`)
		tabTo(t, p, `nav a[href="#/affiliates"]`, true, 30)
		press(t, p, kb.Enter, false)
		p.waitFor("the affiliates", `location.hash === "#/affiliates" && document.querySelector("main h1").textContent.trim().startsWith("Affiliates")`)
		tabTo(t, p, "#tab-applications", false, 30)
		press(t, p, kb.Enter, false)
		p.waitFor("the application", `location.hash.includes("tab=applications") && document.getElementById("aff-`+id+`") !== null`)
		approve := "#aff-" + id + ` button[data-status="approved"]`
		tabTo(t, p, approve, false, 80)
		press(t, p, kb.Tab, false)
		tabTo(t, p, approve, true, 1)
		p.screenshots("backoffice-keyboard-approve")
		press(t, p, kb.Enter, false)
		waitDB(t, p, db, "Kay approved with the keyboard", 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND status = 'approved'`, id)
		p.waitFor("the application to leave the queue", `document.getElementById("aff-`+id+`") === null`)
		p.waitFor("the confirmation", `document.getElementById("msg").textContent.includes("approval email")`)
	})

	t.Run("overview per currency", func(t *testing.T) {
		// A second program in euros with a sale beside the dollar programs: the overview shows
		// each currency on its own (a currency picker), and its revenue, commission and owed
		// figures are that currency's alone, equal to the stats API and the database.
		p := b.p
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		// The board is open on dollars alone when the first euro sale arrives: its live message
		// must not move the dollar figures, not even until the re-read.
		b.open(t, "#/overview?range=30d", "Overview")
		p.waitFor("the 30 days", `document.querySelector('button[data-range="30d"]').getAttribute("aria-pressed") === "true"`)
		var usdRevenue int64
		db.QueryRow(`SELECT IFNULL(SUM(revenue), 0) FROM stats_daily WHERE day >= ? AND day <= ?`, p.attr("#kpis", "data-from"), p.attr("#kpis", "data-to")).Scan(&usdRevenue)
		p.waitFor("the dollar board", `document.getElementById("ov-currency") === null && document.getElementById("kpi-revenue").textContent.includes("USD") && document.getElementById("kpi-revenue").dataset.value === "`+strconv.FormatInt(usdRevenue, 10)+`"`)
		pageEval[bool](p, `(() => {
			const seen = (window.pbaUSDSeen = new Set());
			const note = () => { for (const id of ["kpi-sales", "kpi-revenue", "kpi-commission"]) seen.add(id + "=" + document.getElementById(id).dataset.value); };
			note();
			new MutationObserver(note).observe(document.getElementById("kpis"), { subtree: true, attributes: true, childList: true, characterData: true });
			return true;
		})()`)
		usdBefore := pageEval[string](p, `[...window.pbaUSDSeen].sort().join(" ")`)
		program := createRecord(t, base, "programs", token, `{"name":"Euro partners","destination":"https://shop.example.eu/","currency":"eur"}`)
		createRecord(t, base, "affiliates", token, `{"email":"emil.euro@example.org","password":"emil-password-1","passwordConfirm":"emil-password-1","name":"Emil Euro","code":"emil-euro","status":"approved","program":"`+program+`"}`)
		sendJSONStatus(t, http.MethodPost, base+"/api/pba/conversions", token, `{"affiliate_code":"emil-euro","external_id":"overview-eur-1","amount":4200,"currency":"eur"}`, http.StatusCreated)
		p.waitFor("the euros after the re-read", `[...document.querySelectorAll("#ov-currency option")].map((o) => o.value).sort().join(",") === "eur,usd"`)
		if seen := pageEval[string](p, `[...window.pbaUSDSeen].sort().join(" ")`); seen != usdBefore {
			t.Errorf("the live euro sale moved the dollar figures: %s, before %s", seen, usdBefore)
		}
		sendJSONStatus(t, http.MethodPost, base+"/api/pba/commissions/run", token, `{}`, http.StatusOK)
		waitDB(t, p, db, "the euro sale's commission", 1, `SELECT COUNT(*) FROM commissions WHERE program = ? AND currency = 'eur' AND kind = 'sale'`, program)

		b.open(t, "#/overview?range=30d", "Overview")
		p.waitFor("the currency picker", `[...document.querySelectorAll("#ov-currency option")].map((o) => o.value).sort().join(",") === "eur,usd"`)
		from, to := p.attr("#kpis", "data-from"), p.attr("#kpis", "data-to")
		var api struct {
			Totals []struct {
				Currency                                 string
				Clicks, Conversions, Revenue, Commission int64
			} `json:"totals"`
		}
		getJSON(t, base+"/api/pba/stats?from="+from+"&to="+to, token, &api)
		var owed struct {
			Balances []struct {
				Currency         string
				Pending, Payable int64
			} `json:"balances"`
		}
		getJSON(t, base+"/api/pba/owed", token, &owed)
		var all int64
		db.QueryRow(`SELECT IFNULL(SUM(revenue), 0) FROM stats_daily WHERE day >= ? AND day <= ?`, from, to).Scan(&all)
		for _, c := range []string{"eur", "usd"} {
			var want [4]int64
			if err := db.QueryRow(`SELECT IFNULL(SUM(s.clicks), 0), IFNULL(SUM(s.conversions), 0), IFNULL(SUM(s.revenue), 0), IFNULL(SUM(s.commission), 0)
				FROM stats_daily s JOIN programs g ON g.id = s.program WHERE g.currency = ? AND s.day >= ? AND s.day <= ?`, c, from, to).Scan(&want[0], &want[1], &want[2], &want[3]); err != nil {
				t.Fatal(err)
			}
			var owedDB int64
			db.QueryRow(`SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE currency = ? AND status IN ('pending', 'payable')`, c).Scan(&owedDB)
			if c == "eur" && (want[1] != 1 || want[2] != 4200 || want[3] <= 0) {
				t.Fatalf("the euro program's figures in stats_daily: %v, want one sale of 4200 with a commission", want)
			}
			if want[2] == all {
				t.Fatalf("%s revenue %d is every currency's %d: the test needs revenue in both", c, want[2], all)
			}
			found := false
			for _, tot := range api.Totals {
				if tot.Currency == c {
					found = true
					if got := [4]int64{tot.Clicks, tot.Conversions, tot.Revenue, tot.Commission}; got != want {
						t.Errorf("stats API %s totals %v, database %v", c, got, want)
					}
				}
			}
			if !found {
				t.Errorf("stats API has no %s totals: %+v", c, api.Totals)
			}
			var owedAPI int64 = -1
			for _, o := range owed.Balances {
				if o.Currency == c {
					owedAPI = o.Pending + o.Payable
				}
			}
			if owedAPI != owedDB {
				t.Errorf("owed API %s: %d, database %d", c, owedAPI, owedDB)
			}
			p.setValue("#ov-currency", c)
			for i, id := range []string{"clicks", "sales", "revenue", "commission"} {
				p.waitFor(c+" "+id, `document.getElementById("kpi-`+id+`").dataset.value === "`+strconv.FormatInt(want[i], 10)+`"`)
			}
			p.waitFor(c+" owed", `document.getElementById("kpi-owed").dataset.value === "`+strconv.FormatInt(owedDB, 10)+`"`)
			unit := " " + strings.ToUpper(c)
			for _, id := range []string{"kpi-revenue", "kpi-commission", "kpi-owed"} {
				if got := p.text("#" + id); !strings.Contains(got, unit) || strings.Contains(got, map[string]string{"eur": "USD", "usd": "EUR"}[c]) {
					t.Errorf("%s in %s: %q", id, c, got)
				}
			}
			// The top affiliates are that currency's programs' (Emil sells in euros only).
			p.waitFor(c+" top affiliates", `document.querySelector("#top-h + .hint").textContent.includes("Amounts in `+strings.ToUpper(c)+`") && document.querySelectorAll("#top-body tr").length > 0 && document.getElementById("top-body").textContent.includes("Emil Euro") === `+strconv.FormatBool(c == "eur"))
			if got := p.text("#msg"); strings.Contains(got, "several currencies") {
				t.Errorf("the overview in %s shows an error: %q", c, got)
			}
			b.checkAxe(t, "overview in "+c)
			p.screenshots("backoffice-overview-" + c)
		}
	})

	t.Run("phone nav shows the current view", func(t *testing.T) {
		// On a phone the nav is one row that scrolls sideways: every view's entry is in sight
		// after a view change at 390 px, after the window narrows to 390 px on the view (a
		// rotated phone), and after a reload on the view.
		p := b.p
		p.t = t
		viewport := func(w int64) {
			t.Helper()
			if err := chromedp.Do(p.ctx, chromedp.EmulateViewport(w, 900)); err != nil {
				t.Fatal(err)
			}
		}
		defer chromedp.Do(p.ctx, chromedp.ResetViewport())
		inSight := func(how, hash string) {
			t.Helper()
			p.waitFor(hash+" "+how+": its nav entry in sight", `(() => {
				const ul = document.querySelector(".side nav ul"), a = document.querySelector('.side nav [aria-current="page"]');
				if (!a || a.getAttribute("href") !== `+strconv.Quote(hash)+` || ul.scrollWidth <= ul.clientWidth) return false;
				const u = ul.getBoundingClientRect(), r = a.getBoundingClientRect();
				return r.left >= u.left - 1 && r.right <= u.right + 1;
			})()`)
		}
		views := pageEval[[]string](p, `[...document.querySelectorAll(".side nav a")].map((a) => a.getAttribute("href"))`)
		if len(views) < 10 {
			t.Fatalf("nav entries %v", views)
		}
		current := func(hash string) {
			t.Helper()
			pageEval[bool](p, `(location.hash = `+strconv.Quote(hash)+`, true)`)
			p.waitFor("the view "+hash, `document.querySelector('.side nav [aria-current="page"]')?.getAttribute("href") === `+strconv.Quote(hash))
		}
		for _, hash := range views {
			viewport(390)
			current("#/overview") // the row scrolled to its start
			viewport(1200)        // the nav is a column
			current(hash)
			viewport(390)
			inSight("narrowed to 390 px", hash)
			current("#/overview")
			pageEval[bool](p, `(location.hash = `+strconv.Quote(hash)+`, true)`)
			inSight("opened at 390 px", hash)
		}
		for _, hash := range []string{"#/webhooks", "#/setup"} {
			pageEval[bool](p, `(location.hash = `+strconv.Quote(hash)+`, true)`)
			if err := chromedp.Do(p.ctx, chromedp.Reload()); err != nil {
				t.Fatal(err)
			}
			watchCSP(p)
			inSight("reloaded at 390 px", hash)
		}
	})

	t.Run("session outlives its token", func(t *testing.T) {
		// A board left open all day stays signed in: with superuser tokens valid for 10 s
		// (PocketBase's minimum), the page must still load data well after the token it
		// started with expired, because the SDK refreshed it in time.
		p := b.p
		p.t = t
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		var superusers struct {
			AuthToken struct {
				Duration int64 `json:"duration"`
			} `json:"authToken"`
		}
		getJSON(t, base+"/api/collections/_superusers", token, &superusers)
		sendJSONStatus(t, http.MethodPatch, base+"/api/collections/_superusers", token, `{"authToken":{"duration":10}}`, http.StatusOK)
		t.Cleanup(func() {
			sendJSONStatus(t, http.MethodPatch, base+"/api/collections/_superusers", token, fmt.Sprintf(`{"authToken":{"duration":%d}}`, superusers.AuthToken.Duration), http.StatusOK)
		})
		// A reload refreshes the session: its new token lives 10 s.
		pageEval[bool](p, `(location.hash = "#/programs", true)`)
		if err := chromedp.Do(p.ctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		watchCSP(p)
		p.waitFor("the back office after a reload", `document.getElementById("sign-out") !== null && document.querySelectorAll("#programs-body tr[id^=program-]").length > 0`)
		claims := `JSON.parse(atob(JSON.parse(localStorage.getItem("pba_admin_auth")).token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")))`
		first := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		expired := time.Unix(int64(pageEval[float64](p, claims+`.exp`)), 0)
		if left := time.Until(expired); left > 10*time.Second {
			t.Fatalf("the session's token expires in %v, want 10 s at most", left)
		}
		time.Sleep(time.Until(expired.Add(2 * time.Second)))
		// The first token is refused now; the page's current one is not.
		sendJSONStatus(t, http.MethodGet, base+"/api/pba/config", first, "", http.StatusUnauthorized)
		b.open(t, "#/setup", "Setup")
		p.waitFor("the checklist, loaded after the first token expired", `document.querySelectorAll("#checklist li").length === 6`)
		if pageEval[bool](p, `document.getElementById("si-email") !== null || document.getElementById("sign-out") === null`) {
			t.Fatal("signed out when the first token expired")
		}
		now := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		if now == first {
			t.Fatal("the token was never refreshed")
		}
		if exp := pageEval[float64](p, claims+`.exp`); time.Unix(int64(exp), 0).Before(time.Now()) {
			t.Errorf("the page's token expired at %v", time.Unix(int64(exp), 0))
		}
		sendJSONStatus(t, http.MethodGet, base+"/api/pba/config", now, "", http.StatusOK)
		p.waitFor("the live feed", `document.querySelector("#live-state .dot.on") !== null`)
	})

	if v := pageEval[string](b.p, `JSON.stringify(window.pbaCSP || [])`); v != "[]" {
		t.Errorf("the page broke its Content-Security-Policy: %s", v)
	}
	if ex := b.p.exceptions(); len(ex) > 0 {
		t.Errorf("script errors in the back office: %v", strings.Join(ex, "\n"))
	}
}

// testPNG is a w×h PNG image with a coloured band.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h / 2 {
			img.Set(x, y, color.RGBA{R: 67, G: 56, B: 202, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
