package hooks

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// A campaign is announced once, when it starts, to the approved affiliates it is for; those
// who opted out of marketing mail are skipped with the reason; later runs send nothing more.
func TestIncentiveAnnouncedOnceWhenItStarts(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	now := time.Date(2026, 11, 30, 22, 30, 0, 0, time.UTC)
	clock := pbatest.NewClock(now)
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com", PublicURL: "https://aff.example.com"}, clock, true)
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	program.Set(collections.ProgramTimezone, "Europe/Berlin")
	if err := app.Save(program); err != nil {
		t.Fatal(err)
	}
	ada := createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)
	otto := createTestAffiliate(t, app, "Otto", "otto-1", collections.AffiliateApproved, "otto@example.com", map[string]any{"preferred_channel": collections.ChannelNone})
	createTestAffiliate(t, app, "Pat", "pat-1", collections.AffiliatePending, "pat@example.com", nil)
	bea := createTestAffiliate(t, app, "Bea", "bea-1", collections.AffiliateApproved, "bea@example.com", nil)
	// Ivy takes mail but not campaign news (affiliates.mail_opt_out).
	ivy := createTestAffiliate(t, app, "Ivy", "ivy-1", collections.AffiliateApproved, "ivy@example.com", map[string]any{"mail_opt_out": []string{collections.MailIncentive}})

	// Midnight of 1 December in Berlin, for Ada and Otto only.
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, mustZone(t, "Europe/Berlin"))
	in, err := pbatest.Save(app, collections.Incentives, map[string]any{"program": program.Id, "name": "December boost", "description": "Gifts sell.",
		"kind": "rate_boost", "value": 550, "eligibility": "affiliates", "affiliates": []string{ada.Id, otto.Id, ivy.Id},
		"starts_at": start, "ends_at": start.AddDate(0, 1, 0), "active": true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	announcements := func() (n int) {
		app.DB().Select("COUNT(*)").From(collections.Deliveries).Where(dbx.Like("idempotency_key", "incentive:")).Row(&n)
		return n
	}
	if n := announcements(); n != 0 {
		t.Fatalf("%d announcements before the start", n)
	}
	_, before := fake.snapshot() // the approval mails
	clock.Advance(time.Hour)     // 23:30 UTC: 00:30 in Berlin, the campaign runs
	for i := 0; i < 3; i++ {
		if err := e.run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, total := fake.snapshot(); total != before+1 {
		t.Fatalf("%d mails after the start, want 1", total-before)
	}
	var rows []struct {
		Key    string `db:"idempotency_key"`
		Status string `db:"status"`
		Error  string `db:"error"`
	}
	if err := app.DB().Select("idempotency_key", "status", "error").From(collections.Deliveries).
		Where(dbx.Like("idempotency_key", "incentive:")).OrderBy("idempotency_key").All(&rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("deliveries %v", rows)
	}
	for _, r := range rows {
		switch r.Key {
		case "incentive:" + in.Id + ":" + ada.Id:
			if r.Status != collections.DeliverySent {
				t.Errorf("Ada's: %v", r)
			}
		case "incentive:" + in.Id + ":" + otto.Id:
			if r.Status != collections.DeliverySkipped || !strings.Contains(r.Error, "preferred_channel") {
				t.Errorf("Otto's: %v", r)
			}
		case "incentive:" + in.Id + ":" + ivy.Id:
			if r.Status != collections.DeliverySkipped || !strings.Contains(r.Error, "opted out of incentive") {
				t.Errorf("Ivy's: %v", r)
			}
		default:
			t.Errorf("delivery to someone the campaign is not for: %v (Bea %s)", r, bea.Id)
		}
	}
	adas := fake.mailsTo("ada@example.com")
	mail := adas[len(adas)-1]
	text, _ := mail["text"].(string)
	if mail["subject"] != "New campaign: December boost" || !strings.Contains(text, "+5.5 percentage points") ||
		!strings.Contains(text, "From 1 Dec 2026 00:00 CET until 1 Jan 2027 00:00 CET") || !strings.Contains(text, "Unsubscribe") {
		t.Fatalf("mail %v", mail)
	}
	if stored, _ := app.FindRecordById(collections.Incentives, in.Id); stored.GetDateTime(collections.IncentiveAnnouncedAt).IsZero() {
		t.Fatal("campaign not marked announced")
	}
}

// activeIncentiveRate (for the portal's terms) sees what the engine applies at that instant.
func TestActiveIncentiveRate(t *testing.T) {
	app := pbatest.TempApp(t)
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	a := createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)
	now := time.Now().UTC()
	for _, c := range []map[string]any{
		{"name": "Boost", "kind": "rate_boost", "value": 300, "starts_at": now.Add(-time.Hour), "ends_at": now.Add(time.Hour)},
		{"name": "Double", "kind": "multiplier", "value": 2000, "starts_at": now.Add(-time.Hour), "ends_at": now.Add(time.Hour)},
		{"name": "Later", "kind": "rate_boost", "value": 900, "starts_at": now.Add(time.Hour), "ends_at": now.Add(2 * time.Hour)},
		{"name": "Bonus", "kind": "target_bonus", "target_kind": "sales", "target": 1, "bonus": 1, "starts_at": now.Add(-time.Hour), "ends_at": now.Add(time.Hour)},
	} {
		c["program"], c["eligibility"], c["active"] = program.Id, "all", true
		if _, err := pbatest.Save(app, collections.Incentives, c); err != nil {
			t.Fatal(err)
		}
	}
	boost, mult, names, err := activeIncentiveRate(app, a, now)
	if err != nil || boost != 300 || mult != 2000 || strings.Join(names, ",") != "Boost,Double" && strings.Join(names, ",") != "Double,Boost" {
		t.Fatalf("now: %d %d %v %v", boost, mult, names, err)
	}
	boost, mult, names, err = activeIncentiveRate(app, a, now.Add(90*time.Minute))
	if err != nil || boost != 900 || mult != 1000 || len(names) != 1 {
		t.Fatalf("later: %d %d %v %v", boost, mult, names, err)
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
