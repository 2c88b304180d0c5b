package hooks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// A broadcast to 1,000 affiliates survives a provider outage halfway: either the requests
// are refused, or one is accepted but its answer is lost (a crash between sending and
// recording). A new engine resumes, and every affiliate gets exactly one email.
func TestBroadcastResumesAfterCrashExactlyOnce(t *testing.T) {
	for _, mode := range []string{"refuse", "lost"} {
		t.Run(mode, func(t *testing.T) {
			app := pbatest.TempApp(t)
			fake := newFakeResend(t)
			fake.failAfter, fake.failMode = 500, mode
			cfg := Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "Partners <partners@example.com>", PublicURL: "https://aff.example.com"}
			clock := pbatest.NewClock(time.Now().UTC())

			first := createTestAffiliate(t, app, "Aff 0", "aff-0000", collections.AffiliateApproved, "aff0000@example.com", nil)
			hash := first.GetRaw(core.FieldNamePassword).(*core.PasswordFieldValue).Hash
			for i := 1; i < 1000; i++ {
				createTestAffiliate(t, app, fmt.Sprintf("Aff %d", i), fmt.Sprintf("aff-%04d", i), collections.AffiliateApproved,
					fmt.Sprintf("aff%04d@example.com", i), map[string]any{"_hash": hash})
			}
			createTestAffiliate(t, app, "Pending", "pending-1", collections.AffiliatePending, "pending@example.com", map[string]any{"_hash": hash})
			msg := createBroadcast(t, app, "News for {{.Name}}", "<p>Hello {{.Name}}, your link is {{.Link}}</p>", nil)

			e1 := newTestEngine(t, app, cfg, clock, false)
			if err := e1.run(context.Background()); err != nil {
				t.Fatalf("first run: %v", err)
			}
			// Resolution is idempotent: resolving again (a crash before resolved_at) adds nothing.
			if err := e1.broadcasts.resolveMessage(msg.Id); err != nil {
				t.Fatal(err)
			}
			got := deliveriesByStatus(t, app, msg.Id)
			if got[collections.DeliverySent] != 500 || got[collections.DeliveryQueued] != 500 || len(got) != 2 {
				t.Fatalf("after the outage: deliveries %v, want 500 sent and 500 queued", got)
			}

			fake.heal()
			clock.Advance(2 * time.Hour) // past every backoff
			e2 := newTestEngine(t, app, cfg, clock, false)
			if err := e2.run(context.Background()); err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			got = deliveriesByStatus(t, app, msg.Id)
			if got[collections.DeliverySent] != 1000 || len(got) != 1 {
				t.Fatalf("after the resume: deliveries %v, want 1000 sent", got)
			}
			byTo, total := fake.snapshot()
			if total != 1000 || len(byTo) != 1000 {
				t.Fatalf("fake got %d emails for %d recipients, want 1000 for 1000", total, len(byTo))
			}
			for to, n := range byTo {
				if n != 1 {
					t.Fatalf("%s got %d emails", to, n)
				}
			}
			if byTo["pending@example.com"] != 0 {
				t.Fatal("a pending affiliate got the broadcast")
			}
			var empty int
			if err := app.DB().Select("COUNT(*)").From(collections.Deliveries).Where(dbx.HashExp{"provider_id": ""}).Row(&empty); err != nil || empty != 0 {
				t.Fatalf("%d deliveries without provider id (%v)", empty, err)
			}
			msg, err := app.FindRecordById(collections.Messages, msg.Id)
			if err != nil {
				t.Fatal(err)
			}
			if msg.GetString("status") != collections.MessageSent {
				t.Fatalf("message status %q, want sent", msg.GetString("status"))
			}
			var counts map[string]int
			if err := json.Unmarshal([]byte(msg.GetString("counts")), &counts); err != nil || counts[collections.DeliverySent] != 1000 {
				t.Fatalf("message counts %s (%v)", msg.GetString("counts"), err)
			}
		})
	}
}

