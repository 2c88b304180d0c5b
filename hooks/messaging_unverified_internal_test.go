package hooks

import (
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// Whoever signs up chooses both the address and the name (and the code, and the labels of the
// links it makes): mail to an address not yet verified carries none of it, so the signup
// form cannot send a stranger a message ("URGENT: your account is locked, verify at …").
// Once the address is verified the mails are personal again.
func TestMailToUnverifiedAddressCarriesNoSignerText(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC))
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com", PublicURL: "https://aff.example.com"}, clock, true)

	const phish = "URGENT: your account is locked, verify at https://evil.example/login"
	signerText := []string{"URGENT", "evil", "locked", "Spring"}
	pending := createTestAffiliate(t, app, phish, "urgent-locked-evil", collections.AffiliatePending, "victim1@example.org",
		map[string]any{"verified": false})
	approved := createTestAffiliate(t, app, phish, "account-locked-evil", collections.AffiliateApproved, "victim2@example.org",
		map[string]any{"verified": false})
	links, _ := app.FindCachedCollectionByNameOrId(collections.Links)
	link := core.NewRecord(links)
	link.Load(map[string]any{"affiliate": approved.Id, "program": approved.GetString(collections.FieldProgram),
		"code": "locked-evil-link", "destination": "https://shop.example.com/", "label": "Spring: verify at evil.example"})
	if err := app.Save(link); err != nil {
		t.Fatal(err)
	}
	inWeek := time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC)
	insertTestClick(t, app, approved, link.Id, "", inWeek)
	insertTestCommission(t, app, approved, collections.KindSale, 3000, collections.CommissionPending, inWeek)
	if err := e.digests.queueDigests(); err != nil {
		t.Fatal(err)
	}
	createBroadcast(t, app, "News for {{.Name}}", "Hello {{.Name}}, your code {{.Code}}: {{.Link}}", map[string]any{"status": []string{"approved"}})
	runEngine(t, e)

	got := map[string]string{} // template -> text of the mails to the two victims
	for _, to := range []string{pending.Email(), approved.Email()} {
		for _, m := range fake.mailsTo(to) {
			subject, _ := m["subject"].(string)
			html, _ := m["html"].(string)
			text, _ := m["text"].(string)
			for _, s := range signerText {
				if strings.Contains(subject+html+text, s) {
					t.Errorf("mail %q to the unverified %s carries the signer's %q:\n%s\n%s", subject, to, s, text, html)
				}
			}
			tags, _ := m["tags"].([]any)
			for _, tag := range tags {
				if tg, _ := tag.(map[string]any); tg["name"] == "template" {
					got[tg["value"].(string)] = subject + "\n" + text
				}
			}
		}
	}
	for _, template := range []string{templateApplicationReceived, templateApproved, templateWeeklyDigest, templateBroadcast} {
		if !strings.Contains(got[template], "Hi there,") && !strings.Contains(got[template], "Hello there,") {
			t.Errorf("%s mail: %q, want the neutral greeting", template, got[template])
		}
	}
	if !strings.Contains(got[templateApproved], "Sign in to the portal for your referral link") {
		t.Errorf("approved mail without a link must send the affiliate to the portal: %q", got[templateApproved])
	}

	// The address is verified: the next mails are personal again.
	approved.SetVerified(true)
	approved.Set(collections.FieldName, "Vic Tim")
	if err := app.Save(approved); err != nil {
		t.Fatal(err)
	}
	createBroadcast(t, app, "More news for {{.Name}}", "Hello {{.Name}}, your link {{.Link}}", map[string]any{"status": []string{"approved"}})
	runEngine(t, e)
	all := fake.mailsTo(approved.Email())
	last, _ := all[len(all)-1]["text"].(string)
	if !strings.Contains(last, "Hello Vic Tim, your link https://aff.example.com/r/account-locked-evil") {
		t.Errorf("mail to the verified address: %q", last)
	}
}

// A mail_templates row still equal to a superseded shipped default is brought up to date at
// start; a row an admin edited is left alone.
func TestSupersededDefaultTemplatesUpgraded(t *testing.T) {
	app := pbatest.TempApp(t)
	if err := ensureMailTemplates(app); err != nil {
		t.Fatal(err)
	}
	// The approved template as shipped before mail to unverified addresses left the link out.
	oldApproved := map[string]any{
		"subject": "You're in: your affiliate account is approved",
		"text":    "Hi {{.Name}},\n\nyour application to {{.Program}} is approved. Your referral link:\n{{.Link}}\n\nSign in to the portal for links, stats and payouts: {{.PortalURL}}\n",
		"html":    `<p>Hi {{.Name}},</p><p>your application to {{.Program}} is approved. Your referral link:</p><p><a href="{{.Link}}">{{.Link}}</a></p><p><a href="{{.PortalURL}}">Open the portal</a> for links, stats and payouts.</p>`,
	}
	edited := map[string]any{"subject": "Welcome", "text": "Hi {{.Name}}: {{.Link}}", "html": "<p>Hi {{.Name}}: {{.Link}}</p>"}
	set := func(name string, parts map[string]any) {
		if _, err := app.DB().Update(collections.MailTemplates, parts, dbx.HashExp{"name": name}).Execute(); err != nil {
			t.Fatal(err)
		}
	}
	set(templateApproved, oldApproved)
	set(templateRejected, edited)
	if err := ensureMailTemplates(app); err != nil {
		t.Fatal(err)
	}
	stored, err := loadMailTemplates(app)
	if err != nil {
		t.Fatal(err)
	}
	if want := lifecycleTemplates()[templateApproved]; stored[templateApproved] != want {
		t.Errorf("approved is %+v, want the current default", stored[templateApproved])
	}
	if got := stored[templateRejected]; got.subject != "Welcome" || got.text != edited["text"] {
		t.Errorf("the admin's rejected template was replaced: %+v", got)
	}
}
