package hooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
	"github.com/pocketbase/pocketbase/tools/router"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// testResendKey is the API key the fake Resend expects.
const testResendKey = "re_test_key"

// fakeResend is an httptest stand-in for the Resend API: it checks the request shape and the
// auth header, honours Idempotency-Key like Resend (a known key returns the stored answer and
// sends nothing), counts emails per recipient and can fail on demand.
type fakeResend struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	byTo      map[string]int      // emails accepted per recipient
	keys      map[string][]string // idempotency key -> ids answered
	accepted  int                 // emails accepted in total
	requests  int
	nextID    int
	failAfter int    // when > 0: requests that would exceed this many accepted emails fail
	failMode  string // "refuse": 500 without sending; "lost": send, store, then 500 (response lost)
	down      bool   // every request 500 (known keys too), after the failure started
	limitOnce bool   // the next request gets a 429 with rate-limit headers
	lastMail  map[string]any
	all       []map[string]any // every accepted email, in order
}

// newFakeResend starts the fake; it is closed with the test.
func newFakeResend(t *testing.T) *fakeResend {
	f := &fakeResend{t: t, byTo: map[string]int{}, keys: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// serve handles POST /emails and POST /emails/batch.
func (f *fakeResend) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if r.Method != http.MethodPost || (r.URL.Path != "/emails" && r.URL.Path != "/emails/batch") {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		f.t.Errorf("fake resend: unexpected %s %s", r.Method, r.URL.Path)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testResendKey {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "bad key"})
		f.t.Errorf("fake resend: Authorization %q", r.Header.Get("Authorization"))
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		f.t.Errorf("fake resend: Content-Type %q", r.Header.Get("Content-Type"))
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		f.t.Errorf("fake resend: no Idempotency-Key on %s", r.URL.Path)
	}
	if f.limitOnce {
		f.limitOnce = false
		w.Header().Set("ratelimit-limit", "2")
		w.Header().Set("ratelimit-remaining", "0")
		w.Header().Set("ratelimit-reset", "1")
		w.Header().Set("retry-after", "1")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"message": "Too many requests"})
		return
	}
	if f.down {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "internal"})
		return
	}
	body, _ := io.ReadAll(r.Body)
	var mails []map[string]any
	if r.URL.Path == "/emails/batch" {
		if err := json.Unmarshal(body, &mails); err != nil {
			f.t.Errorf("fake resend: batch body: %v", err)
		}
		if len(mails) == 0 || len(mails) > 100 {
			f.t.Errorf("fake resend: batch of %d", len(mails))
		}
	} else {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			f.t.Errorf("fake resend: body: %v", err)
		}
		mails = []map[string]any{m}
	}
	for _, m := range mails {
		to, _ := m["to"].([]any)
		if m["from"] == "" || m["subject"] == "" || m["html"] == "" || len(to) != 1 {
			f.t.Errorf("fake resend: incomplete email %v", m)
		}
	}
	if ids, ok := f.keys[key]; ok {
		f.answer(w, r.URL.Path, ids)
		return
	}
	if f.failAfter > 0 && f.accepted+len(mails) > f.failAfter {
		f.down = true
		if f.failMode == "lost" {
			f.accept(key, mails) // sent, but the answer never arrives
		}
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "internal"})
		return
	}
	f.answer(w, r.URL.Path, f.accept(key, mails))
}

// accept counts the mails as sent and stores their ids under the key.
func (f *fakeResend) accept(key string, mails []map[string]any) []string {
	ids := make([]string, len(mails))
	for i, m := range mails {
		f.nextID++
		ids[i] = fmt.Sprintf("em_%05d", f.nextID)
		to := m["to"].([]any)[0].(string)
		f.byTo[to]++
		f.accepted++
		f.lastMail = m
		f.all = append(f.all, m)
	}
	f.keys[key] = ids
	return ids
}

// answer writes Resend's response shape for the path.
func (f *fakeResend) answer(w http.ResponseWriter, path string, ids []string) {
	if path == "/emails" {
		writeJSON(w, http.StatusOK, map[string]any{"id": ids[0]})
		return
	}
	data := make([]map[string]string, len(ids))
	for i, id := range ids {
		data[i] = map[string]string{"id": id}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
}

// heal ends the outage.
func (f *fakeResend) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down, f.failAfter = false, 0
}