// Broadcasts skip affiliates who chose no email and suppressed addresses (a bounce arriving
// through the webhook included), honour the audience filter and carry List-Unsubscribe.
func TestBroadcastPreferenceAndBounceSuppression(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("test-webhook-secret-0123456789"))
	clock := pbatest.NewClock(time.Now().UTC())
	cfg := Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, ResendWebhookSecret: secret, MailFrom: "p@example.com", PublicURL: "https://aff.example.com"}
	e := newTestEngine(t, app, cfg, clock, false)

	ok := createTestAffiliate(t, app, "Ok", "ok-1", collections.AffiliateApproved, "ok@example.com", map[string]any{"tags": []string{"vip"}})
	none := createTestAffiliate(t, app, "None", "none-1", collections.AffiliateApproved, "none@example.com", map[string]any{"tags": []string{"vip"}, "preferred_channel": collections.ChannelNone})
	bouncer := createTestAffiliate(t, app, "Bouncer", "bounce-1", collections.AffiliateApproved, "Bounce@example.com", map[string]any{"tags": []string{"vip"}})
	createTestAffiliate(t, app, "Other", "other-1", collections.AffiliateApproved, "other@example.com", map[string]any{"tags": []string{"basic"}})

	// First broadcast reaches the bouncer; its hard bounce comes back by webhook.
	m1 := createBroadcast(t, app, "One", "first", map[string]any{"tags": []string{"vip"}})
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := deliveriesByStatus(t, app, m1.Id); got[collections.DeliverySent] != 2 || got[collections.DeliverySkipped] != 1 {
		t.Fatalf("first broadcast: %v, want 2 sent and 1 skipped", got)
	}
	fake.mu.Lock()
	headers, _ := fake.lastMail["headers"].(map[string]any)
	fake.mu.Unlock()
	lu, _ := headers["List-Unsubscribe"].(string)
	if !strings.HasPrefix(lu, "<https://aff.example.com/api/pba/unsubscribe?token=") || headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
		t.Fatalf("unsubscribe headers %v", headers)
	}
	var providerID string
	if err := app.DB().Select("provider_id").From(collections.Deliveries).Where(dbx.HashExp{"affiliate": bouncer.Id, "message": m1.Id}).Row(&providerID); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"type":"email.bounced","created_at":"2026-01-01T00:00:00Z","data":{"email_id":%q,"bounce":{"type":"Permanent"}}}`, providerID)
	if rec, err := callWebhook(e.outbox, secret, "msg_1", clock.Now(), body, ""); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("bounce webhook: %v %v", rec, err)
	}

	m2 := createBroadcast(t, app, "Two", "second", map[string]any{"tags": []string{"vip"}})
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := deliveriesByStatus(t, app, m2.Id)
	if got[collections.DeliverySent] != 1 || got[collections.DeliverySkipped] != 2 {
		t.Fatalf("second broadcast: %v, want 1 sent and 2 skipped", got)
	}
	reasons := map[string]string{}
	var rows []deliveryRow
	if err := app.DB().Select("affiliate", "error").From(collections.Deliveries).Where(dbx.HashExp{"message": m2.Id, "status": collections.DeliverySkipped}).All(&rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		reasons[r.Affiliate] = r.Error
	}
	if reasons[none.Id] != "preferred_channel none" || reasons[bouncer.Id] != "suppressed: bounce" {
		t.Fatalf("skip reasons %v", reasons)
	}
	byTo, _ := fake.snapshot()
	if byTo["ok@example.com"] != 2 || byTo["none@example.com"] != 0 || byTo["Bounce@example.com"] != 1 || byTo["other@example.com"] != 0 {
		t.Fatalf("sends per recipient %v", byTo)
	}
	m1, _ = app.FindRecordById(collections.Messages, m1.Id)
	if !strings.Contains(m1.GetString("counts"), `"bounced":1`) {
		t.Fatalf("counts after the bounce: %s", m1.GetString("counts"))
	}
	_ = ok
}

// An admin pauses a broadcast by setting it back to draft and resumes it by scheduling it
// again; the audience is resolved once.
func TestBroadcastPauseAndResume(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com", PublicURL: "https://aff.example.com"}, clock, false)
	createTestAffiliate(t, app, "One", "one-1", collections.AffiliateApproved, "one@example.com", nil)
	createTestAffiliate(t, app, "Two", "two-2", collections.AffiliateApproved, "two@example.com", nil)
	msg := createBroadcast(t, app, "Later", "body", nil)
	msg.Set("send_at", clock.Now().Add(time.Hour))
	if err := app.Save(msg); err != nil {
		t.Fatal(err)
	}
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := deliveriesByStatus(t, app, msg.Id); len(got) != 0 {
		t.Fatalf("sent before send_at: %v", got)
	}
	clock.Advance(2 * time.Hour)
	if err := e.broadcasts.startDueMessages(); err != nil { // resolved, then paused before sending
		t.Fatal(err)
	}
	msg, _ = app.FindRecordById(collections.Messages, msg.Id)
	msg.Set("status", collections.MessageDraft)
	if err := app.Save(msg); err != nil {
		t.Fatal(err)
	}
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := deliveriesByStatus(t, app, msg.Id); got[collections.DeliveryQueued] != 2 {
		t.Fatalf("paused broadcast: %v, want 2 queued", got)
	}
	msg.Set("status", collections.MessageScheduled)
	if err := app.Save(msg); err != nil {
		t.Fatal(err)
	}
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := deliveriesByStatus(t, app, msg.Id); got[collections.DeliverySent] != 2 {
		t.Fatalf("resumed broadcast: %v, want 2 sent", got)
	}
	if _, total := fake.snapshot(); total != 2 {
		t.Fatalf("fake got %d emails", total)
	}
}
