package main

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// The affiliate portal (/portal/, built from ui/src/portal) in headless Chromium against the
// real binary with the demo data. Its subtests run inside TestPagesInBrowser and share its
// server and browser.

// portalPerson is a demo affiliate.
type portalPerson struct{ id, name, code, email, program string }

// portalWorld is what the portal subtests share.
type portalWorld struct {
	base, adminToken      string
	db                    *sql.DB
	mail                  *fakeMail
	axe                   string
	ada, grace, katherine portalPerson
	graceLinks            []string
	shown                 []string // every page's text and markup, checked for others' data at the end
}

// axe runs axe-core on the tab through the back office's check (same rules, same threshold).
func (w *portalWorld) axeCheck(t *testing.T, p *pageTab, view string) {
	t.Helper()
	(&backOffice{p: p, axe: w.axe}).checkAxe(t, view)
}

// keep records what the page shows now, for the isolation check.
func (w *portalWorld) keep(p *pageTab) {
	w.shown = append(w.shown, pageEval[string](p, `document.documentElement.outerHTML + "\n" + document.body.innerText + "\n" + JSON.stringify(localStorage)`))
}

// open goes to a portal view by its hash and waits for its heading.
func (w *portalWorld) open(t *testing.T, p *pageTab, hash, heading string) {
	t.Helper()
	p.t = t
	pageEval[bool](p, `(location.hash = `+strconv.Quote(hash)+`, true)`)
	p.waitFor("the view "+heading, `document.querySelector("main h1") && document.querySelector("main h1").textContent.trim().startsWith(`+strconv.Quote(heading)+`)`)
}

// authToken signs in through the records API and returns the token.
func authToken(t *testing.T, base, collection, email, password string) string {
	t.Helper()
	res, err := http.Post(base+"/api/collections/"+collection+"/auth-with-password", "application/json",
		strings.NewReader(fmt.Sprintf(`{"identity":%q,"password":%q}`, email, password)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Token string }
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || json.Unmarshal(body, &out) != nil || out.Token == "" {
		t.Fatalf("sign in %s as %s: %d %s", collection, email, res.StatusCode, body)
	}
	return out.Token
}

// createRecord creates a record through the records API (as the back office does) and returns its id.
func createRecord(t *testing.T, base, collection, token, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/collections/"+collection+"/records", strings.NewReader(body))
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ ID string }
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil || out.ID == "" {
		t.Fatalf("create %s %s: %d %s", collection, body, res.StatusCode, raw)
	}
	return out.ID
}

// signInPortal signs a tab in as an affiliate through the form.
func signInPortal(p *pageTab, base, email, password string) {
	p.navigate(base + "/portal/")
	p.waitFor("the sign-in form", `document.getElementById("signin-form") !== null`)
	p.typeInto("#si-email", email)
	p.typeInto("#si-password", password)
	p.click("#signin-form button[type=submit]")
}