// snapshot returns the per-recipient counts and the total.
func (f *fakeResend) snapshot() (map[string]int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.byTo))
	for k, v := range f.byTo {
		out[k] = v
	}
	return out, f.accepted
}

// mailsTo returns the accepted emails to one address, in order.
func (f *fakeResend) mailsTo(addr string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, m := range f.all {
		if to, _ := m["to"].([]any); len(to) == 1 && to[0] == addr {
			out = append(out, m)
		}
	}
	return out
}

// writeJSON answers like Resend does: JSON with a status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// testEngine is the mail system wired like registerMessaging but with a test clock and a
// sleep that only records, so retries take no time.
type testEngine struct {
	*messaging
	mu     sync.Mutex
	sleeps []time.Duration
}

// newTestEngine builds the parts; bind registers their hooks and routes like registerMessaging.
func newTestEngine(t *testing.T, app core.App, cfg Config, clock *pbatest.Clock, bind bool) *testEngine {
	t.Helper()
	te := &testEngine{}
	m, err := newMessaging(app, cfg, clock.Now, func(ctx context.Context, d time.Duration) error {
		te.mu.Lock()
		te.sleeps = append(te.sleeps, d)
		te.mu.Unlock()
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	te.messaging = m
	if bind {
		m.bind()
	}
	return te
}

// createTestAffiliate saves an affiliate of the default program through app.Save.
func createTestAffiliate(t testing.TB, app core.App, name, code, status, email string, extra map[string]any) *core.Record {
	t.Helper()
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	col, err := app.FindCachedCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		t.Fatal(err)
	}
	r := core.NewRecord(col)
	r.Load(map[string]any{"name": name, "code": code, "status": status, "program": program.Id})
	r.SetEmail(email)
	if hash, ok := extra["_hash"].(string); ok {
		r.SetRaw(core.FieldNamePassword, &core.PasswordFieldValue{Hash: hash})
		delete(extra, "_hash")
	} else {
		r.SetRandomPassword()
	}
	for k, v := range extra {
		r.Set(k, v)
	}
	if err := app.Save(r); err != nil {
		t.Fatalf("save affiliate %s: %v", code, err)
	}
	return r
}

// createBroadcast saves a scheduled broadcast.
func createBroadcast(t testing.TB, app core.App, subject, body string, audience any) *core.Record {
	t.Helper()
	col, err := app.FindCachedCollectionByNameOrId(collections.Messages)
	if err != nil {
		t.Fatal(err)
	}
	m := core.NewRecord(col)
	m.Load(map[string]any{"subject": subject, "body": body, "kind": collections.MessageKindBroadcast, "status": collections.MessageScheduled, "audience": audience})
	if err := app.Save(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// deliveriesByStatus counts a message's deliveries per status ("" message: all).
func deliveriesByStatus(t testing.TB, app core.App, message string) map[string]int {
	t.Helper()
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	q := app.DB().Select("status", "COUNT(*) AS n").From(collections.Deliveries).GroupBy("status")
	if message != "" {
		q.Where(dbx.HashExp{"message": message})
	}
	if err := q.All(&rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out
}

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

// A 429 is retried after the wait its headers ask for; the mail then goes out once.
func TestResendRateLimitRetried(t *testing.T) {
	fake := newFakeResend(t)
	fake.limitOnce = true
	var slept []time.Duration
	s, err := newResendSender(testResendKey, fake.srv.URL, func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Send(context.Background(), outgoingMail{From: "a@example.com", To: "b@example.com", Subject: "s", HTML: "<p>x</p>", IdempotencyKey: "k1"})
	if err != nil || id == "" {
		t.Fatalf("send: id %q, err %v", id, err)
	}
	if len(slept) != 1 || slept[0] != time.Second {
		t.Fatalf("slept %v, want one 1s wait from retry-after", slept)
	}
	if byTo, total := fake.snapshot(); total != 1 || byTo["b@example.com"] != 1 {
		t.Fatalf("sent %d (%v)", total, byTo)
	}
}

// Persistent 5xx is a temporary error after the retries; a 4xx is permanent at once.
func TestResendErrorsClassified(t *testing.T) {
	status := http.StatusBadGateway
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls++
		writeJSON(w, status, map[string]any{"message": "nope"})
	}))
	defer srv.Close()
	s, err := newResendSender(testResendKey, srv.URL+"/", func(context.Context, time.Duration) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	m := outgoingMail{From: "a@example.com", To: "b@example.com", Subject: "s", HTML: "x", IdempotencyKey: "k"}
	if _, err := s.Send(context.Background(), m); err == nil || !isTemporarySend(err) || calls != resendMaxTries {
		t.Fatalf("5xx: err %v, temporary %v, calls %d", err, isTemporarySend(err), calls)
	}
	status, calls = http.StatusUnprocessableEntity, 0
	if _, err := s.Send(context.Background(), m); err == nil || isTemporarySend(err) || calls != 1 {
		t.Fatalf("422: err %v, temporary %v, calls %d", err, isTemporarySend(err), calls)
	}
}

// Affiliate-controlled values are inert in the HTML part and verbatim in the text part.
func TestMessagingTemplatesEscape(t *testing.T) {
	d := mailData{Name: `<script>alert(1)</script>`, Code: "x-1", Link: `https://a.example/r/x-1"onmouseover="y`, UnsubscribeURL: "https://a.example/api/pba/unsubscribe?token=a.b"}
	for name, render := range map[string]func() (renderedMail, error){
		"lifecycle": func() (renderedMail, error) { return renderLifecycle(templateApproved, d) },
		"broadcast": func() (renderedMail, error) {
			return renderBroadcast("Hi {{.Name}}", `<p>Hello {{.Name}} <a href="{{.Link}}">link</a></p>`, d)
		},
		"plain": func() (renderedMail, error) { return renderBroadcast("Hi", "Hello {{.Name}} & <friends>\n\nBye", d) },
	} {
		out, err := render()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(out.HTML, "<script>") || strings.Contains(out.HTML, `"onmouseover`) {
			t.Errorf("%s: HTML not escaped:\n%s", name, out.HTML)
		}
		if !strings.Contains(out.HTML, "&lt;script&gt;") {
			t.Errorf("%s: escaped name missing:\n%s", name, out.HTML)
		}
		if !strings.Contains(out.Text, d.Name) {
			t.Errorf("%s: text part lacks the name verbatim:\n%s", name, out.Text)
		}
		if !strings.Contains(out.HTML, "Unsubscribe") || !strings.Contains(out.Text, d.UnsubscribeURL) {
			t.Errorf("%s: unsubscribe link missing", name)
		}
	}
	if out, _ := renderBroadcast("Hi", "Hello & <friends>", d); !strings.Contains(out.HTML, "&lt;friends&gt;") && !strings.Contains(out.HTML, "friends") {
		t.Errorf("plain body: %s", out.HTML)
	}
	if out, _ := renderBroadcast("a\r\nBcc: x@example.com", "x", d); strings.ContainsAny(out.Subject, "\r\n") {
		t.Errorf("subject keeps a newline: %q", out.Subject)
	}
}

// Lifecycle emails: received on a pending signup, approved and rejected on the status change,
// each once, sent by the worker with the affiliate's name escaped.
func TestLifecycleEmails(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, clock, true)

	a := createTestAffiliate(t, app, "<script>alert(1)</script>", "evil-1", collections.AffiliatePending, "evil@example.com", nil)
	b := createTestAffiliate(t, app, "Bob", "bob-1", collections.AffiliatePending, "bob@example.com", nil)
	a.Set(collections.FieldStatus, collections.AffiliateApproved)
	if err := app.Save(a); err != nil {
		t.Fatal(err)
	}
	b.Set(collections.FieldStatus, collections.AffiliateRejected)
	if err := app.Save(b); err != nil {
		t.Fatal(err)
	}
	// Saving again without a status change and re-approving queue nothing new.
	a.Set(collections.FieldName, "<script>alert(2)</script>")
	if err := app.Save(a); err != nil {
		t.Fatal(err)
	}
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := app.DB().Select("idempotency_key").From(collections.Deliveries).Where(dbx.HashExp{"status": collections.DeliverySent}).OrderBy("idempotency_key").Column(&keys); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"lifecycle:application_received:" + a.Id, "lifecycle:application_received:" + b.Id,
		"lifecycle:approved:" + a.Id, "lifecycle:rejected:" + b.Id,
	}
	if strings.Join(keys, ",") != strings.Join(sortedCopy(want), ",") {
		t.Fatalf("sent deliveries %v, want %v", keys, sortedCopy(want))
	}
	byTo, total := fake.snapshot()
	if total != 4 || byTo["evil@example.com"] != 2 || byTo["bob@example.com"] != 2 {
		t.Fatalf("fake got %d: %v", total, byTo)
	}
	fake.mu.Lock()
	html, _ := fake.lastMail["html"].(string)
	fake.mu.Unlock()
	if strings.Contains(html, "<script>") {
		t.Fatalf("script tag reached the email: %s", html)
	}
}

// sortedCopy is ss sorted, for order-independent comparisons.
func sortedCopy(ss []string) []string {
	out := append([]string(nil), ss...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
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

// callWebhook POSTs a Svix-signed event to the webhook handler; tamper replaces the body
// after signing.
func callWebhook(o *mailOutbox, secret, id string, at time.Time, body, tamper string) (*pbatest.Response, error) {
	ts := strconv.FormatInt(at.Unix(), 10)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + body))
	sig := "v1,bm90LXRoaXMtb25l v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if tamper != "" {
		body = tamper
	}
	return callHandler(o.app, o.handleResendWebhook, http.MethodPost, "/api/pba/resend/webhook", body,
		pbatest.Header("svix-id", id), pbatest.Header("svix-timestamp", ts), pbatest.Header("svix-signature", sig))
}

