package main

import (
	"testing"
	"time"
)

// incentivesSubtest walks the back office's Incentives view: the program's time zone, a
// campaign entered in human units with local dates across a DST change (stored as the UTC
// instants), a refusal from the server shown at its field, the list with each state.
func incentivesSubtest(t *testing.T, b *backOffice) {
	t.Run("incentives", func(t *testing.T) {
		p := b.p
		b.open(t, "#/incentives", "Incentives")
		p.waitFor("the program's campaigns", `document.getElementById("incentives-body").dataset.loaded === "true"`)
		p.setValue("#inc-zone", "Europe/Berlin")
		p.click("#inc-zone ~ button")
		waitDB(t, p, b.db, "the program's time zone", 1, `SELECT COUNT(*) FROM programs WHERE timezone = 'Europe/Berlin'`)
		// The programs are re-read after the save (New campaign is disabled meanwhile).
		p.waitFor("the saved time zone", `document.getElementById("msg").textContent.includes("now in Europe/Berlin") && !document.getElementById("new-incentive").disabled`)

		// A rate boost over Berlin's change to summer time (29 March 2026).
		p.click("#new-incentive")
		p.waitFor("the form", `document.getElementById("incentive-form") !== null`)
		p.setValue("#inc-name", "Spring boost")
		p.setValue("#inc-desc", "Five more points all weekend.")
		p.setValue("#inc-points", "five")
		p.setValue("#inc-starts", "2026-03-28T00:00")
		p.setValue("#inc-ends", "2026-03-30T00:00")
		p.click("#incentive-form button[type=submit]")
		p.waitFor("the value error", `document.getElementById("inc-value-err").textContent !== ""`)
		p.setValue("#inc-points", "5")
		p.setValue("#inc-ends", "2026-03-27T00:00") // before the start: the server's 400 names ends_at
		p.click("#incentive-form button[type=submit]")
		p.waitFor("the server's ends_at error", `document.getElementById("inc-ends-err").textContent.includes("end after")`)
		p.setValue("#inc-ends", "2026-03-30T00:00")
		p.click("#incentive-form button[type=submit]")
		waitDB(t, p, b.db, "the campaign in UTC", 1, `SELECT COUNT(*) FROM incentives WHERE name = 'Spring boost' AND kind = 'rate_boost'
			AND value = 500 AND starts_at = '2026-03-27 23:00:00.000Z' AND ends_at = '2026-03-29 22:00:00.000Z' AND eligibility = 'all' AND active`)
		p.waitFor("the ended campaign in the list", `[...document.querySelectorAll("#incentives-body tr")].some((r) => r.textContent.includes("Spring boost") && r.textContent.includes("+5 points") && r.textContent.includes("2026-03-28 00:00") && r.textContent.includes("ended"))`)

		// An upcoming target bonus for one tier, money typed as money.
		next := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
		p.click("#new-incentive")
		p.waitFor("an empty form", `document.getElementById("inc-name").value === ""`)
		p.setValue("#inc-name", "Gold rush")
		p.setValue("#inc-kind", "target_bonus")
		p.waitFor("the bonus fields", `document.getElementById("inc-bonus") !== null`)
		p.setValue("#inc-bonus", "$250")
		p.setValue("#inc-target-kind", "revenue")
		p.setValue("#inc-target", "5000")
		p.setValue("#inc-starts", next+"T09:00")
		p.setValue("#inc-ends", next+"T18:00")
		pageEval[bool](p, `(document.querySelector('input[name="inc-elig"][value="tiers"]').click(), true)`)
		p.waitFor("the tiers", `document.querySelectorAll("#inc-tiers input").length > 0`)
		pageEval[bool](p, `(document.querySelector("#inc-tiers input").click(), true)`)
		b.checkAxe(t, "incentives form")
		p.click("#incentive-form button[type=submit]")
		waitDB(t, p, b.db, "the target bonus", 1, `SELECT COUNT(*) FROM incentives WHERE name = 'Gold rush' AND kind = 'target_bonus'
			AND bonus = 25000 AND target_kind = 'revenue' AND target = 500000 AND eligibility = 'tiers' AND tiers != '[]' AND affiliates = '[]'`)
		p.waitFor("the upcoming campaign", `[...document.querySelectorAll("#incentives-body tr")].some((r) => r.textContent.includes("Gold rush") && r.textContent.includes("upcoming") && r.textContent.includes("1 tier(s)"))`)
		b.checkAxe(t, "incentives")
		p.screenshots("backoffice-incentives")
	})
}