// portalSubtests walks the portal; it returns the tab of a pending applicant left signed in,
// which the back office's approval must switch live (nil if that subtest failed).
func portalSubtests(t *testing.T, browser func(t *testing.T) *pageTab, w *portalWorld) *pageTab {
	base, db, ada := w.base, w.db, w.ada

	t.Run("portal approved affiliate", func(t *testing.T) {
		p := browser(t)
		p.navigate(base + "/portal/")
		p.waitFor("the sign-in form", `document.getElementById("signin-form") !== null`)
		if focused := pageEval[string](p, `document.activeElement && document.activeElement.id`); focused != "si-email" {
			t.Errorf("focus on load: %q, want the email field", focused)
		}
		w.axeCheck(t, p, "portal sign in")
		p.typeInto("#si-email", ada.email)
		p.typeInto("#si-password", "wrong-password")
		p.click("#signin-form button[type=submit]")
		p.waitFor("the sign-in error", `document.getElementById("signin-err").textContent !== ""`)
		p.typeInto("#si-password", demoPasswordForUI)
		p.click("#signin-form button[type=submit]")
		p.waitFor("home", `document.getElementById("home-h") && document.getElementById("stat-clicks")?.dataset.value !== undefined && document.getElementById("bal-paid")?.dataset.value !== undefined && document.getElementById("next-payout") !== null`)
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_portal_auth")).token`)

		if got := p.text("#ref-code"); got != ada.code {
			t.Errorf("code shown: %q, want %q", got, ada.code)
		}
		if got := pageEval[string](p, `document.getElementById("ref-link").value`); got != base+"/r/"+ada.code {
			t.Errorf("referral link: %q, want %q", got, base+"/r/"+ada.code)
		}
		if got := pageEval[string](p, `document.cookie`); !strings.Contains(got, "pba_self="+ada.id) {
			t.Errorf("document.cookie = %q: want pba_self set to the affiliate", got)
		}

		// The last 30 days (the default period), as the database has them.
		from := time.Now().UTC().AddDate(0, 0, -29).Format("2006-01-02")
		want := statsSince(t, db, ada.id, from)
		if want[0] == 0 && want[2] == 0 {
			t.Fatalf("demo data has no stats for %s since %s", ada.code, from)
		}
		checkFigures(t, p, want)
		p.waitFor("the chart", `document.querySelector(".chart canvas") !== null`)
		// Another period: 7 days.
		p.click("#period-7")
		from7 := time.Now().UTC().AddDate(0, 0, -6).Format("2006-01-02")
		p.waitFor("the 7-day figures", `document.getElementById("figures").dataset.from === "`+from7+`" && document.getElementById("stat-clicks").dataset.value === "`+strconv.FormatInt(statsSince(t, db, ada.id, from7)[0], 10)+`"`)
		checkFigures(t, p, statsSince(t, db, ada.id, from7))
		p.click("#period-30")
		p.waitFor("the 30-day figures", `document.getElementById("figures").dataset.from === "`+from+`"`)

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

		// Terms and the next payout: the terms API's, and the payout preview's line for her.
		var terms struct {
			Rate struct {
				Type, Source string
				Value        int64
			}
			NextPayout struct {
				At       string
				Amount   int64
				Currency string
				Eligible bool
			} `json:"next_payout"`
		}
		getJSON(t, base+"/api/pba/terms", token, &terms)
		var preview struct {
			Programs []struct {
				Lines []struct {
					Affiliate string
					Amount    int64
					Action    string
				}
			}
		}
		getJSON(t, base+"/api/pba/payouts/preview?program="+ada.program, w.adminToken, &preview)
		var line struct {
			amount int64
			found  bool
		}
		for _, pr := range preview.Programs {
			for _, l := range pr.Lines {
				if l.Affiliate == ada.id {
					line.amount, line.found = l.Amount, true
				}
			}
		}
		if !line.found || line.amount == 0 {
			t.Fatalf("the demo's payout preview has no payable line for %s: %+v", ada.code, preview)
		}
		if got := p.attr("#next-payout", "data-amount"); got != strconv.FormatInt(line.amount, 10) || terms.NextPayout.Amount != line.amount {
			t.Errorf("next payout shown %s, terms API %d, payout preview %d", got, terms.NextPayout.Amount, line.amount)
		}
		if got := p.text("#next-payout-amount"); got != formatMinor(line.amount, "usd") {
			t.Errorf("next payout shown as %q, want %q", got, formatMinor(line.amount, "usd"))
		}
		if got := p.attr("#next-payout", "data-at"); got == "" || got != terms.NextPayout.At {
			t.Errorf("next payout date %q, terms API %q", got, terms.NextPayout.At)
		}
		if got := p.attr("#terms-rate", "data-value"); got != strconv.FormatInt(terms.Rate.Value, 10) || p.attr("#terms-rate", "data-source") != terms.Rate.Source {
			t.Errorf("rate shown %s (%s), terms API %+v", got, p.attr("#terms-rate", "data-source"), terms.Rate)
		}
		if !strings.Contains(p.text("#terms-rate"), "% of each sale") {
			t.Errorf("rate in words: %q", p.text("#terms-rate"))
		}
		if n := pageEval[int](p, `document.querySelectorAll("#by-link tbody tr:not(:has(td.empty))").length`); n == 0 {
			t.Error("no breakdown by link")
		}
		var sales int
		db.QueryRow(`SELECT COUNT(*) FROM conversions WHERE affiliate = ?`, ada.id).Scan(&sales)
		if got := pageEval[int](p, `document.querySelectorAll("#recent-sales tbody tr:not(:has(td.empty))").length`); got != min(sales, 10) {
			t.Errorf("recent sales: %d rows, want %d", got, min(sales, 10))
		}

		// Live: a click on another affiliate's link changes nothing here; one on hers counts.
		p.waitFor("the live subscription", `document.getElementById("live-dot").classList.contains("on")`)
		before := want[0]
		pageEval[bool](p, `window.pbaSamePage = true`)
		hitRedirect(t, base+"/r/"+w.grace.code)
		hitRedirect(t, base+"/r/"+ada.code)
		p.waitFor("the live click", `document.getElementById("stat-clicks").dataset.value === "`+strconv.FormatInt(before+1, 10)+`"`)
		time.Sleep(1500 * time.Millisecond) // past the pba/live interval and the page's re-read of stats_daily
		if !pageEval[bool](p, `window.pbaSamePage === true`) {
			t.Error("the page reloaded: the live update must come without a reload")
		}
		checkFigures(t, p, statsSince(t, db, ada.id, from))
		w.axeCheck(t, p, "portal home")
		p.screenshots("portal-home")
		w.keep(p)

		// Links: a destination outside the program's allowed domains is the API's error next to the field.
		w.open(t, p, "#/links", "Links")
		linksBefore := countRows(t, db, `SELECT COUNT(*) FROM links WHERE affiliate = ?`, ada.id)
		p.typeInto("#ln-destination", "https://evil.test/landing")
		p.typeInto("#ln-label", "Not allowed")
		p.click("#link-form button[type=submit]")
		p.waitFor("the destination error", `document.getElementById("ln-destination-err").textContent !== ""`)
		if got := p.text("#ln-destination-err"); !strings.Contains(got, "example.com") {
			t.Errorf("destination error %q: want the allowed domains named", got)
		}
		if got := p.attr("#ln-destination", "aria-invalid"); got != "true" {
			t.Errorf("destination aria-invalid = %q, want true", got)
		}
		if got := countRows(t, db, `SELECT COUNT(*) FROM links WHERE affiliate = ?`, ada.id); got != linksBefore {
			t.Fatalf("links: %d, want %d (nothing stored)", got, linksBefore)
		}
		p.typeInto("#ln-destination", "https://example.com/spring-sale")
		p.typeInto("#ln-label", "Spring sale")
		p.typeInto("#ln-sub", "spring")
		p.click("#link-form button[type=submit]")
		p.waitFor("the new link in the table", `[...document.querySelectorAll("#links-body td")].some((td) => td.textContent === "Spring sale")`)
		var newID, newCode string
		if err := db.QueryRow(`SELECT id, code FROM links WHERE affiliate = ? AND label = 'Spring sale' AND destination = 'https://example.com/spring-sale' AND sub_id = 'spring'`, ada.id).Scan(&newID, &newCode); err != nil {
			t.Fatalf("the new link is not in the database: %v", err)
		}
		if !pageEval[bool](p, `[...document.querySelectorAll("#links-body code.link-url")].some((c) => c.textContent === `+strconv.Quote(base+"/r/"+newCode)+`)`) {
			t.Errorf("the new link's tracking URL %s is not shown", base+"/r/"+newCode)
		}

		// The builder: a deep link off the program's domains is refused; one on them makes a link
		// that leads there and credits her.
		p.setValue("#b-link", newID)
		p.typeInto("#b-to", "https://evil.test/x")
		p.waitFor("the deep link error", `document.getElementById("b-to-err").textContent !== "" && document.getElementById("b-url").value === ""`)
		p.typeInto("#b-to", "https://shop.example.com/deep/page")
		p.typeInto("#b-sub", "newsletter")
		wantBuilt := base + "/r/" + newCode + "?to=" + url.QueryEscape("https://shop.example.com/deep/page") + "&sub=newsletter"
		p.waitFor("the built link", `document.getElementById("b-url").value === `+strconv.Quote(wantBuilt))
		clicksBefore := countRows(t, db, `SELECT COUNT(*) FROM clicks WHERE link = ?`, newID)
		if loc := redirectLocation(t, wantBuilt); !strings.HasPrefix(loc, "https://shop.example.com/deep/page?pba_click=") {
			t.Errorf("the built link leads to %q", loc)
		}
		waitDB(t, p, db, "the built link's click", int64(clicksBefore+1), `SELECT COUNT(*) FROM clicks WHERE link = ? AND sub_id = 'newsletter'`, newID)

		// A QR code per link: the SVG shows, and the PNG decodes to the link.
		p.click(`#links-body button[aria-label="QR code of the link Spring sale"]`)
		p.waitFor("the QR code", `document.getElementById("qr-img")?.complete && document.getElementById("qr-img").naturalWidth > 0 && document.getElementById("qr-png")?.href.startsWith("data:image/png;base64,")`)
		svg := pageEval[string](p, `decodeURIComponent(document.getElementById("qr-svg").href.split(",")[1])`)
		if !strings.HasPrefix(strings.TrimSpace(svg), "<svg") || !strings.Contains(svg, "<path") {
			t.Errorf("the QR SVG is not an SVG: %.200s", svg)
		}
		if got := p.attr("#qr-svg", "download"); got != "qr-"+newCode+".svg" {
			t.Errorf("SVG download name %q", got)
		}
		if got := decodeQR(t, pageEval[string](p, `document.getElementById("qr-png").href`)); got != base+"/r/"+newCode {
			t.Errorf("the QR PNG reads %q, want %q", got, base+"/r/"+newCode)
		}
		p.click("#b-qr")
		p.waitFor("the built link's QR code", `document.getElementById("qr-url").textContent === `+strconv.Quote(wantBuilt))
		if got := decodeQR(t, pageEval[string](p, `document.getElementById("qr-png").href`)); got != wantBuilt {
			t.Errorf("the built link's QR reads %q, want %q", got, wantBuilt)
		}
		w.axeCheck(t, p, "portal links")
		p.screenshots("portal-links")
		w.keep(p)

		// Edit: a destination off the program's domains changes nothing; a valid one leads there at once.
		p.click(`#links-body button[aria-label="Edit the link Spring sale"]`)
		p.waitFor("the edit form", `document.getElementById("link-form-h").textContent === "Edit link Spring sale" && document.getElementById("link-cancel") !== null`)
		p.typeInto("#ln-destination", "https://evil.test/summer")
		p.click("#link-form button[type=submit]")
		p.waitFor("the destination error", `document.getElementById("ln-destination-err").textContent !== ""`)
		if n := countRows(t, db, `SELECT COUNT(*) FROM links WHERE code = ? AND destination = 'https://example.com/spring-sale'`, newCode); n != 1 {
			t.Fatal("a refused edit changed the link")
		}
		p.typeInto("#ln-destination", "https://example.com/summer")
		p.typeInto("#ln-label", "Summer sale")
		p.click("#link-form button[type=submit]")
		p.waitFor("the edited link in the table", `[...document.querySelectorAll("#links-body td")].some((td) => td.textContent === "Summer sale") && document.getElementById("link-cancel") === null`)
		if n := countRows(t, db, `SELECT COUNT(*) FROM links WHERE code = ? AND label = 'Summer sale' AND destination = 'https://example.com/summer'`, newCode); n != 1 {
			t.Fatal("the edit is not in the database")
		}
		if loc := redirectLocation(t, base+"/r/"+newCode); !strings.HasPrefix(loc, "https://example.com/summer?pba_click=") {
			t.Errorf("the edited link leads to %q", loc)
		}

		// Archive: the link leaves the list, stops crediting clicks, keeps its clicks; restore brings it back.
		kept := countRows(t, db, `SELECT COUNT(*) FROM clicks WHERE link = ?`, newID)
		p.click(`#links-body button[aria-label="Archive the link Summer sale"]`)
		waitDB(t, p, db, "the archived link", 1, `SELECT COUNT(*) FROM links WHERE id = ? AND archived = 1`, newID)
		p.waitFor("the link to leave the list", `document.getElementById("link-`+newCode+`") === null`)
		hitRedirect(t, base+"/r/"+newCode)
		time.Sleep(300 * time.Millisecond)
		if n := countRows(t, db, `SELECT COUNT(*) FROM clicks WHERE link = ?`, newID); n != kept {
			t.Errorf("clicks of the archived link: %d, want %d (kept, none added)", n, kept)
		}
		p.click("#toggle-archived")
		p.waitFor("the archived list", `document.getElementById("link-`+newCode+`") !== null`)
		p.click(`#links-body button[aria-label="Restore the link Summer sale"]`)
		waitDB(t, p, db, "the restored link", 0, `SELECT COUNT(*) FROM links WHERE id = ? AND archived = 1`, newID)
		p.click("#toggle-archived")

		// Money: commissions with their sale and payable date; no Stripe button on a server without Stripe.
		w.open(t, p, "#/money", "Money")
		var commissions int
		db.QueryRow(`SELECT COUNT(*) FROM commissions WHERE affiliate = ?`, ada.id).Scan(&commissions)
		p.waitFor("the commissions", `document.querySelectorAll("#commissions-body tr:not(:has(td.empty))").length === `+strconv.Itoa(min(commissions, 20)))
		if pageEval[bool](p, `document.getElementById("connect") !== null`) {
			t.Error("a Stripe onboarding button on a server without Stripe")
		}
		if got := p.text("#payout-method"); !strings.Contains(got, "Manually") {
			t.Errorf("payout method: %q", got)
		}
		var paidPayouts int
		db.QueryRow(`SELECT COUNT(*) FROM payouts WHERE affiliate = ?`, ada.id).Scan(&paidPayouts)
		if got := pageEval[int](p, `document.querySelectorAll("#payouts-body tr:not(:has(td.empty))").length`); got != min(paidPayouts, 50) {
			t.Errorf("payouts: %d rows, want %d", got, paidPayouts)
		}
		w.axeCheck(t, p, "portal money")
		p.screenshots("portal-money")
		w.keep(p)

		// Coupons: hers, not another's.
		sendJSONStatus(t, http.MethodPost, base+"/api/collections/coupons/records", w.adminToken, `{"program":"`+ada.program+`","code":"ada10","affiliate":"`+ada.id+`","active":true}`, 200)
		sendJSONStatus(t, http.MethodPost, base+"/api/collections/coupons/records", w.adminToken, `{"program":"`+ada.program+`","code":"grace10","affiliate":"`+w.grace.id+`","active":true}`, 200)
		w.open(t, p, "#/coupons", "Coupons")
		p.waitFor("her coupon", `document.getElementById("coupons-body").textContent.includes("ada10")`)
		if strings.Contains(p.text("#coupons-body"), "grace10") {
			t.Error("another affiliate's coupon is shown")
		}
		w.axeCheck(t, p, "portal coupons")
		p.screenshots("portal-coupons")

		// Materials: a text rendered with her own link (not Grace's), filtered by kind.
		var asset struct{ ID string }
		asset.ID = createRecord(t, base, "assets", w.adminToken,
			`{"program":"`+ada.program+`","kind":"text","title":"Tweet for spring","body":"Spring deals at {{.Program}}: {{.Link}}","active":true}`)
		w.open(t, p, "#/materials", "Materials")
		p.waitFor("the text material", `document.getElementById("asset-text-`+asset.ID+`") !== null`)
		// The server's rendering for each of them (its links are PBA_PUBLIC_URL's).
		var forAda, forGrace struct{ Text, Link string }
		getJSON(t, base+"/api/pba/assets/"+asset.ID+"?affiliate="+ada.id, w.adminToken, &forAda)
		getJSON(t, base+"/api/pba/assets/"+asset.ID+"?affiliate="+w.grace.id, w.adminToken, &forGrace)
		if !strings.HasSuffix(forAda.Link, "/r/"+ada.code) || !strings.HasSuffix(forGrace.Link, "/r/"+w.grace.code) {
			t.Fatalf("asset links: Ada %q, Grace %q", forAda.Link, forGrace.Link)
		}
		if got := p.text("#asset-text-" + asset.ID); got != forAda.Text || !strings.Contains(got, forAda.Link) || strings.Contains(got, forGrace.Link) || strings.Contains(got, "{{") {
			t.Errorf("material text %q: want %q with her link %s, not Grace's %s", got, forAda.Text, forAda.Link, forGrace.Link)
		}
		w.graceLinks = append(w.graceLinks, forGrace.Link)
		if n := pageEval[int](p, `document.querySelectorAll("#materials iframe, #materials a[href*='/r/']").length`); n != 0 {
			t.Errorf("material markup rendered: %d elements", n)
		}
		p.click("#kind-banner")
		p.waitFor("the banner filter", `document.getElementById("asset-`+asset.ID+`") === null && document.getElementById("materials-empty") !== null`)
		p.click("#kind-text")
		p.waitFor("the text filter", `document.getElementById("asset-`+asset.ID+`") !== null`)
		w.axeCheck(t, p, "portal materials")
		p.screenshots("portal-materials")
		w.keep(p)

		// Incentives: a target campaign running now with her progress, one coming for her only.
		now := time.Now().UTC()
		var running, upcoming struct{ ID string }
		running.ID = createRecord(t, base, "incentives", w.adminToken, fmt.Sprintf(
			`{"program":%q,"name":"Spring sprint","kind":"target_bonus","target_kind":"sales","target":1000,"bonus":5000,"eligibility":"affiliates","affiliates":[%q],"active":true,"starts_at":%q,"ends_at":%q}`,
			ada.program, ada.id, now.AddDate(0, 0, -60).Format(time.RFC3339), now.AddDate(0, 0, 10).Format(time.RFC3339)))
		upcoming.ID = createRecord(t, base, "incentives", w.adminToken, fmt.Sprintf(
			`{"program":%q,"name":"Summer push","kind":"rate_boost","value":500,"eligibility":"affiliates","affiliates":[%q],"active":true,"starts_at":%q,"ends_at":%q}`,
			ada.program, ada.id, now.AddDate(0, 0, 20).Format(time.RFC3339), now.AddDate(0, 0, 30).Format(time.RFC3339)))
		var campaignSales int
		db.QueryRow(`SELECT COUNT(*) FROM conversions WHERE affiliate = ? AND status = 'approved' AND occurred_at >= ?`,
			ada.id, now.AddDate(0, 0, -60).Format("2006-01-02 15:04:05.000Z")).Scan(&campaignSales)
		w.open(t, p, "#/incentives", "Incentives")
		p.waitFor("the campaigns", `document.getElementById("incentive-`+running.ID+`") !== null && document.getElementById("incentive-`+upcoming.ID+`") !== null`)
		if got := pageEval[string](p, `document.getElementById("incentive-`+running.ID+`").dataset.state`); got != "active" {
			t.Errorf("Spring sprint state %q, want active", got)
		}
		if got := pageEval[string](p, `document.getElementById("incentive-`+upcoming.ID+`").dataset.state`); got != "upcoming" {
			t.Errorf("Summer push state %q, want upcoming", got)
		}
		if got := p.text("#incentive-" + running.ID); !strings.Contains(got, "50.00 USD once you reach 1,000 sales") ||
			!strings.Contains(got, fmt.Sprintf("%d of 1,000 sales", campaignSales)) {
			t.Errorf("Spring sprint shows %q, want the bonus and %d of 1000 sales", got, campaignSales)
		}
		if v := pageEval[string](p, `(e => e.value + "/" + e.max)(document.getElementById("incentive-progress-`+running.ID+`"))`); v != fmt.Sprintf("%d/1000", campaignSales) {
			t.Errorf("progress element %s, want %d/1000", v, campaignSales)
		}
		if got := p.text("#incentive-" + upcoming.ID); !strings.Contains(got, "+5 percentage points") {
			t.Errorf("Summer push shows %q", got)
		}
		w.axeCheck(t, p, "portal incentives")
		p.screenshots("portal-incentives")
		w.keep(p)
		for _, v := range [][2]string{{"#/materials", "Materials"}, {"#/incentives", "Incentives"}} {
			w.open(t, p, v[0], v[1])
			if w := phoneWidth(t, p); w > 390 {
				t.Errorf("%s overflows a 390 px screen: %d px wide", v[0], w)
			}
		}
		// A rate boost running now for her: her home's terms spell it out as the server
		// computes it (then it ends, before any other sale).
		boost := createRecord(t, base, "incentives", w.adminToken, fmt.Sprintf(
			`{"program":%q,"name":"Spring push","kind":"rate_boost","value":500,"eligibility":"affiliates","affiliates":[%q],"active":true,"starts_at":%q,"ends_at":%q}`,
			ada.program, ada.id, now.Add(-time.Minute).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)))
		var boosted struct {
			Rate struct {
				Value  int64 `json:"value"`
				Base   int64 `json:"base_value"`
				Source string
			}
		}
		getJSON(t, base+"/api/pba/terms", token, &boosted)
		if boosted.Rate.Source != "incentive" || boosted.Rate.Value != min(boosted.Rate.Base+500, 10000) {
			t.Errorf("terms during the boost: %+v", boosted.Rate)
		}
		w.open(t, p, "#/home", "Welcome")
		if err := chromedp.Do(p.ctx, chromedp.Reload()); err != nil { // the terms are read on load
			t.Fatal(err)
		}
		p.waitFor("the boosted terms", `document.getElementById("terms-incentive") !== null`)
		if got := pageEval[string](p, `document.getElementById("terms-rate").dataset.value`); got != strconv.FormatInt(boosted.Rate.Value, 10) {
			t.Errorf("home's rate %s, terms %d", got, boosted.Rate.Value)
		}
		if got := p.text("#terms-incentive"); !strings.Contains(got, "+ 5 points during Spring push = ") {
			t.Errorf("home's campaign rate: %q", got)
		}
		p.screenshots("portal-home-incentive")
		sendJSONStatus(t, http.MethodDelete, base+"/api/collections/incentives/records/"+boost, w.adminToken, "", 204)
		// The back office's subtests start without materials or campaigns.
		sendJSONStatus(t, http.MethodDelete, base+"/api/collections/assets/records/"+asset.ID, w.adminToken, "", 204)
		sendJSONStatus(t, http.MethodDelete, base+"/api/collections/incentives/records/"+running.ID, w.adminToken, "", 204)
		sendJSONStatus(t, http.MethodDelete, base+"/api/collections/incentives/records/"+upcoming.ID, w.adminToken, "", 204)
		// Feedback: a survey answer of hers (written as the rating links write it) is listed;
		// the form's missing rating comes back from the server next to the scale; the 0–10
		// scale works with the keyboard; the answer is stored as hers, never in Grace's list.
		sendJSONStatus(t, http.MethodPost, base+"/api/collections/surveys/records", w.adminToken,
			`{"name":"Portal pulse","question":"How likely are you to recommend us?","send_at":"2099-01-01 09:00:00.000Z","active":false}`, 200)
		var survey string
		if err := db.QueryRow(`SELECT id FROM surveys WHERE name = 'Portal pulse'`).Scan(&survey); err != nil {
			t.Fatal(err)
		}
		sendJSONStatus(t, http.MethodPost, base+"/api/collections/feedback/records", w.adminToken,
			`{"affiliate":"`+ada.id+`","program":"`+ada.program+`","survey":"`+survey+`","round":"20990101T090000Z","rating":8,"comment":"Asked by the survey mail"}`, 200)
		w.open(t, p, "#/feedback", "Feedback")
		p.waitFor("her survey answer", `[...document.querySelectorAll("#feedback-body tr")].some((r) => r.textContent.includes("Asked by the survey mail") && r.textContent.includes("Survey"))`)
		if got := p.text("#fb-rating legend"); !strings.Contains(got, "How likely are you to recommend") {
			t.Errorf("the rating's legend: %q", got)
		}
		if n := pageEval[int](p, `[...document.querySelectorAll("#fb-rating input[type=radio]")].filter((r) => r.labels.length === 1 && r.labels[0].textContent.trim() === r.value).length`); n != 11 {
			t.Errorf("%d labelled ratings 0–10, want 11", n)
		}
		w.axeCheck(t, p, "portal feedback")
		p.typeInto("#fb-comment", "More banners in Portuguese, please.")
		p.click("#feedback-form button[type=submit]")
		p.waitFor("the server's rating error", `document.getElementById("fb-rating-err").textContent.includes("0 to 10") && document.getElementById("fb-rating").getAttribute("aria-invalid") === "true"`)
		if focused := pageEval[string](p, `document.activeElement && document.activeElement.id`); focused != "fb-rating-0" {
			t.Errorf("focus after the error: %q, want the scale's first choice", focused)
		}
		// From 7, two presses of the right arrow choose 9 (the radio group's own keyboard).
		p.click("#fb-rating-7")
		for range 2 {
			if err := chromedp.Do(p.ctx, chromedp.KeyEvent(kb.ArrowRight)); err != nil {
				t.Fatal(err)
			}
		}
		p.waitFor("9 chosen by keyboard", `document.getElementById("fb-rating-9").checked`)
		p.setValue("#fb-topic", "materials")
		p.click("#feedback-form button[type=submit]")
		p.waitFor("the saved feedback", `document.getElementById("feedback-msg").textContent.includes("saved")`)
		waitDB(t, p, db, "her feedback", 1, `SELECT COUNT(*) FROM feedback WHERE affiliate = ? AND program = ? AND rating = 9 AND topic = 'materials'
			AND comment = 'More banners in Portuguese, please.' AND survey = ''`, ada.id, ada.program)
		p.waitFor("the answer listed", `document.getElementById("feedback-body").textContent.includes("More banners in Portuguese")`)
		var graceList struct {
			Items []struct{ Affiliate, Comment string }
		}
		getJSON(t, base+"/api/collections/feedback/records?perPage=500", authToken(t, base, "affiliates", w.grace.email, demoPasswordForUI), &graceList)
		for _, f := range graceList.Items {
			if f.Affiliate != w.grace.id || strings.Contains(f.Comment, "Portuguese") || strings.Contains(f.Comment, "survey mail") {
				t.Errorf("Grace's feedback list holds %+v", f)
			}
		}
		w.axeCheck(t, p, "portal feedback sent")
		p.screenshots("portal-feedback")
		w.keep(p)

		// Profile: the server's validation error next to the field, then a save.
		w.open(t, p, "#/profile", "Profile")
		p.typeInto("#pf-timezone", "Mars/Olympus")
		p.click("#profile-form button[type=submit]")
		p.waitFor("the time zone error", `document.getElementById("pf-timezone-err").textContent !== ""`)
		p.typeInto("#pf-timezone", "Europe/London")
		p.typeInto("#pf-payout-email", "ada.payouts@example.org")
		p.click(`#email-prefs input[value="none"]`)
		p.click("#profile-form button[type=submit]")
		p.waitFor("the saved profile", `document.getElementById("profile-msg").textContent === "Saved."`)
		var tz, payoutEmail, channel string
		if err := db.QueryRow(`SELECT timezone, payout_email, preferred_channel FROM affiliates WHERE id = ?`, ada.id).Scan(&tz, &payoutEmail, &channel); err != nil ||
			tz != "Europe/London" || payoutEmail != "ada.payouts@example.org" || channel != "none" {
			t.Errorf("profile in the database: timezone %q, payout_email %q, preferred_channel %q, %v", tz, payoutEmail, channel, err)
		}
		// Back to every mail (the back office's broadcast counts on her).
		p.click(`#email-prefs input[value="email"]`)
		p.click("#profile-form button[type=submit]")
		waitDB(t, p, db, "the email preference back to email", 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND preferred_channel = 'email'`, ada.id)
		// Mail categories: two declined are stored as mail_opt_out and shown again after a reload.
		p.click("#mail-digest")
		p.click("#mail-survey")
		p.click("#profile-form button[type=submit]")
		waitDB(t, p, db, "mail_opt_out", 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND json(mail_opt_out) = json('["digest","survey"]')`, ada.id)
		p.navigate(base + "/portal/#/profile")
		p.waitFor("the categories after reload", `document.getElementById("mail-broadcast")?.checked === true && document.getElementById("mail-digest")?.checked === false && document.getElementById("mail-survey")?.checked === false && document.getElementById("mail-material")?.checked === true`)
		if got := p.text("#mail-categories-hint"); !strings.Contains(got, "always sent") {
			t.Errorf("the page does not say account mail is always sent: %q", got)
		}
		w.axeCheck(t, p, "portal profile mail categories")
		// Back to every category (the back office's survey counts on her).
		p.click("#mail-digest")
		p.click("#mail-survey")
		p.click("#profile-form button[type=submit]")
		waitDB(t, p, db, "mail_opt_out empty", 1, `SELECT COUNT(*) FROM affiliates WHERE id = ? AND json(mail_opt_out) = json('[]')`, ada.id)
		w.axeCheck(t, p, "portal profile")
		p.screenshots("portal-profile")
		w.keep(p)

		// On a phone: nothing wider than the screen.
		for _, hash := range []string{"#/home", "#/links", "#/money", "#/feedback", "#/profile"} {
			w.open(t, p, hash, map[string]string{"#/home": "Welcome", "#/links": "Links", "#/money": "Money", "#/feedback": "Feedback", "#/profile": "Profile"}[hash])
			if w := phoneWidth(t, p); w > 390 {
				t.Errorf("%s overflows a 390 px screen: %d px wide", hash, w)
			}
		}

		// Isolation: nothing of another affiliate on any page.
		page := strings.Join(w.shown, "\n")
		for _, s := range append([]string{w.grace.id, w.grace.name, w.grace.code, w.grace.email, w.katherine.name, w.katherine.email, "grace10"}, w.graceLinks...) {
			if strings.Contains(page, s) {
				t.Errorf("the portal of %s shows %q of another affiliate", ada.code, s)
			}
		}
		if ex := p.exceptions(); len(ex) > 0 {
			t.Errorf("script errors: %v", ex)
		}

		// Sign out: back to the form, token gone.
		p.click("#sign-out")
		p.waitFor("the sign-in form after sign out", `document.getElementById("signin-form") !== null`)
		if got := pageEval[string](p, `localStorage.getItem("pba_portal_auth") || ""`); got != "" {
			t.Errorf("token kept after sign out: %q", got)
		}
	})

	// The pending affiliate's tab stays open until the admin approves it (the back office).
	var pendingTab *pageTab
	t.Run("portal pending affiliate", func(t *testing.T) {
		p := browser(t)
		pendingTab = p
		signInPortal(p, base, w.katherine.email, demoPasswordForUI)
		p.waitFor("the status", `document.getElementById("status") !== null && document.getElementById("terms") !== null`)
		if got := p.text("#status-value"); got != "pending" {
			t.Errorf("status: %q, want pending", got)
		}
		if got := p.text("#status-h"); !strings.Contains(got, "pending review") {
			t.Errorf("status heading: %q", got)
		}
		if pageEval[bool](p, `document.querySelector("nav") !== null || document.getElementById("ref-code") !== null`) {
			t.Error("a pending affiliate sees the portal's views")
		}
		if got := p.attr("#next-payout", "data-eligible"); got != "false" {
			t.Errorf("pending affiliate's next payout eligible = %q", got)
		}
		w.axeCheck(t, p, "portal status")
		p.screenshots("portal-pending")
		// Reload: the stored token signs in again.
		p.navigate(base + "/portal/")
		p.waitFor("the status after reload", `document.getElementById("status-value")?.textContent === "pending"`)
	})
	if t.Failed() {
		pendingTab = nil
	}

	t.Run("portal apply", func(t *testing.T) {
		p := browser(t)
		// The program's own questions, set as an admin would through the records API: a
		// required text, a choice and a URL. Removed again at the end (the back office's
		// questions editor starts from none).
		var program, name string
		db.QueryRow(`SELECT id, name FROM programs WHERE slug = 'default'`).Scan(&program, &name)
		sendJSONStatus(t, http.MethodPatch, base+"/api/collections/programs/records/"+program, w.adminToken, `{"questions":[
			{"id":"where","label":"Where will you promote us?","kind":"text","required":true},
			{"id":"audience","label":"How big is your audience?","kind":"choice","choices":["Under 1,000","1,000 to 10,000","Over 10,000"]},
			{"id":"site","label":"Your website","kind":"url"}]}`, 200)
		t.Cleanup(func() {
			sendJSONStatus(t, http.MethodPatch, base+"/api/collections/programs/records/"+program, w.adminToken, `{"questions":[]}`, 200)
		})
		var apply struct{ Questions []any }
		getJSON(t, base+"/api/pba/apply/default", "", &apply)
		if len(apply.Questions) != 3 {
			t.Fatalf("GET /api/pba/apply/default: %d questions, want 3", len(apply.Questions))
		}
		p.navigate(base + "/portal/#/apply/default")
		p.waitFor("the apply page", `document.getElementById("apply-h")?.textContent === `+strconv.Quote("Join "+name)+` && document.querySelectorAll(".question").length === 3`)
		if got := p.text("#apply-rate"); !strings.Contains(got, "% of each sale") {
			t.Errorf("the rate in words: %q", got)
		}
		if n := pageEval[int](p, `document.querySelectorAll("#apply-next li").length`); n != 3 {
			t.Errorf("what happens next: %d steps", n)
		}
		// Each input labelled by its question (the choice by its legend, each option by its text).
		labels := pageEval[[]string](p, `[document.getElementById("q-where").labels[0]?.textContent.trim(), document.getElementById("q-where").type,
			document.querySelector(".question fieldset legend")?.textContent.trim(), document.getElementById("q-audience-1").labels[0]?.textContent.trim(),
			document.getElementById("q-site").labels[0]?.textContent.trim(), document.getElementById("q-site").type]`)
		if want := []string{"Where will you promote us? (required)", "text", "How big is your audience?", "1,000 to 10,000", "Your website", "url"}; strings.Join(labels, "|") != strings.Join(want, "|") {
			t.Errorf("question labels and types: %q, want %q", labels, want)
		}
		w.axeCheck(t, p, "portal apply")
		p.screenshots("portal-apply")
		p.typeInto("#su-name", "Mary Jackson")
		p.typeInto("#su-email", "mary@example.org")
		p.typeInto("#su-password", "a-long-password")
		p.typeInto("#su-password2", "a-different-one")
		p.click("#signup-form button[type=submit]")
		p.waitFor("the password confirmation error", `document.getElementById("su-password2-err").textContent !== ""`)
		p.typeInto("#su-password2", "a-long-password")
		// Without the required answer: the error names it, next to the question; nothing stored.
		p.click("#q-audience-1")
		p.typeInto("#q-site", "https://mary.example.org/space")
		p.click("#signup-form button[type=submit]")
		p.waitFor("the required answer's error", `document.getElementById("q-where-err").textContent !== "" && document.getElementById("q-where").getAttribute("aria-invalid") === "true"`)
		if n := countRows(t, db, `SELECT COUNT(*) FROM affiliates WHERE email = 'mary@example.org'`); n != 0 {
			t.Errorf("an application without its required answer was stored (%d)", n)
		}
		p.typeInto("#q-where", "My newsletter on early computing")
		p.click("#signup-form button[type=submit]")
		p.waitFor("pending review", `document.getElementById("status-value")?.textContent === "pending"`)
		var status, answers string
		if err := db.QueryRow(`SELECT status, answers FROM affiliates WHERE email = 'mary@example.org'`).Scan(&status, &answers); err != nil || status != "pending" {
			t.Fatalf("signed-up affiliate: status %q, %v", status, err)
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(answers), &got); err != nil || len(got) != 3 || got["where"] != "My newsletter on early computing" ||
			got["audience"] != "1,000 to 10,000" || got["site"] != "https://mary.example.org/space" {
			t.Errorf("stored answers %s (%v): want what was typed", answers, err)
		}

		// The verification mail's link opens the portal's page, which confirms the address.
		token := w.mail.waitLink(t, "mary@example.org", "/portal/#/verify/")
		p.navigate(base + "/portal/#/verify/" + token)
		p.waitFor("the confirmation", `document.getElementById("verify-done") !== null`)
		waitDB(t, p, db, "verified", 1, `SELECT COUNT(*) FROM affiliates WHERE email = 'mary@example.org' AND verified = 1`)
		w.axeCheck(t, p, "portal verify")
		p.click("#sign-out")

		// Password reset: ask on the portal, follow the mail's link, choose a new password.
		p.navigate(base + "/portal/#/forgot")
		p.waitFor("the reset form", `document.getElementById("forgot-form") !== null`)
		w.axeCheck(t, p, "portal forgot password")
		p.typeInto("#fg-email", "mary@example.org")
		p.click("#forgot-form button[type=submit]")
		p.waitFor("the confirmation", `document.getElementById("forgot-sent") !== null`)
		token = w.mail.waitLink(t, "mary@example.org", "/portal/#/reset/")
		p.navigate(base + "/portal/#/reset/" + token)
		p.waitFor("the new password form", `document.getElementById("reset-form") !== null`)
		p.typeInto("#rs-password", "another-long-password")
		p.typeInto("#rs-confirm", "another-long-password")
		p.click("#reset-form button[type=submit]")
		p.waitFor("the new password saved", `document.getElementById("reset-done") !== null`)
		w.axeCheck(t, p, "portal reset password")
		p.screenshots("portal-reset")
		maryToken := authToken(t, base, "affiliates", "mary@example.org", "another-long-password")

		// Email change: asked through the API, confirmed on the portal's page that the mail to
		// the new address links to (not the dashboard), with the password.
		sendJSONStatus(t, http.MethodPost, base+"/api/collections/affiliates/request-email-change", maryToken, `{"newEmail":"mary.new@example.org"}`, http.StatusNoContent)
		token = w.mail.waitLink(t, "mary.new@example.org", "/portal/#/email-change/")
		p.navigate(base + "/portal/#/email-change/" + token)
		p.waitFor("the email change form", `document.getElementById("email-change-form") !== null`)
		p.typeInto("#ec-password", "another-long-password")
		p.click("#email-change-form button[type=submit]")
		p.waitFor("the new address confirmed", `document.getElementById("email-change-done") !== null`)
		waitDB(t, p, db, "the new address", 1, `SELECT COUNT(*) FROM affiliates WHERE email = 'mary.new@example.org'`)
		w.axeCheck(t, p, "portal email change")
		// And back (through the API), for the back office's subtests that look for her.
		maryToken = authToken(t, base, "affiliates", "mary.new@example.org", "another-long-password")
		sendJSONStatus(t, http.MethodPost, base+"/api/collections/affiliates/request-email-change", maryToken, `{"newEmail":"mary@example.org"}`, http.StatusNoContent)
		token = w.mail.waitLink(t, "mary@example.org", "/portal/#/email-change/")
		sendJSONStatus(t, http.MethodPost, base+"/api/collections/affiliates/confirm-email-change", "",
			fmt.Sprintf(`{"token":%q,"password":"another-long-password"}`, token), http.StatusNoContent)
		waitDB(t, p, db, "the address back", 1, `SELECT COUNT(*) FROM affiliates WHERE email = 'mary@example.org'`)
	})
	return pendingTab
}

