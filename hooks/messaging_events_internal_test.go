package hooks

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/mails"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// insertTestCommission writes a commission like the engine does (time-ordered id, raw SQL).
func insertTestCommission(t testing.TB, app core.App, affiliate *core.Record, kind string, amount int, status string, at time.Time) string {
	t.Helper()
	id := store.NewOrderedID(at)
	_, err := app.DB().NewQuery(`INSERT INTO commissions (id, affiliate, program, conversion, kind, amount, currency, status,
		payable_at, payout, rule, ref, note, created, updated) VALUES ({:id}, {:a}, {:p}, '', {:kind}, {:amount}, 'usd', {:status},
		{:at}, '', '{}', {:ref}, '', {:at}, {:at})`).Bind(dbx.Params{
		"id": id, "a": affiliate.Id, "p": affiliate.GetString(collections.FieldProgram), "kind": kind, "amount": amount,
		"status": status, "at": store.DBTime(at), "ref": "test:" + id,
	}).Execute()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// insertTestClick writes an unflagged click (flag: "" or a fraud flag).
func insertTestClick(t testing.TB, app core.App, affiliate *core.Record, link string, flag string, at time.Time) {
	t.Helper()
	_, err := app.DB().NewQuery("INSERT INTO clicks (" + clickColumns + ") VALUES ({:id}, {:link}, {:a}, {:p}, 'v1', 'h', 'ua', '', '', '', 1, {:flag}, {:at})").
		Bind(dbx.Params{"id": store.NewOrderedID(at), "link": link, "a": affiliate.Id, "p": affiliate.GetString(collections.FieldProgram),
			"flag": flag, "at": store.DBTime(at)}).Execute()
	if err != nil {
		t.Fatal(err)
	}
}

// runEngine runs the mail worker once and fails the test on error.
func runEngine(t *testing.T, e *testEngine) {
	t.Helper()
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// New commissions are mailed at most once per affiliate and hour, after the hour ended,
// listing all of that hour's commissions; clawbacks and voided ones are not news.
func TestNewCommissionMailBatchedHourly(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	hour := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	clock := pbatest.NewClock(hour.Add(5 * time.Minute))
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, clock, true)
	a := createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)
	b := createTestAffiliate(t, app, "Bea", "bea-1", collections.AffiliateApproved, "bea@example.com", nil)

	insertTestCommission(t, app, a, collections.KindSale, 1250, collections.CommissionPending, hour.Add(time.Minute))
	insertTestCommission(t, app, a, collections.KindRecurring, 750, collections.CommissionPending, hour.Add(2*time.Minute))
	insertTestCommission(t, app, a, collections.KindClawback, -500, collections.CommissionPayable, hour.Add(3*time.Minute))
	insertTestCommission(t, app, b, collections.KindSale, 999, collections.CommissionVoid, hour.Add(4*time.Minute))
	runEngine(t, e)
	if _, total := fake.snapshot(); total != 2 { // the two approval mails only: the hour is not over
		t.Fatalf("sent %d before the hour ended", total)
	}

	clock.Advance(30 * time.Minute)
	insertTestCommission(t, app, a, collections.KindSale, 2000, collections.CommissionPending, clock.Now())
	clock.Advance(30 * time.Minute) // 15:05: the 14:00 hour is over
	runEngine(t, e)
	got := fake.mailsTo("ada@example.com")
	if len(got) != 2 {
		t.Fatalf("ada got %d mails, want approval + one commission mail", len(got))
	}
	m := got[1]
	text, _ := m["text"].(string)
	if subject, _ := m["subject"].(string); subject != "You earned 40.00 USD in new commissions" {
		t.Fatalf("subject %q", subject)
	}
	for _, want := range []string{"12.50 USD (sale", "7.50 USD (recurring", "20.00 USD (sale", "Pending: 40.00 USD", "Payable: -5.00 USD"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	// Bea's only commission was voided: her delivery is skipped, not sent.
	if got := len(fake.mailsTo("bea@example.com")); got != 1 {
		t.Fatalf("bea got %d mails", got)
	}
	var skipped int
	_ = app.DB().Select("COUNT(*)").From(collections.Deliveries).Where(dbx.HashExp{"affiliate": b.Id, "status": collections.DeliverySkipped}).Row(&skipped)
	if skipped != 1 {
		t.Fatalf("bea's voided commission: %d skipped deliveries, want 1", skipped)
	}

	// More commissions in the 15:00 hour: one more mail after it ends, none before; a
	// restarted engine (new process, scan from 24h back) queues nothing twice.
	insertTestCommission(t, app, a, collections.KindSale, 100, collections.CommissionPending, clock.Now())
	insertTestCommission(t, app, a, collections.KindBonus, 5000, collections.CommissionPending, clock.Now().Add(time.Minute))
	runEngine(t, e)
	if n := len(fake.mailsTo("ada@example.com")); n != 2 {
		t.Fatalf("mailed within the hour: %d", n)
	}
	clock.Advance(time.Hour)
	e2 := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, clock, false)
	runEngine(t, e2)
	runEngine(t, e)
	got = fake.mailsTo("ada@example.com")
	if len(got) != 3 {
		t.Fatalf("ada got %d mails, want 3", len(got))
	}
	if subject, _ := got[2]["subject"].(string); subject != "You earned 51.00 USD in new commissions" {
		t.Fatalf("second hour subject %q", subject)
	}
}

