package hooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// The messaging tests are split by scenario: this file has the helpers they share (the fake
// Resend, the test engine, the record builders, the handler calls) and the sending tests;
// messaging_broadcasts_internal_test.go has the broadcasts, messaging_routes_internal_test.go
// the webhook, unsubscribe, route and template tests, and messaging_events_internal_test.go
// the event mails and digests.

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

// createTestAffiliate saves an affiliate of the default program through app.Save, its address
// verified unless extra says "verified": false.
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
	r.SetVerified(true)
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

// Without Resend or SMTP, mail goes to the machine's sendmail outside dev mode, and to the
// log when there is none (a first `make run`) or in dev mode: never a send that fails again
// and again.
func TestChooseMailProvider(t *testing.T) {
	for _, c := range []struct {
		resend, smtp, dev, sendmail bool
		want                        string
	}{
		{true, true, false, true, mailProviderResend},
		{false, true, true, false, mailProviderSMTP},
		{false, false, false, true, mailProviderSendmail},
		{false, false, false, false, mailProviderNone},
		{false, false, true, true, mailProviderNone},
	} {
		if got := chooseMailProvider(c.resend, c.smtp, c.dev, c.sendmail); got != c.want {
			t.Errorf("resend=%v smtp=%v dev=%v sendmail=%v: %s, want %s", c.resend, c.smtp, c.dev, c.sendmail, got, c.want)
		}
	}
	app := pbatest.TempApp(t)
	app.Settings().SMTP.Enabled = false
	e := newTestEngine(t, app, Config{}, pbatest.NewClock(time.Now().UTC()), true)
	_, logs := e.outbox.sender().(logMailSender)
	if want := app.IsDev() || !hasSendmail(); logs != want {
		t.Errorf("without Resend and SMTP the sender is %T (sendmail on this machine: %v)", e.outbox.sender(), hasSendmail())
	}
}

// A delivery a superuser creates through the records API has no data (NULL in the JSON
// column); the worker sends it and the mail queued after it, instead of failing every pass
// on the scan.
func TestDeliveryWithoutDataDoesNotStopTheWorker(t *testing.T) {
	app := pbatest.TempApp(t)
	fake := newFakeResend(t)
	clock := pbatest.NewClock(time.Now().UTC())
	e := newTestEngine(t, app, Config{ResendAPIKey: testResendKey, ResendBaseURL: fake.srv.URL, MailFrom: "p@example.com"}, clock, true)
	a := createTestAffiliate(t, app, "Ann", "ann-1", collections.AffiliateApproved, "ann@example.com", nil)

	su, err := pbatest.Save(app, core.CollectionNameSuperusers, map[string]any{"email": "root@example.com", "password": "root-password-1"})
	if err != nil {
		t.Fatal(err)
	}
	token, err := su.NewAuthToken()
	if err != nil {
		t.Fatal(err)
	}
	router, err := apis.NewRouter(app) // the records API alone: no OnServe, so no background worker
	if err != nil {
		t.Fatal(err)
	}
	mux, err := router.BuildMux()
	if err != nil {
		t.Fatal(err)
	}
	res := pbatest.Request(mux, http.MethodPost, "/api/collections/deliveries/records", token, fmt.Sprintf(
		`{"affiliate":%q,"email":"ann@example.com","template":"approved","status":"queued","idempotency_key":"manual:1"}`, a.Id))
	if res.Code != http.StatusOK {
		t.Fatalf("create delivery: %d %s", res.Code, res.Body)
	}
	var isNull bool
	if err := app.DB().NewQuery("SELECT [[data]] IS NULL FROM {{deliveries}} WHERE [[idempotency_key]] = 'manual:1'").Row(&isNull); err != nil || !isNull {
		t.Fatalf("data of the API-made row is NULL: %v (%v); the test no longer covers the bug", isNull, err)
	}
	createTestAffiliate(t, app, "Bob", "bob-1", collections.AffiliatePending, "bob@example.com", nil) // queues application_received

	if err := e.run(context.Background()); err != nil {
		t.Fatalf("worker run: %v", err)
	}
	if n := len(fake.mailsTo("bob@example.com")); n != 1 {
		t.Fatalf("%d mails to the affiliate queued after the NULL row, want 1", n)
	}
	var status string
	if err := app.DB().Select("status").From(collections.Deliveries).Where(dbx.HashExp{"idempotency_key": "manual:1"}).Row(&status); err != nil || status != collections.DeliverySent {
		t.Fatalf("API-made delivery: status %q (%v), want sent", status, err)
	}
	if got := deliveriesByStatus(t, app, ""); got[collections.DeliveryQueued] != 0 {
		t.Fatalf("deliveries still queued after the run: %v", got)
	}
}
