package hooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"
)

// WebhookSenderForTest exposes the webhook sender to the external tests (package hooks_test,
// which has the shared fixture) with an injected clock and HTTP client.
type WebhookSenderForTest struct{ s *webhookSender }

// NewWebhookSenderForTest is a sender on app with the given clock and client (nil keeps the
// production client). It is not registered: tests run it explicitly, like the cron job would.
func NewWebhookSenderForTest(app core.App, now func() time.Time, client *http.Client) *WebhookSenderForTest {
	s := newWebhookSender(app, true)
	s.now = now
	if client != nil {
		s.client = client
	}
	return &WebhookSenderForTest{s: s}
}

// Run is one run of the delivery job; it returns how many due deliveries it picked up.
func (w *WebhookSenderForTest) Run(ctx context.Context) (int, error) { return w.s.run(ctx) }

// EnqueueConversionWebhookForTest is the outbox write the conversion service makes.
func EnqueueConversionWebhookForTest(tx core.App, conv *core.Record) error {
	return enqueueConversionWebhook(tx, conv)
}

// WebhookMaxAttemptsForTest is after how many failures a delivery is given up.
const WebhookMaxAttemptsForTest = webhookMaxAttempts

// Retries follow 1m, 2m, 4m, … with ±20% jitter and never wait more than 6h.
func TestWebhookBackoff(t *testing.T) {
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute}
	for i, base := range want {
		failed := i + 1
		if got := webhookBackoff(failed, 0.5); got != base {
			t.Errorf("backoff(%d) without jitter = %v, want %v", failed, got, base)
		}
		lo, hi := webhookBackoff(failed, 0), webhookBackoff(failed, 0.999999)
		if lo != time.Duration(float64(base)*0.8) || hi < time.Duration(float64(base)*1.19) || hi > time.Duration(float64(base)*1.2) {
			t.Errorf("backoff(%d) jitter range [%v, %v], want ±20%% of %v", failed, lo, hi, base)
		}
	}
	for _, failed := range []int{10, 30, 1000} {
		if got := webhookBackoff(failed, 0.5); got != 6*time.Hour {
			t.Errorf("backoff(%d) = %v, want the 6h cap", failed, got)
		}
	}
}

// Only http(s); plain http only for loopback or in dev mode.
func TestWebhookURLPolicy(t *testing.T) {
	cases := []struct {
		url      string
		dev, ok  bool
		contains string
	}{
		{url: "https://hooks.example.com/pba", ok: true},
		{url: "http://127.0.0.1:8123/hook", ok: true},
		{url: "http://localhost/hook", ok: true},
		{url: "http://[::1]:9/hook", ok: true},
		{url: "http://hooks.example.com/pba", contains: "https"},
		{url: "http://hooks.example.com/pba", dev: true, ok: true},
		{url: "ftp://hooks.example.com/pba", contains: "http(s)"},
		{url: "javascript:alert(1)", contains: "http(s)"},
		{url: "/relative", contains: "http(s)"},
		{url: "https://user:pw@hooks.example.com/", contains: "credentials"},
	}
	for _, c := range cases {
		err := checkWebhookURL(c.url, c.dev)
		if c.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), c.contains) {
			t.Errorf("checkWebhookURL(%q, dev=%v) = %v, want ok=%v containing %q", c.url, c.dev, err, c.ok, c.contains)
		}
	}
}

// The signature is what receivers are told to recompute.
func TestWebhookSignature(t *testing.T) {
	at := time.Unix(1700000000, 0)
	body := []byte(`{"id":"x"}`)
	mac := hmac.New(sha256.New, []byte("whsec_test"))
	mac.Write([]byte("1700000000." + string(body)))
	want := "t=1700000000,v1=" + hex.EncodeToString(mac.Sum(nil))
	if got := signWebhook("whsec_test", at, body); got != want {
		t.Fatalf("signWebhook = %q, want %q", got, want)
	}
	if signWebhook("other", at, body) == want {
		t.Fatal("signature does not depend on the secret")
	}
}