// callHandler sends one request through pbatest.Request straight to a route handler (no
// router in between) and returns the recorded answer with the error the handler returned.
func callHandler(app core.App, handle func(*core.RequestEvent) error, method, path, body string, opts ...func(*http.Request)) (*pbatest.Response, error) {
	var err error
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		re := &core.RequestEvent{App: app}
		re.Request, re.Response = r, w
		err = handle(re)
	})
	res := pbatest.Request(h, method, path, "", body, opts...)
	return res, err
}

// apiStatus is the status of an error a handler returned (0 if none).
func apiStatus(err error) int {
	var ae *router.ApiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Webhook signatures: valid accepted, tampered body and expired timestamp rejected.
func TestResendWebhookSignature(t *testing.T) {
	app := pbatest.TempApp(t)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-abcdefghijklmnop"))
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{ResendWebhookSecret: secret}, clock, false)
	body := `{"type":"email.delivered","data":{"email_id":"em_unknown"}}`

	if rec, err := callWebhook(e.outbox, secret, "msg_ok", clock.Now(), body, ""); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("valid: %v %v", rec.Code, err)
	}
	if _, err := callWebhook(e.outbox, secret, "msg_t", clock.Now(), body, strings.Replace(body, "delivered", "bounced", 1)); apiStatus(err) != http.StatusBadRequest {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := callWebhook(e.outbox, secret, "msg_old", clock.Now().Add(-6*time.Minute), body, ""); apiStatus(err) != http.StatusBadRequest {
		t.Fatalf("expired: %v", err)
	}
	if _, err := callWebhook(e.outbox, secret, "msg_future", clock.Now().Add(6*time.Minute), body, ""); apiStatus(err) != http.StatusBadRequest {
		t.Fatalf("future: %v", err)
	}
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("wrong"))
	if _, err := callWebhook(e.outbox, other, "msg_w", clock.Now(), body, ""); apiStatus(err) != http.StatusBadRequest {
		t.Fatalf("wrong secret: %v", err)
	}
}