// A recorded tier move mails the affiliate once, naming both tiers and the direction.
func TestTierChangedMail(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, clock, true)
	a := createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)
	tiers, _ := app.FindCachedCollectionByNameOrId(collections.Tiers)
	mk := func(name string, rank int) *core.Record {
		r := core.NewRecord(tiers)
		r.Load(map[string]any{"program": a.GetString(collections.FieldProgram), "name": name, "rank": rank, "commission_value": 2500})
		if err := app.Save(r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	silver, gold := mk("Silver", 1), mk("Gold <3>", 2)
	runEngine(t, e) // the approval mail first, so the order below is the tier mails
	changes, _ := app.FindCachedCollectionByNameOrId(collections.TierChanges)
	move := func(from, to, period string) {
		r := core.NewRecord(changes)
		r.Load(map[string]any{"affiliate": a.Id, "from_tier": from, "to_tier": to, "period": period, "reason": "12 sales in " + period, "by": "pbaTiers"})
		if err := app.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	move(silver.Id, gold.Id, "2026-10")
	runEngine(t, e)
	move(gold.Id, "", "2026-11")
	runEngine(t, e)
	runEngine(t, e)
	got := fake.mailsTo("ada@example.com")
	if len(got) != 3 {
		t.Fatalf("got %d mails, want approval + 2 tier mails", len(got))
	}
	up, down := got[1], got[2]
	if s, _ := up["subject"].(string); s != "You moved up to Gold <3>" {
		t.Fatalf("promotion subject %q", s)
	}
	if h, _ := up["html"].(string); !strings.Contains(h, "from <strong>Silver</strong> to <strong>Gold &lt;3&gt;</strong>") {
		t.Fatalf("promotion html %s", h)
	}
	if s, _ := down["subject"].(string); s != "Your tier is now Standard" {
		t.Fatalf("demotion subject %q", s)
	}
}

// The weekly digest goes out per affiliate time zone once their week has ended, only to
// affiliates with activity, once, with their figures and rank; opted-out affiliates get a
// recorded skip.
func TestWeeklyDigest(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	// Monday 23 Nov 2026, 03:00 UTC: Tokyo's week ended (12:00 there), New York's has not
	// (Sunday 22:00 there).
	monday := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	clock := pbatest.NewClock(monday)
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com", PublicURL: "https://aff.example.com"}, clock, true)
	tokyo := createTestAffiliate(t, app, "Tomo", "tomo-1", collections.AffiliateApproved, "tomo@example.com", map[string]any{"timezone": "Asia/Tokyo"})
	ny := createTestAffiliate(t, app, "Nia", "nia-1", collections.AffiliateApproved, "nia@example.com", map[string]any{"timezone": "America/New_York"})
	createTestAffiliate(t, app, "Ida", "ida-1", collections.AffiliateApproved, "ida@example.com", nil)
	optout := createTestAffiliate(t, app, "Otto", "otto-1", collections.AffiliateApproved, "otto@example.com", map[string]any{"timezone": "Asia/Tokyo", "preferred_channel": collections.ChannelNone})
	runEngine(t, e) // the approval mails first: the digests below are then each affiliate's second mail

	links, _ := app.FindCachedCollectionByNameOrId(collections.Links)
	link := core.NewRecord(links)
	link.Load(map[string]any{"affiliate": tokyo.Id, "program": tokyo.GetString(collections.FieldProgram), "code": "tomo-spring", "destination": "https://shop.example.com/", "label": "Spring <sale>"})
	if err := app.Save(link); err != nil {
		t.Fatal(err)
	}
	// Tokyo's week: Mon 16 Nov 00:00 JST = Sun 15 Nov 15:00 UTC, to Sun 22 Nov 15:00 UTC.
	inWeek := time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		insertTestClick(t, app, tokyo, link.Id, "", inWeek.Add(time.Duration(i)*time.Minute))
	}
	insertTestClick(t, app, tokyo, "", "", inWeek)
	insertTestClick(t, app, tokyo, link.Id, "bot", inWeek)                                      // flagged: not counted
	insertTestClick(t, app, tokyo, link.Id, "", time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC)) // Monday in Tokyo: next week
	insertTestCommission(t, app, tokyo, collections.KindSale, 3000, collections.CommissionPending, inWeek)
	insertTestCommission(t, app, optout, collections.KindSale, 5000, collections.CommissionPending, inWeek)
	insertTestCommission(t, app, ny, collections.KindSale, 100, collections.CommissionPending, inWeek)
	// The week before: Tokyo was third behind two others.
	before := inWeek.AddDate(0, 0, -7)
	insertTestCommission(t, app, optout, collections.KindSale, 9000, collections.CommissionPending, before)
	insertTestCommission(t, app, ny, collections.KindSale, 8000, collections.CommissionPending, before)
	insertTestCommission(t, app, tokyo, collections.KindSale, 10, collections.CommissionPending, before)

	for i := 0; i < 2; i++ {
		if err := e.digests.queueDigests(); err != nil {
			t.Fatal(err)
		}
	}
	runEngine(t, e)
	got := fake.mailsTo("tomo@example.com")
	if len(got) != 2 { // approval + digest
		t.Fatalf("tokyo got %d mails", len(got))
	}
	d := got[1]
	text, _ := d["text"].(string)
	// Four unflagged clicks in the week, three of them on the link.
	if s, _ := d["subject"].(string); s != "Your week: 4 clicks, 0 sales, 30.00 USD earned" {
		t.Fatalf("digest subject %q\n%s", s, text)
	}
	for _, want := range []string{"16 Nov – 22 Nov 2026", "Best link: Spring <sale> (3 clicks) https://aff.example.com/r/tomo-spring", "Rank: 2 of 3, up 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("digest text lacks %q:\n%s", want, text)
		}
	}
	if h, _ := d["html"].(string); strings.Contains(h, "<sale>") || !strings.Contains(h, "Spring &lt;sale&gt;") {
		t.Errorf("digest html not escaped: %s", h)
	}
	if h, _ := d["headers"].(map[string]any); h["List-Unsubscribe"] == nil {
		t.Errorf("digest without List-Unsubscribe: %v", d["headers"])
	}
	if n := len(fake.mailsTo("nia@example.com")); n != 1 {
		t.Fatalf("new york's week has not ended, got %d mails", n)
	}
	if n := len(fake.mailsTo("ida@example.com")); n != 1 {
		t.Fatalf("idle affiliate got %d mails", n)
	}
	var status string
	if err := app.DB().Select("status").From(collections.Deliveries).Where(dbx.HashExp{"affiliate": optout.Id, "template": templateWeeklyDigest}).Row(&status); err != nil || status != collections.DeliverySkipped {
		t.Fatalf("opted-out digest: %q %v", status, err)
	}

	// Five hours later New York's week has ended too; Tokyo is not mailed again.
	clock.Advance(5 * time.Hour)
	if err := e.digests.queueDigests(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	if n := len(fake.mailsTo("nia@example.com")); n != 2 {
		t.Fatalf("new york got %d mails after its week ended", n)
	}
	if n := len(fake.mailsTo("tomo@example.com")); n != 2 {
		t.Fatalf("tokyo mailed twice: %d", n)
	}
	// Three days late, nothing is queued for a week that ended long ago.
	clock.Advance(72 * time.Hour)
	before2 := deliveriesByStatus(t, app, "")
	if err := e.digests.queueDigests(); err != nil {
		t.Fatal(err)
	}
	if after := deliveriesByStatus(t, app, ""); after[collections.DeliveryQueued] != before2[collections.DeliveryQueued] {
		t.Fatalf("late digests queued: %v", after)
	}
}