// last_error fits its field even for multi-byte messages.
func TestWebhookErrorTextTruncatesCharacters(t *testing.T) {
	long := strings.Repeat("é", webhookMaxError+10)
	got := truncateChars(long, webhookMaxError)
	if n := len([]rune(got)); n != webhookMaxError {
		t.Fatalf("truncated to %d characters, want %d", n, webhookMaxError)
	}
	if truncateChars("short", webhookMaxError) != "short" {
		t.Fatal("short text changed")
	}
}

// Secrets are recognisable and random.
func TestWebhookSecretFormat(t *testing.T) {
	a, b := newWebhookSecret(), newWebhookSecret()
	if !strings.HasPrefix(a, "whsec_") || len(a) != len("whsec_")+32 || a == b {
		t.Fatalf("secrets %q, %q: want whsec_ + 32 random characters, distinct", a, b)
	}
}

// TestWebhookDialerRefusesPrivateNetworks: without the opt-in, the production client cannot
// reach loopback or private addresses (SSRF), whatever the URL policy allowed.
func TestWebhookDialerRefusesPrivateNetworks(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:80", "[::1]:443", "10.1.2.3:443", "192.168.1.1:443", "169.254.169.254:80", "100.64.0.1:443", "0.0.0.0:80",
		"[64:ff9b::a9fe:a9fe]:80", "[::7f00:1]:80", "[2002:a00:1::1]:443", "[::ffff:127.0.0.1]:80"} {
		if err := refuseNonPublicAddress("tcp", addr, nil); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: %v, want refused", addr, err)
		}
	}
	for _, addr := range []string{"93.184.216.34:443", "[2606:2800:220:1:248:1893:25c8:1946]:443"} {
		if err := refuseNonPublicAddress("tcp", addr, nil); err != nil {
			t.Errorf("%s: %v, want allowed", addr, err)
		}
	}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("reached a loopback receiver") }))
	defer recv.Close()
	if _, err := newWebhookSender(nil, false).client.Post(recv.URL, "application/json", strings.NewReader("{}")); err == nil ||
		!strings.Contains(err.Error(), "not a public address") {
		t.Fatalf("post to loopback: %v", err)
	}
}

// PublicOnlyWebhookClientForTest is the production client, whose dialer refuses non-public
// addresses (NewWebhookSenderForTest allows private ones for loopback receivers).
func PublicOnlyWebhookClientForTest() *http.Client { return newWebhookSender(nil, false).client }

// StopWebhookWorkerForTest stops the app's registered delivery worker (started by Serve), so a
// test drives deliveries alone with its own clock (NewWebhookSenderForTest).
func StopWebhookWorkerForTest(app core.App) {
	app.Store().Get(webhookSenderKey).(*webhookSender).worker.Stop()
}

// WebhookBackoffMaxForTest is the longest wait between two attempts (before jitter).
const WebhookBackoffMaxForTest = webhookBackoffMax

// The mail to superusers about a disabled endpoint renders with what its delivery froze.
func TestWebhookDisabledMailRenders(t *testing.T) {
	out, err := adminMail(deliveryRow{Template: templateWebhookDisabled, IdempotencyKey: "webhook-disabled:x:1:y",
		Data: `{"url":"https://hooks.example.com/<in>","description":"CRM","reason":"Every delivery attempt failed for about 3 days; the last: HTTP 503","disabled_at":"6 Dec 2026 19:00 UTC"}`})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Subject, "https://hooks.example.com/<in>") || !strings.Contains(out.Text, "HTTP 503") ||
		!strings.Contains(out.HTML, "&lt;in&gt;") || !strings.Contains(out.HTML, "(CRM)") {
		t.Fatalf("mail: %+v", out)
	}
	if _, err := adminMail(deliveryRow{Template: "approved"}); err == nil {
		t.Fatal("an affiliate template rendered as an admin mail")
	}
}

// EventDataForTest is the data of a record's events.
func EventDataForTest(r *core.Record) map[string]any { return eventData(r) }