// The unsubscribe link: GET confirms only, POST (one-click) opts out and suppresses, a bad
// token is 400; the next broadcast skips the affiliate while lifecycle mail still goes.
func TestUnsubscribeOneClick(t *testing.T) {
	app := pbatest.TempApp(t)
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{PublicURL: "https://aff.example.com"}, clock, false)
	a := createTestAffiliate(t, app, "Ann", "ann-1", collections.AffiliateApproved, "Ann@example.com", nil)

	link, err := e.unsub.unsubscribeURL(a.Id)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(link)
	token := u.Query().Get("token")
	call := func(method, token string) (*pbatest.Response, error) {
		handle := e.unsub.handleUnsubscribe
		if method == http.MethodGet {
			handle = e.unsub.handleUnsubscribePage
		}
		return callHandler(app, handle, method, "/api/pba/unsubscribe?token="+url.QueryEscape(token), "List-Unsubscribe=One-Click",
			pbatest.Header("Content-Type", "application/x-www-form-urlencoded"))
	}
	rec, err := call(http.MethodGet, token)
	if err != nil || rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "<form") {
		t.Fatalf("GET: %v %v %s", rec.Code, err, rec.Body.String())
	}
	if a, _ = app.FindRecordById(collections.Affiliates, a.Id); a.GetString(collections.AffiliatePreferredChannel) == collections.ChannelNone {
		t.Fatal("GET unsubscribed")
	}
	for _, bad := range []string{"", a.Id, a.Id + ".AAAA", "zzz." + strings.SplitN(token, ".", 2)[1]} {
		if _, err := call(http.MethodPost, bad); apiStatus(err) != http.StatusBadRequest {
			t.Fatalf("token %q: %v", bad, err)
		}
	}
	if rec, err := call(http.MethodPost, token); err != nil || rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "unsubscribed") {
		t.Fatalf("POST: %v %v", rec.Code, err)
	}
	if a, _ = app.FindRecordById(collections.Affiliates, a.Id); a.GetString(collections.AffiliatePreferredChannel) != collections.ChannelNone {
		t.Fatal("POST did not set preferred_channel none")
	}
	if reason, err := e.outbox.suppressionOf("ann@example.com"); err != nil || reason != collections.SuppressionUnsubscribe {
		t.Fatalf("suppression %q %v", reason, err)
	}
	// The token survives a restart: a new engine reads the same key from the data dir.
	e2 := newTestEngine(t, app, Config{}, clock, false)
	if id, ok := e2.unsub.affiliateFromToken(token); !ok || id != a.Id {
		t.Fatal("token invalid after restart")
	}
}

