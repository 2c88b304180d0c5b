package main

import (
	"database/sql"
	"html"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// surveyHref finds the rating link of score in a survey mail's HTML: its path and query.
var surveyHref = regexp.MustCompile(`href="[^"]*(/api/pba/survey\?token=[^"]+)"`)

// feedbackSubtests drive the application questions editor, the Feedback view's survey form,
// a survey mail's one-click rating and comment page, and the summary, against the database.
func feedbackSubtests(t *testing.T, b *backOffice, base string, db *sql.DB, mail *fakeMail) {
	t.Run("application questions", func(t *testing.T) {
		p := b.p
		var program, programName string
		db.QueryRow(`SELECT id, name FROM programs WHERE slug = 'default'`).Scan(&program, &programName)
		b.open(t, "#/programs/"+program, programName)
		p.waitFor("the questions editor", `document.getElementById("question-add") !== null`)
		// The tiers above load on their own: wait for them so the layout holds still for the click.
		var tiers int64
		db.QueryRow(`SELECT COUNT(*) FROM tiers WHERE program = ?`, program).Scan(&tiers)
		p.waitFor("the tiers", `document.querySelectorAll("#tiers-body tr.tier-row").length === `+strconv.FormatInt(tiers, 10)+
			` && (`+strconv.FormatInt(tiers, 10)+` > 0 || document.querySelector("#tiers-body td.empty") !== null)`)
		p.click("#question-add")
		p.waitFor("a new question", `document.getElementById("q-label-0") !== null`)
		p.typeInto("#q-label-0", "Where will you promote us?")
		p.click("#q-id-0") // leaving the label suggests an id
		p.waitFor("the suggested id", `document.getElementById("q-id-0").value === "where_will_you_promote_us"`)
		p.typeInto("#q-id-0", "Where Bad")
		p.click("#questions-save")
		p.waitFor("the id error", `document.getElementById("q-err-0").textContent.includes("id:")`)
		p.typeInto("#q-id-0", "where")
		p.click("#questions-save")
		waitDB(t, p, db, "the saved question", 1, `SELECT COUNT(*) FROM programs WHERE id = ? AND questions LIKE '%"id":"where"%'`, program)
		b.checkAxe(t, "application questions")
		p.screenshots("backoffice-questions")

		// An application's answers show on the affiliate's page.
		token := pageEval[string](p, `JSON.parse(localStorage.getItem("pba_admin_auth")).token`)
		var ada, adaName string
		db.QueryRow(`SELECT id, name FROM affiliates WHERE code = 'ada-lovelace'`).Scan(&ada, &adaName)
		sendJSONStatus(t, http.MethodPatch, base+"/api/collections/affiliates/records/"+ada, token, `{"answers":{"where":"My engine newsletter"}}`, http.StatusOK)
		b.open(t, "#/affiliates/"+ada, adaName)
		p.waitFor("the answers", `[...document.querySelectorAll(".answers dt")].some((d) => d.textContent === "Where will you promote us?") &&
			[...document.querySelectorAll(".answers dd")].some((d) => d.textContent === "My engine newsletter")`)
	})

	t.Run("survey and feedback summary", func(t *testing.T) {
		p := b.p
		var approved int64
		db.QueryRow(`SELECT COUNT(*) FROM affiliates WHERE status = 'approved' AND email != ''`).Scan(&approved)
		var grace, graceEmail string
		db.QueryRow(`SELECT id, email FROM affiliates WHERE code = 'grace-hopper'`).Scan(&grace, &graceEmail)
		b.open(t, "#/feedback", "Feedback")
		p.waitFor("the summary", `document.getElementById("fb-responses") !== null`)
		// Create a one-off survey due a minute ago: the mail worker sends it at once.
		p.typeInto("#sv-name", "Winter pulse")
		p.setValue("#sv-schedule", "once")
		p.setValue("#sv-send-at", time.Now().Add(-time.Minute).Format("2006-01-02T15:04"))
		p.click("#survey-save")
		waitDB(t, p, db, "the survey", 1, `SELECT COUNT(*) FROM surveys WHERE name = 'Winter pulse' AND active = 1`)
		waitDB(t, p, db, "survey mails sent", approved, `SELECT COUNT(*) FROM deliveries WHERE template = 'survey' AND status = 'sent'`)
		var link string
		deadline := time.Now().Add(10 * time.Second)
		for link == "" {
			mail.mu.Lock()
			for _, m := range mail.sent {
				if m.To == graceEmail && strings.Contains(m.HTML, "/api/pba/survey?") {
					for _, match := range surveyHref.FindAllStringSubmatch(m.HTML, -1) {
						if u := html.UnescapeString(match[1]); strings.HasSuffix(u, "&score=9") {
							link = u
						}
					}
				}
			}
			mail.mu.Unlock()
			if link == "" && time.Now().After(deadline) {
				t.Fatalf("no survey mail with a score-9 link to %s", graceEmail)
			}
			time.Sleep(100 * time.Millisecond)
		}

		// The one-click page: the score recorded, a comment form, no script, a strict CSP.
		p.navigate(base + link)
		watchCSP(p)
		p.waitFor("the survey page", `document.querySelector("h1").textContent === "Thank you!" && document.getElementById("comment") !== null`)
		waitDB(t, p, db, "Grace's rating", 9, `SELECT rating FROM feedback WHERE affiliate = ? AND survey != ''`, grace)
		b.checkAxe(t, "survey page")
		p.screenshots("survey-page")
		p.typeInto("#comment", "More banners in the spring, please.")
		p.click("form button[type=submit]")
		p.waitFor("the saved comment", `document.body.textContent.includes("Your comment is saved")`)
		waitDB(t, p, db, "Grace's comment", 1, `SELECT COUNT(*) FROM feedback WHERE affiliate = ? AND comment = 'More banners in the spring, please.' AND rating = 9`, grace)
		if v := pageEval[string](p, `JSON.stringify(window.pbaCSP || [])`); v != "[]" {
			t.Errorf("the survey page broke its Content-Security-Policy: %s", v)
		}
		if n := pageEval[int](p, `document.scripts.length`); n != 0 {
			t.Errorf("the survey page has %d scripts", n)
		}

		// Back in the back office: the summary equals the database, computed here apart.
		p.navigate(base + "/admin/#/feedback")
		watchCSP(p)
		p.waitFor("the back office", `document.getElementById("sign-out") !== null`)
		var n, promoters, detractors int64
		db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(rating >= 9), 0), COALESCE(SUM(rating <= 6), 0) FROM feedback`).Scan(&n, &promoters, &detractors)
		p.waitFor("the responses", `document.getElementById("fb-responses").dataset.value === "`+strconv.FormatInt(n, 10)+`"`)
		// The shown NPS is (promoters − detractors) / responses in basis points, rounded: within
		// half a basis point of the exact ratio.
		shown, _ := strconv.ParseInt(p.attr("#fb-nps", "data-value"), 10, 64)
		if diff := shown*n - (promoters-detractors)*10000; n == 0 || 2*diff > n || -2*diff > n {
			t.Errorf("NPS shown %d bp; the database has %d responses, %d promoters, %d detractors", shown, n, promoters, detractors)
		}
		p.waitFor("the comment", `document.getElementById("fb-comments").textContent.includes("More banners in the spring")`)
		p.waitFor("the survey's response rate", `[...document.querySelectorAll("#fb-surveys tbody tr")].some((r) => r.textContent.includes("Winter pulse") && r.textContent.includes("`+strconv.FormatInt(approved, 10)+`"))`)
		b.checkAxe(t, "feedback")
		p.screenshots("backoffice-feedback")
	})
}
