package hooks

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
	"github.com/pocketbase/pocketbase/tools/router"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

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