// Without a Resend key the PocketBase mailer sends (captured by the test mailer), with
// List-Unsubscribe on broadcasts; lifecycle mail ignores the marketing opt-out.
func TestMessagingPocketBaseMailer(t *testing.T) {
	app := pbatest.TempApp(t)
	app.Settings().SMTP.Enabled = true // the test app's OnMailerSend swaps in TestMailer
	app.Settings().SMTP.Host = "127.0.0.1"
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{MailFrom: "Partners <partners@example.com>", PublicURL: "https://aff.example.com"}, clock, true)
	if _, ok := e.outbox.sender().(pbMailSender); !ok {
		t.Fatalf("sender %T, want the PocketBase mailer", e.outbox.sender())
	}

	createTestAffiliate(t, app, "Pat <b>", "pat-1", collections.AffiliatePending, "pat@example.com", map[string]any{"preferred_channel": collections.ChannelNone})
	createTestAffiliate(t, app, "Quinn", "quinn-1", collections.AffiliateApproved, "quinn@example.com", nil)
	createBroadcast(t, app, "Hello", "Hi {{.Name}}", map[string]any{"status": []string{"approved", "pending"}})
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := app.TestMailer.Messages()
	subjects := map[string][]string{}
	for _, m := range msgs {
		subjects[m.To[0].Address] = append(subjects[m.To[0].Address], m.Subject)
		if m.From.Address != "partners@example.com" {
			t.Errorf("from %v", m.From)
		}
		if strings.Contains(m.HTML, "<b>") {
			t.Errorf("unescaped name in %s", m.HTML)
		}
		if m.Subject == "Hello" && (!strings.HasPrefix(m.Headers["List-Unsubscribe"], "<https://aff.example.com/api/pba/unsubscribe?token=") || m.Headers["List-Unsubscribe-Post"] == "") {
			t.Errorf("broadcast headers %v", m.Headers)
		}
	}
	// Pat opted out of marketing but still gets the application receipt; Quinn (created
	// approved) gets the approval and the broadcast.
	if len(msgs) != 3 || len(subjects["pat@example.com"]) != 1 || len(subjects["quinn@example.com"]) != 2 {
		t.Fatalf("mails %v", subjects)
	}
	if got := deliveriesByStatus(t, app, ""); got[collections.DeliverySent] != 3 || got[collections.DeliverySkipped] != 1 {
		t.Fatalf("deliveries %v", got)
	}

	// Dev mode without SMTP only logs.
	app.Settings().SMTP.Enabled = false
	if _, ok := e.outbox.sender().(logMailSender); !ok && app.IsDev() {
		t.Fatalf("dev sender %T", e.outbox.sender())
	}
}