// lastWeek is Monday to Monday in the zone, across a DST change.
func TestLastWeekBoundaries(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin") // embedded: time/tzdata
	if err != nil {
		t.Fatal(err)
	}
	start, end := lastWeek(time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC), berlin)
	if start.In(berlin).Format("Mon 2006-01-02 15:04") != "Mon 2026-10-26 00:00" || end.In(berlin).Format("Mon 2006-01-02 15:04") != "Mon 2026-11-02 00:00" {
		t.Fatalf("week %v – %v", start.In(berlin), end.In(berlin))
	}
	// Clocks went back on Sunday 25 Oct: that week lasts an hour longer.
	start, end = lastWeek(time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC), berlin)
	if end.Sub(start) != 7*24*time.Hour+time.Hour {
		t.Fatalf("DST week lasts %v", end.Sub(start))
	}
}

// Admins edit templates in mail_templates: defaults are seeded, an edit applies to the next
// mail (values still escaped), and a broken template is refused naming the field.
func TestMailTemplatesEditable(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, clock, true)
	if err := ensureMailTemplates(app); err != nil {
		t.Fatal(err)
	}
	if err := ensureMailTemplates(app); err != nil { // idempotent
		t.Fatal(err)
	}
	rows, err := app.FindAllRecords(collections.MailTemplates)
	if err != nil || len(rows) != len(lifecycleTemplates()) {
		t.Fatalf("seeded %d templates (%v), want %d", len(rows), err, len(lifecycleTemplates()))
	}
	approved, err := app.FindFirstRecordByData(collections.MailTemplates, "name", templateApproved)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(approved.GetString("variables"), "{{.Link}}") {
		t.Fatalf("variables %q", approved.GetString("variables"))
	}

	for field, bad := range map[string]string{"html": "<p>{{.Nope}}</p>", "subject": "Hi {{.Name", "text": "{{range .Links}}"} {
		r, _ := app.FindRecordById(collections.MailTemplates, approved.Id)
		r.Set(field, bad)
		err := app.Save(r)
		var verrs validation.Errors
		if !errors.As(err, &verrs) || verrs[field] == nil {
			t.Fatalf("broken %s saved or wrong error: %v", field, err)
		}
	}
	approved.Set("subject", "Welcome aboard, {{.Name}}")
	approved.Set("html", `<p>Dear {{.Name}}, your code is <b>{{.Code}}</b>.</p>{{range .Links}}<a href="{{.URL}}">{{.Label}}</a>{{end}}`)
	if err := app.Save(approved); err != nil {
		t.Fatal(err)
	}
	createTestAffiliate(t, app, "<img src=x onerror=alert(1)>", "eve-1", collections.AffiliateApproved, "eve@example.com", nil)
	runEngine(t, e)
	got := fake.mailsTo("eve@example.com")
	if len(got) != 1 {
		t.Fatalf("got %d mails", len(got))
	}
	html, _ := got[0]["html"].(string)
	subject, _ := got[0]["subject"].(string)
	if subject != "Welcome aboard, <img src=x onerror=alert(1)>" || !strings.Contains(html, "<b>eve-1</b>") || strings.Contains(html, "<img") {
		t.Fatalf("edited template: %q\n%s", subject, html)
	}
}

