package hooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
	"github.com/pocketbase/pocketbase/tools/types"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// newTestClock starts a little after the real now, so deliveries enqueued with time.Now are due.
func newTestClock() *pbatest.Clock { return pbatest.NewClock(time.Now().UTC().Add(time.Second)) }

// receivedHook is one request a receiver got.
type receivedHook struct {
	header http.Header
	body   []byte
}

// hookReceiver is an httptest server that records requests and answers with the next status
// of its script (the last one repeats).
type hookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []receivedHook
	statuses []int
	delay    time.Duration
}

// newHookReceiver starts a receiver on 127.0.0.1, closed when the test ends.
func newHookReceiver(t *testing.T, statuses ...int) *hookReceiver {
	t.Helper()
	r := &hookReceiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, receivedHook{header: req.Header.Clone(), body: body})
		status := http.StatusOK
		if n := len(r.got); len(r.statuses) > 0 {
			status = r.statuses[min(n, len(r.statuses))-1]
		}
		delay := r.delay
		r.mu.Unlock()
		time.Sleep(delay)
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

// requests is a snapshot of what arrived so far.
func (r *hookReceiver) requests() []receivedHook {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedHook(nil), r.got...)
}

// setWebhookURL saves url on the affiliate and returns the secret the save generated.
func setWebhookURL(t *testing.T, app core.App, affiliateID, url string) string {
	t.Helper()
	a, err := app.FindRecordById(collections.Affiliates, affiliateID)
	if err != nil {
		t.Fatal(err)
	}
	a.Set(collections.AffiliateWebhookURL, url)
	if err := app.Save(a); err != nil {
		t.Fatalf("save webhook_url: %v", err)
	}
	return a.GetString(collections.AffiliateWebhookSecret)
}