// waitLink waits for a mail to address holding a link with marker (/portal/#/reset/) and
// returns the token after it.
func (f *fakeMail) waitLink(t *testing.T, address, marker string) string {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(marker) + `([A-Za-z0-9._-]+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		f.mu.Lock()
		for i := len(f.sent) - 1; i >= 0; i-- {
			if m := f.sent[i]; m.To == address {
				if found := re.FindStringSubmatch(m.HTML); found != nil {
					f.mu.Unlock()
					return found[1]
				}
			}
		}
		f.mu.Unlock()
	}
	t.Fatalf("no mail to %s with a link to %s; sent: %v", address, marker, f.subjects(address))
	return ""
}

// decodeQR reads the QR code of a data:image/png;base64 URL.
func decodeQR(t *testing.T, dataURL string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(dataURL, "data:image/png;base64,"))
	if err != nil {
		t.Fatalf("QR PNG data URL: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("QR PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 200 || b.Dy() != b.Dx() {
		t.Errorf("QR PNG is %v: want a square of at least 200 px", b)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(image.Image(img))
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("the PNG holds no readable QR code: %v", err)
	}
	return res.GetText()
}

// phoneWidth is how wide the page is laid out on a 390 px screen (more: it scrolls sideways).
func phoneWidth(t *testing.T, p *pageTab) int {
	t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	defer chromedp.Do(p.ctx, chromedp.ResetViewport())
	time.Sleep(200 * time.Millisecond)
	return pageEval[int](p, `document.documentElement.scrollWidth`)
}