// PocketBase's own auth mails go through Resend when it is configured and are recorded as
// deliveries of the affiliate; PocketBase's mailer gets nothing.
func TestAuthMailsThroughSender(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Now().UTC())
	newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, clock, true)
	a := createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliatePending, "ada@example.com", nil)
	if err := mails.SendRecordPasswordReset(app, a); err != nil {
		t.Fatal(err)
	}
	if err := mails.SendRecordVerification(app, a); err != nil {
		t.Fatal(err)
	}
	if app.TestMailer.TotalSend() != 0 {
		t.Fatalf("PocketBase's mailer sent %d", app.TestMailer.TotalSend())
	}
	got := fake.mailsTo("ada@example.com")
	if len(got) != 2 {
		t.Fatalf("resend got %d auth mails", len(got))
	}
	for _, m := range got {
		if h, _ := m["headers"].(map[string]any); h[authTemplateHeader] != nil {
			t.Fatalf("internal header leaked: %v", h)
		}
	}
	var rows []deliveryRow
	if err := app.DB().Select("template", "status", "provider_id").From(collections.Deliveries).
		Where(dbx.HashExp{"affiliate": a.Id}).AndWhere(dbx.NewExp("[[template]] LIKE 'auth%'")).OrderBy("template").All(&rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Template != "auth_password_reset" || rows[1].Template != "auth_verification" ||
		rows[0].Status != collections.DeliverySent || rows[0].ProviderID == "" {
		t.Fatalf("auth deliveries %+v", rows)
	}

	// Without Resend, PocketBase's mailer sends them as before.
	plain := pbatest.TempApp(t)
	plain.Settings().SMTP.Enabled = true
	newTestEngine(t, plain, Config{MailFrom: "p@example.com"}, clock, true)
	b := createTestAffiliate(t, plain, "Bob", "bob-1", collections.AffiliatePending, "bob@example.com", nil)
	if err := mails.SendRecordPasswordReset(plain, b); err != nil {
		t.Fatal(err)
	}
	if plain.TestMailer.TotalSend() != 1 {
		t.Fatalf("SMTP path sent %d", plain.TestMailer.TotalSend())
	}
}