// The routes as the server registers them (OnServe): unsubscribe by GET and one-click POST,
// and the webhook refusing unsigned bodies.
func TestMessagingRoutesThroughRouter(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("router-secret-0123456789abcdef"))
	var token, affiliateID string
	factory := func(t testing.TB) *tests.TestApp {
		app := pbatest.TempApp(t)
		e, err := newMessaging(app, Config{PublicURL: "https://aff.example.com", ResendWebhookSecret: secret}, time.Now, sleepCtx)
		if err != nil {
			t.Fatal(err)
		}
		e.bind()
		mail := routes{unsub: e.unsub, mailOutbox: e.outbox} // the real route table, mail only
		app.OnServe().BindFunc(func(se *core.ServeEvent) error {
			mail.bind(se.Router)
			return se.Next()
		})
		a := createTestAffiliate(t, app, "Rae", "rae-1", collections.AffiliateApproved, "rae@example.com", nil)
		link, err := e.unsub.unsubscribeURL(a.Id)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(link)
		token, affiliateID = u.Query().Get("token"), a.Id
		return app
	}
	scenarios := []tests.ApiScenario{
		{Name: "bad token", Method: http.MethodGet, URL: "/api/pba/unsubscribe?token=nope.nope", ExpectedStatus: 400,
			ExpectedContent: []string{"Invalid"}},
		{Name: "unsigned webhook", Method: http.MethodPost, URL: "/api/pba/resend/webhook", Body: strings.NewReader(`{"type":"email.delivered"}`),
			ExpectedStatus: 400, ExpectedContent: []string{"Invalid signature"}},
	}
	for _, s := range scenarios {
		s.TestAppFactory, s.DisableTestAppCleanup = factory, true
		s.Test(t)
	}
	// The token is only known once the factory ran, so these build the URL in BeforeTestFunc.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		s := tests.ApiScenario{
			Name: method + " valid token", Method: method, URL: "/api/pba/unsubscribe?token=", TestAppFactory: factory, DisableTestAppCleanup: true,
			Body: strings.NewReader("List-Unsubscribe=One-Click"), Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			BeforeTestFunc: func(t testing.TB, app *tests.TestApp, e *core.ServeEvent) {
				e.Router.BindFunc(func(re *core.RequestEvent) error {
					q := re.Request.URL.Query()
					q.Set("token", token)
					re.Request.URL.RawQuery = q.Encode()
					return re.Next()
				})
			},
			ExpectedStatus:  200,
			ExpectedContent: []string{map[string]string{http.MethodGet: "<form", http.MethodPost: "You are unsubscribed"}[method]},
			AfterTestFunc: func(t testing.TB, app *tests.TestApp, res *http.Response) {
				a, err := app.FindRecordById(collections.Affiliates, affiliateID)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{http.MethodGet: "", http.MethodPost: collections.ChannelNone}[method]
				if got := a.GetString(collections.AffiliatePreferredChannel); got != want {
					t.Fatalf("preferred_channel %q after %s, want %q", got, method, want)
				}
			},
		}
		s.Test(t)
	}
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

// TestPayoutMailRendersFigures: payout mails carry the amount and reference, escaped.
func TestPayoutMailRendersFigures(t *testing.T) {
	out, err := renderLifecycle(templatePayoutSent, mailData{Name: "<b>Ada</b>", Amount: "60.00 USD", Reference: "PAYPAL-123", PortalURL: "https://p.test/portal/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"60.00 USD", "PAYPAL-123", "&lt;b&gt;Ada&lt;/b&gt;"} {
		if !strings.Contains(out.HTML, want) {
			t.Errorf("HTML lacks %q:\n%s", want, out.HTML)
		}
	}
	if !strings.Contains(out.Subject, "60.00 USD") || !strings.Contains(out.Text, "PAYPAL-123") {
		t.Errorf("subject %q / text %q", out.Subject, out.Text)
	}
	failed, err := renderLifecycle(templatePayoutFailed, mailData{Name: "Ada", Amount: "60.00 USD", Reason: "account closed"})
	if err != nil || !strings.Contains(failed.Text, "account closed") || !strings.Contains(failed.Subject, "Action needed") {
		t.Fatalf("failed payout mail: %+v %v", failed, err)
	}
}