// newDelivery saves an outbox row directly, as enqueueConversionWebhook would.
func newDelivery(t *testing.T, app core.App, affiliateID, eventID, url string) *core.Record {
	t.Helper()
	col, err := app.FindCollectionByNameOrId(collections.WebhookDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	d := core.NewRecord(col)
	d.Load(map[string]any{
		"affiliate": affiliateID, "event": "conversion.created", "event_id": eventID, "url": url,
		"payload":  map[string]any{"event": "conversion.created", "data": map[string]any{"id": eventID, "amount": 1234}},
		"status":   "pending",
		"attempts": 0, "next_attempt_at": time.Now().UTC(),
	})
	if err := app.Save(d); err != nil {
		t.Fatalf("save delivery: %v", err)
	}
	return d
}

// reload reads a delivery's current state from the database.
func reload(t *testing.T, app core.App, d *core.Record) *core.Record {
	t.Helper()
	r, err := app.FindRecordById(collections.WebhookDeliveries, d.Id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runSender is one run of the delivery job, failing the test on error.
func runSender(t *testing.T, s *hooks.WebhookSenderForTest) int {
	t.Helper()
	n, err := s.Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return n
}

// Affiliates with a webhook_url always have a secret to verify signatures with, and it is stable.
func TestWebhookSecretGeneratedWhenURLSet(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()

	a, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := a.GetString(collections.AffiliateWebhookSecret); s != "" {
		t.Fatalf("affiliate without webhook_url has secret %q", s)
	}
	secret := setWebhookURL(t, app, fx.A.ID, "https://hooks.example.com/pba")
	if !strings.HasPrefix(secret, "whsec_") || len(secret) != len("whsec_")+32 {
		t.Fatalf("secret %q, want whsec_ + 32 characters", secret)
	}
	if again := setWebhookURL(t, app, fx.A.ID, "https://hooks.example.com/other"); again != secret {
		t.Fatalf("secret changed on a later save: %q -> %q", secret, again)
	}
	stored, _ := app.FindRecordById(collections.Affiliates, fx.A.ID)
	if stored.GetString(collections.AffiliateWebhookSecret) != secret {
		t.Fatal("secret not persisted")
	}

	// A new affiliate created with a webhook_url gets one too.
	col, _ := app.FindCollectionByNameOrId(collections.Affiliates)
	n := core.NewRecord(col)
	n.Load(map[string]any{"name": "Hooked", "webhook_url": "https://hooks.example.com/new"})
	n.SetEmail("hooked@fixture.test")
	n.SetPassword(pbatest.Password)
	if err := app.Save(n); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(n.GetString(collections.AffiliateWebhookSecret), "whsec_") {
		t.Fatalf("new affiliate secret %q", n.GetString(collections.AffiliateWebhookSecret))
	}
}

// The affiliate reads its secret from its own record but cannot pick a guessable one.
func TestWebhookSecretReadableByAffiliateNotWritable(t *testing.T) {
	scenarios := []tests.ApiScenario{
		{
			Name:            "A sets its webhook_url and reads the generated secret",
			Method:          http.MethodPatch,
			URL:             "/api/collections/affiliates/records/" + fx.A.ID,
			Body:            strings.NewReader(`{"webhook_url":"https://hooks.example.com/pba"}`),
			Headers:         pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus:  200,
			ExpectedContent: []string{`"webhook_secret":"whsec_`},
			TestAppFactory:  fx.Factory(),
		},
		{
			Name:            "A may not choose its secret",
			Method:          http.MethodPatch,
			URL:             "/api/collections/affiliates/records/" + fx.A.ID,
			Body:            strings.NewReader(`{"webhook_url":"https://hooks.example.com/pba","webhook_secret":"whsec_mine"}`),
			Headers:         pbatest.AuthHeaders(fx.A.Token),
			ExpectedStatus:  403,
			ExpectedContent: []string{"webhook_secret"},
			TestAppFactory:  fx.Factory(),
		},
	}
	for _, s := range scenarios {
		s.Test(t)
	}
}

// A receiver can authenticate and dedupe what it gets; a 2xx ends the delivery.
func TestWebhookDeliverySignedAndSent(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	recv := newHookReceiver(t, http.StatusNoContent)
	secret := setWebhookURL(t, app, fx.A.ID, recv.URL+"/hook")
	d := newDelivery(t, app, fx.A.ID, "conversion.created:abc", recv.URL+"/hook")
	clock := newTestClock()

	if n := runSender(t, hooks.NewWebhookSenderForTest(app, clock.Now, nil)); n != 1 {
		t.Fatalf("run picked up %d deliveries, want 1", n)
	}
	got := recv.requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	h := got[0].header
	for name, want := range map[string]string{
		"Content-Type":   "application/json",
		"User-Agent":     "pbaffiliate-webhooks/1",
		"X-PBA-Event":    "conversion.created",
		"X-PBA-Delivery": "conversion.created:abc",
	} {
		if h.Get(name) != want {
			t.Errorf("%s = %q, want %q", name, h.Get(name), want)
		}
	}

	// Verify the signature as a receiver would, from the affiliate's stored secret.
	sig := h.Get("X-PBA-Signature")
	ts, v1, ok := strings.Cut(strings.TrimPrefix(sig, "t="), ",v1=")
	if !ok {
		t.Fatalf("signature header %q", sig)
	}
	if want := fmt.Sprint(clock.Now().Unix()); ts != want {
		t.Errorf("signature timestamp %s, want %s", ts, want)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(got[0].body)))
	if !hmac.Equal([]byte(v1), []byte(hex.EncodeToString(mac.Sum(nil)))) {
		t.Fatalf("signature %q does not verify with the affiliate's secret", sig)
	}

	// And per Standard Webhooks, verified by the spec's own library.
	if h.Get("webhook-id") != "conversion.created:abc" || h.Get("webhook-timestamp") != ts {
		t.Errorf("webhook-id %q, webhook-timestamp %q", h.Get("webhook-id"), h.Get("webhook-timestamp"))
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.VerifyIgnoringTimestamp(got[0].body, h); err != nil {
		t.Fatalf("Standard Webhooks signature: %v", err)
	}

	var body map[string]any
	if err := json.Unmarshal(got[0].body, &body); err != nil {
		t.Fatalf("body %s: %v", got[0].body, err)
	}
	if body["type"] != "conversion.created" || body["timestamp"] == nil {
		t.Errorf("body %s lacks the Standard Webhooks type and timestamp", got[0].body)
	}
	if body["id"] != "conversion.created:abc" || body["event"] != "conversion.created" || body["created"] == "" || body["data"] == nil {
		t.Fatalf("body %s lacks id, event, created or data", got[0].body)
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(body["created"])); err != nil {
		t.Errorf("created %v: %v", body["created"], err)
	}

	r := reload(t, app, d)
	if r.GetString("status") != "sent" || r.GetInt("response_status") != 204 || r.GetInt("attempts") != 1 || r.GetString("last_error") != "" {
		t.Fatalf("delivery after 2xx: status=%s response_status=%d attempts=%d last_error=%q",
			r.GetString("status"), r.GetInt("response_status"), r.GetInt("attempts"), r.GetString("last_error"))
	}
	if n := runSender(t, hooks.NewWebhookSenderForTest(app, clock.Now, nil)); n != 0 || len(recv.requests()) != 1 {
		t.Fatalf("a sent delivery was picked up again (%d)", n)
	}
}

// A failing receiver is retried later with the same id and body, not hammered.
func TestWebhookRetriedWithBackoffThenSent(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	recv := newHookReceiver(t, http.StatusInternalServerError, http.StatusOK)
	setWebhookURL(t, app, fx.A.ID, recv.URL)
	d := newDelivery(t, app, fx.A.ID, "conversion.created:retry", recv.URL)
	clock := newTestClock()
	s := hooks.NewWebhookSenderForTest(app, clock.Now, nil)

	runSender(t, s)
	r := reload(t, app, d)
	next := r.GetDateTime("next_attempt_at").Time()
	if r.GetString("status") != "pending" || r.GetInt("attempts") != 1 || r.GetInt("response_status") != 500 ||
		!strings.Contains(r.GetString("last_error"), "500") {
		t.Fatalf("after 500: status=%s attempts=%d response_status=%d last_error=%q",
			r.GetString("status"), r.GetInt("attempts"), r.GetInt("response_status"), r.GetString("last_error"))
	}
	// First retry after 1m ±20% (stored with millisecond precision).
	if lo, hi := clock.Now().Add(47*time.Second), clock.Now().Add(73*time.Second); next.Before(lo) || next.After(hi) {
		t.Fatalf("next_attempt_at %v, want between %v and %v", next, lo, hi)
	}

	// Not due yet: nothing is sent.
	clock.Advance(30 * time.Second)
	if n := runSender(t, s); n != 0 || len(recv.requests()) != 1 {
		t.Fatalf("delivery retried before its backoff (%d picked, %d hits)", n, len(recv.requests()))
	}

	clock.Advance(2 * time.Minute)
	runSender(t, s)
	r = reload(t, app, d)
	got := recv.requests()
	if len(got) != 2 || r.GetString("status") != "sent" || r.GetInt("attempts") != 2 || r.GetInt("response_status") != 200 {
		t.Fatalf("after retry: hits=%d status=%s attempts=%d", len(got), r.GetString("status"), r.GetInt("attempts"))
	}
	if got[0].header.Get("X-PBA-Delivery") != got[1].header.Get("X-PBA-Delivery") || string(got[0].body) != string(got[1].body) {
		t.Fatal("a retry must carry the same delivery id and body")
	}
}

// A receiver that does not answer in time counts as a failed attempt.
func TestWebhookTimeoutIsRetried(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	recv := newHookReceiver(t)
	recv.delay = 300 * time.Millisecond
	setWebhookURL(t, app, fx.A.ID, recv.URL)
	d := newDelivery(t, app, fx.A.ID, "conversion.created:slow", recv.URL)
	clock := newTestClock()

	runSender(t, hooks.NewWebhookSenderForTest(app, clock.Now, &http.Client{Timeout: 50 * time.Millisecond}))
	r := reload(t, app, d)
	if r.GetString("status") != "pending" || r.GetInt("attempts") != 1 || !strings.Contains(r.GetString("last_error"), "Timeout") ||
		!r.GetDateTime("next_attempt_at").Time().After(clock.Now()) {
		t.Fatalf("after timeout: status=%s attempts=%d last_error=%q next=%v",
			r.GetString("status"), r.GetInt("attempts"), r.GetString("last_error"), r.GetDateTime("next_attempt_at"))
	}
}

// A receiver that is gone for good stops costing requests after the last attempt.
func TestWebhookFailedAfterMaxAttempts(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	recv := newHookReceiver(t, http.StatusBadGateway)
	setWebhookURL(t, app, fx.A.ID, recv.URL)
	d := newDelivery(t, app, fx.A.ID, "conversion.created:dead", recv.URL)
	clock := newTestClock()
	s := hooks.NewWebhookSenderForTest(app, clock.Now, nil)

	for i := 1; i <= hooks.WebhookMaxAttemptsForTest; i++ {
		runSender(t, s)
		r := reload(t, app, d)
		want := "pending"
		if i == hooks.WebhookMaxAttemptsForTest {
			want = "failed"
		}
		if r.GetInt("attempts") != i || r.GetString("status") != want {
			t.Fatalf("after failure %d: attempts=%d status=%s, want %d %s", i, r.GetInt("attempts"), r.GetString("status"), i, want)
		}
		clock.Advance(8 * time.Hour) // past any backoff
	}
	if r := reload(t, app, d); !strings.Contains(r.GetString("last_error"), fmt.Sprintf("gave up after %d attempts", hooks.WebhookMaxAttemptsForTest)) {
		t.Fatalf("last_error %q", r.GetString("last_error"))
	}
	runSender(t, s)
	if n := len(recv.requests()); n != hooks.WebhookMaxAttemptsForTest {
		t.Fatalf("receiver got %d requests, want %d (none after giving up)", n, hooks.WebhookMaxAttemptsForTest)
	}
}

// Signed sales data never crosses the network in clear text.
func TestWebhookRefusesPlainHTTPToRemoteHost(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	setWebhookURL(t, app, fx.A.ID, "http://hooks.example.com/pba")
	d := newDelivery(t, app, fx.A.ID, "conversion.created:insecure", "http://hooks.example.com/pba")

	runSender(t, hooks.NewWebhookSenderForTest(app, newTestClock().Now, nil))
	r := reload(t, app, d)
	if r.GetString("status") != "failed" || !strings.Contains(r.GetString("last_error"), "https") {
		t.Fatalf("status=%s last_error=%q, want failed explaining https", r.GetString("status"), r.GetString("last_error"))
	}
}

// Overlapping runs (cron plus worker, or two processes) send each delivery exactly once.
func TestWebhookNotSentTwiceWhenRunsRace(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	recv := newHookReceiver(t)
	recv.delay = 20 * time.Millisecond // keep the first run busy while the others start
	setWebhookURL(t, app, fx.A.ID, recv.URL)
	const deliveries = 6
	for i := range deliveries {
		newDelivery(t, app, fx.A.ID, fmt.Sprintf("conversion.created:race-%d", i), recv.URL)
	}
	clock := newTestClock()

	// Two runs of one sender (the cron job and the worker of one process) and two senders
	// (two processes on the same database), all at once.
	one := hooks.NewWebhookSenderForTest(app, clock.Now, nil)
	other := hooks.NewWebhookSenderForTest(app, clock.Now, nil)
	var wg sync.WaitGroup
	for _, s := range []*hooks.WebhookSenderForTest{one, one, other, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Run(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	seen := map[string]int{}
	for _, r := range recv.requests() {
		seen[r.header.Get("X-PBA-Delivery")]++
	}
	if len(seen) != deliveries {
		t.Fatalf("delivered %d distinct events, want %d: %v", len(seen), deliveries, seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s sent %d times", id, n)
		}
	}
	all, err := app.FindAllRecords(collections.WebhookDeliveries)
	if err != nil || len(all) != deliveries {
		t.Fatalf("deliveries %d (%v)", len(all), err)
	}
	for _, r := range all {
		if r.GetString("status") != "sent" || r.GetInt("attempts") != 1 {
			t.Errorf("%s: status=%s attempts=%d, want sent after 1 attempt", r.GetString("event_id"), r.GetString("status"), r.GetInt("attempts"))
		}
	}
}

// createConversion ingests a sale the way the conversion service does: the conversion and its
// outbox row in one transaction.
func createConversion(t *testing.T, app core.App, externalID string) {
	t.Helper()
	err := app.RunInTransaction(func(tx core.App) error {
		col, err := tx.FindCollectionByNameOrId(collections.Conversions)
		if err != nil {
			return err
		}
		conv := core.NewRecord(col)
		conv.Load(map[string]any{
			"affiliate": fx.A.ID, "program": fx.ProgramP, "link": fx.RowsA.Link, "source": "api",
			"external_id": externalID, "amount": 5000, "currency": "usd", "status": "pending",
			"occurred_at": types.NowDateTime(),
		})
		if err := tx.Save(conv); err != nil {
			return err
		}
		return hooks.EnqueueConversionWebhookForTest(tx, conv)
	})
	if err != nil {
		t.Fatalf("create conversion %s: %v", externalID, err)
	}
}

// The outbox write is only a row: ingestion never talks to the receiver.
func TestWebhookEnqueueMakesNoHTTPCall(t *testing.T) {
	app := fx.App(t) // not serving: no worker
	defer app.Cleanup()
	recv := newHookReceiver(t)
	setWebhookURL(t, app, fx.A.ID, recv.URL)

	createConversion(t, app, "order-no-call")
	time.Sleep(100 * time.Millisecond)
	if n := len(recv.requests()); n != 0 {
		t.Fatalf("creating a delivery made %d HTTP calls", n)
	}
	pending, err := app.FindAllRecords(collections.WebhookDeliveries)
	if err != nil || len(pending) != 1 || pending[0].GetString("status") != "pending" {
		t.Fatalf("outbox %v (%v), want one pending delivery", pending, err)
	}
}

// A hanging receiver delays only its own notifications, never the sales being recorded.
func TestWebhookSlowReceiverDoesNotBlockIngestion(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	arrived := make(chan string, 10)
	release := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.Header.Get("X-PBA-Delivery")
		<-release // hang until the test lets go
	}))
	defer recv.Close()
	defer close(release) // runs before recv.Close and app.Cleanup
	setWebhookURL(t, app, fx.A.ID, recv.URL)
	pbatest.Serve(t, app) // starts the delivery worker

	createConversion(t, app, "order-slow-1")
	var first string
	select {
	case first = <-arrived: // the worker was kicked right after the commit
	case <-time.After(5 * time.Second):
		t.Fatal("the worker did not deliver the new conversion promptly")
	}

	// The receiver now hangs; ingesting more sales must not wait for it.
	start := time.Now()
	for i := range 3 {
		createConversion(t, app, fmt.Sprintf("order-slow-%d", i+2))
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("ingesting 3 conversions took %v while the receiver hung", took)
	}

	// Letting the receiver answer (200) delivers the rest promptly too.
	release <- struct{}{}
	seen := map[string]bool{first: true}
	for len(seen) < 4 {
		select {
		case id := <-arrived:
			seen[id] = true
			release <- struct{}{}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of 4 deliveries arrived", len(seen))
		}
	}
}

// A failed attempt's detail (a dial error names resolver addresses and DNS answers) is for
// admins: the affiliate reads its deliveries with a generic reason and without last_error.
func TestWebhookFailureDetailForAdminsOnly(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	setWebhookURL(t, app, fx.A.ID, "http://127.0.0.1:9/hook")
	d := newDelivery(t, app, fx.A.ID, "conversion.created:detail", "http://127.0.0.1:9/hook")
	clock := newTestClock()
	if n := runSender(t, hooks.NewWebhookSenderForTest(app, clock.Now, hooks.PublicOnlyWebhookClientForTest())); n != 1 {
		t.Fatalf("%d deliveries picked, want 1", n)
	}
	r := reload(t, app, d)
	if !strings.Contains(r.GetString("last_error"), "not a public address") || r.GetString("reason") != "address refused: the URL must resolve to a public address" {
		t.Fatalf("stored: status=%s last_error=%q reason=%q", r.GetString("status"), r.GetString("last_error"), r.GetString("reason"))
	}
	h := pbatest.Serve(t, app) // after the run: the server's own worker would claim the delivery
	path := "/api/collections/webhook_deliveries/records/" + d.Id
	own := pbatest.Request(h, http.MethodGet, path, fx.A.Token, "")
	if own.Code != 200 || strings.Contains(own.Body.String(), "last_error") || strings.Contains(own.Body.String(), "not a public address") ||
		own.JSON["reason"] != r.GetString("reason") {
		t.Fatalf("the affiliate's view: %d %s", own.Code, own.Body)
	}
	if res := pbatest.Request(h, http.MethodGet, "/api/collections/webhook_deliveries/records?filter="+url.QueryEscape(`last_error~"public"`), fx.A.Token, ""); res.Code == 200 && strings.Contains(res.Body.String(), d.Id) {
		t.Fatalf("a filter on the hidden field finds the row: %s", res.Body)
	}
	admin := pbatest.Request(h, http.MethodGet, path, fx.Superuser.Token, "")
	if admin.Code != 200 || !strings.Contains(fmt.Sprint(admin.JSON["last_error"]), "not a public address") {
		t.Fatalf("the admin's view: %d %s", admin.Code, admin.Body)
	}
}