// Two processes on one database: the one holding the mail lease sends, the other waits
// until the lease is released or expires.
func TestMailLeaseAcrossProcesses(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Now().UTC())
	cfg := Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}
	e1 := newTestEngine(t, app, cfg, clock, true)
	e2 := newTestEngine(t, app, cfg, clock, false)
	createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)

	// e1 is mid-run in "another process": it holds the lease.
	if ok, err := store.AcquireLease(app.DB(), messagingLease, e1.outbox.holder, clock.Now(), messagingLeaseTTL); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if ok, _ := store.AcquireLease(app.DB(), messagingLease, e1.outbox.holder, clock.Now(), messagingLeaseTTL); !ok {
		t.Fatal("the holder cannot renew its lease")
	}
	runEngine(t, e2)
	if _, total := fake.snapshot(); total != 0 {
		t.Fatalf("sent %d while another process held the lease", total)
	}
	// e1 crashed: after the TTL e2 takes over.
	clock.Advance(messagingLeaseTTL + time.Second)
	runEngine(t, e2)
	if _, total := fake.snapshot(); total != 1 {
		t.Fatalf("sent %d after the lease expired", total)
	}
	// e2 released it at the end of its run: e1 gets it at once.
	if ok, err := store.AcquireLease(app.DB(), messagingLease, e1.outbox.holder, clock.Now(), messagingLeaseTTL); err != nil || !ok {
		t.Fatalf("lease not released: %v %v", ok, err)
	}
	if ok, _ := store.AcquireLease(app.DB(), messagingLease, e2.outbox.holder, clock.Now(), messagingLeaseTTL); ok {
		t.Fatal("two holders at once")
	}
}

// A payout run that cannot pay a balance because Stripe onboarding is incomplete tells the
// affiliate once per run, with the amount waiting for them; a dry run tells no one.
func TestActionNeededMailOnIncompleteOnboarding(t *testing.T) {
	s := newStripePayoutEnv(t)
	s.seed(2)
	if _, err := s.app.DB().NewQuery("UPDATE affiliates SET payouts_enabled = FALSE WHERE id = {:id}").
		Bind(dbx.Params{"id": s.affiliates[1]}).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.engine().runNow("", true); err != nil { // dry run
		t.Fatal(err)
	}
	s.createPayouts()
	s.createPayouts() // the next run: still incomplete, one more reminder
	var rows []deliveryRow
	if err := s.app.DB().Select("affiliate", "template", "idempotency_key", "data").From(collections.Deliveries).
		AndWhere(dbx.NewExp("[[idempotency_key]] LIKE 'action:%'")).All(&rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Affiliate != s.affiliates[1] || rows[1].Affiliate != s.affiliates[1] || rows[0].IdempotencyKey == rows[1].IdempotencyKey {
		t.Fatalf("action-needed deliveries %+v", rows)
	}
	fake := newFakeResend(t)
	e := newTestEngine(t, s.app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, s.clock, false)
	runEngine(t, e)
	got := fake.mailsTo(s.affiliates[1] + "@example.test")
	if len(got) != 2 {
		t.Fatalf("got %d mails", len(got))
	}
	text, _ := got[0]["text"].(string)
	if subject, _ := got[0]["subject"].(string); subject != "Action needed: we could not pay out 65.00 USD" || !strings.Contains(text, "Stripe onboarding incomplete") {
		t.Fatalf("action-needed mail %q:\n%s", subject, text)
	}
}
