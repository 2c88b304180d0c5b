package hooks_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

const (
	stripeTestSecret      = "whsec_test"
	stripeTestWebhookPath = "/api/pba/stripe/webhook"
)

// stripeEnv is one served test app that receives signed Stripe events.
type stripeEnv struct {
	*clickEnv
}

func newStripeEnv(t *testing.T, cfg hooks.Config) *stripeEnv {
	t.Helper()
	return &stripeEnv{newClickEnv(t, cfg)}
}

func newStripe(t *testing.T) *stripeEnv {
	t.Helper()
	return newStripeEnv(t, hooks.Config{IPSalt: "s", StripeWebhookSecret: stripeTestSecret})
}

// stripeEvent is an event as Stripe sends it (API version 2023-10-16, references as bare ids).
func stripeEvent(id, typ string, object map[string]any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": "2023-10-16", "created": time.Now().Unix(),
		"livemode": false, "type": typ, "data": map[string]any{"object": object},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// postRaw sends body with the given Stripe-Signature header ("" = none).
func (s *stripeEnv) postRaw(body []byte, signature string) *pbatest.Response {
	var opts []func(*http.Request)
	if signature != "" {
		opts = append(opts, pbatest.Header("Stripe-Signature", signature))
	}
	return pbatest.Request(s.handler, http.MethodPost, stripeTestWebhookPath, "", string(body), opts...)
}

// send signs body with the configured secret now and posts it, expecting 200.
func (s *stripeEnv) send(body []byte) *pbatest.Response {
	s.t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	res := s.postRaw(signed.Payload, signed.Header)
	if res.Code != http.StatusOK {
		s.t.Fatalf("status %d, want 200: %s", res.Code, res.Body)
	}
	return res
}

func (s *stripeEnv) stripeConversions(filter string, params ...dbx.Params) []*core.Record {
	s.t.Helper()
	if filter == "" {
		filter = "source = 'stripe'"
	} else {
		filter = "source = 'stripe' && (" + filter + ")"
	}
	rows, err := s.app.FindRecordsByFilter(collections.Conversions, filter, "created", 0, 0, params...)
	if err != nil {
		s.t.Fatal(err)
	}
	return rows
}

// conversion is the one Stripe conversion with externalID.
func (s *stripeEnv) conversion(externalID string) *core.Record {
	s.t.Helper()
	rows := s.stripeConversions("external_id = {:id}", dbx.Params{"id": externalID})
	if len(rows) != 1 {
		s.t.Fatalf("%d conversions with external_id %s, want 1", len(rows), externalID)
	}
	return rows[0]
}

func (s *stripeEnv) count(collection string) int64 {
	s.t.Helper()
	n, err := s.app.CountRecords(collection)
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

func (s *stripeEnv) outcome(eventID string) string {
	s.t.Helper()
	r, err := s.app.FindFirstRecordByData(collections.StripeEvents, "event_id", eventID)
	if err != nil {
		s.t.Fatalf("stripe event %s not stored: %v", eventID, err)
	}
	return r.GetString("outcome")
}

func (s *stripeEnv) affiliateCode(id string) string {
	s.t.Helper()
	r, err := s.app.FindRecordById(collections.Affiliates, id)
	if err != nil {
		s.t.Fatal(err)
	}
	return r.GetString(collections.FieldCode)
}

func (s *stripeEnv) update(collection, id string, data map[string]any) {
	s.t.Helper()
	r, err := s.app.FindRecordById(collection, id)
	if err != nil {
		s.t.Fatal(err)
	}
	r.Load(data)
	if err := s.app.Save(r); err != nil {
		s.t.Fatal(err)
	}
}

// newStripeWithAPI is newStripe with STRIPE_SECRET_KEY set and the Stripe API at a fake.
func newStripeWithAPI(t *testing.T) (*stripeEnv, *hooks.FakeStripe) {
	t.Helper()
	fake := hooks.NewFakeStripe(t)
	s := newStripeEnv(t, hooks.Config{StripeSecretKey: hooks.FakeStripeKey, StripeAPIBase: fake.URL,
		StripeWebhookSecret: stripeTestSecret, IPSalt: "s", WebhookAllowPrivateNetworks: true})
	return s, fake
}

func (s *stripeEnv) save(collection string, data map[string]any) *core.Record {
	s.t.Helper()
	col, err := s.app.FindCollectionByNameOrId(collection)
	if err != nil {
		s.t.Fatal(err)
	}
	r := core.NewRecord(col)
	r.Load(data)
	if err := s.app.Save(r); err != nil {
		s.t.Fatalf("save %s: %v", collection, err)
	}
	return r
}

// sign signs body with the configured secret now and posts it, whatever the answer.
func (s *stripeEnv) sign(body []byte) *pbatest.Response {
	s.t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	return s.postRaw(signed.Payload, signed.Header)
}

// stripeCheckoutPayment is a paid one-off Checkout Session credited to click.
func stripeCheckoutPayment(session, paymentIntent, click string, amount int64) map[string]any {
	return map[string]any{
		"id": session, "object": "checkout.session", "mode": "payment", "payment_status": "paid",
		"status": "complete", "amount_total": amount, "currency": "usd", "client_reference_id": click,
		"payment_intent": paymentIntent, "customer": "cus_" + session,
		"customer_details": map[string]any{"email": "buyer-" + session + "@example.net"},
	}
}

// stripeCheckoutSubscription is a paid subscription Checkout Session with its first invoice.
func stripeCheckoutSubscription(session, invoice, subscription, customer, click string, amount int64) map[string]any {
	return map[string]any{
		"id": session, "object": "checkout.session", "mode": "subscription", "payment_status": "paid",
		"status": "complete", "amount_total": amount, "currency": "usd", "client_reference_id": click,
		"invoice": invoice, "subscription": subscription, "customer": customer,
		"customer_details": map[string]any{"email": "subscriber@example.net"},
	}
}

func stripeInvoicePaid(invoice, subscription, customer, charge, reason string, amount int64, subMeta map[string]string) map[string]any {
	return map[string]any{
		"id": invoice, "object": "invoice", "status": "paid", "paid": true, "amount_paid": amount, "currency": "usd",
		"customer": customer, "customer_email": "subscriber@example.net", "subscription": subscription,
		"billing_reason": reason, "charge": charge, "payment_intent": "pi_" + invoice,
		"subscription_details": map[string]any{"metadata": subMeta}, "metadata": map[string]string{},
	}
}

func stripeWantString(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func stripeWantInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

func stripeWantPrefix(t *testing.T, what, got, prefix string) {
	t.Helper()
	if !strings.HasPrefix(got, prefix) {
		t.Errorf("%s = %q, want prefix %q", what, got, prefix)
	}
}

// Delivery: signatures, duplicates, unknown events, retries, the Connect endpoint and accounts.

func TestStripeAccountUpdated(t *testing.T) {
	s := newStripe(t)
	s.update(collections.Affiliates, fx.A.ID, map[string]any{collections.AffiliateStripeAccountID: "acct_A"})
	account := func(id string, enabled bool) map[string]any {
		return map[string]any{"id": id, "object": "account", "type": "express", "payouts_enabled": enabled, "charges_enabled": enabled}
	}

	s.send(stripeEvent("evt_acct_1", "account.updated", account("acct_A", true)))
	a, err := s.app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Fatalf("payouts_enabled = false after account.updated, want true")
	}
	b, err := s.app.FindRecordById(collections.Affiliates, fx.B.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Errorf("B's payouts_enabled changed by A's account")
	}

	s.send(stripeEvent("evt_acct_2", "account.updated", account("acct_A", false)))
	if a, _ = s.app.FindRecordById(collections.Affiliates, fx.A.ID); a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Errorf("payouts_enabled = true after the account was restricted, want false")
	}

	s.send(stripeEvent("evt_acct_3", "account.updated", account("acct_unknown", true)))
	stripeWantString(t, "outcome", s.outcome("evt_acct_3"), "ignored: unknown account")
}

func TestStripeSignatureRejected(t *testing.T) {
	s := newStripe(t)
	body := stripeEvent("evt_sig", "checkout.session.completed", stripeCheckoutPayment("cs_sig", "pi_sig", fx.RowsA.Click, 1000))
	sign := func(secret string, at time.Time) string {
		return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
	}
	tampered := []byte(strings.Replace(string(body), `"amount_total":1000`, `"amount_total":999999`, 1))
	if string(tampered) == string(body) {
		t.Fatal("tampering did not change the body")
	}

	for _, tc := range []struct {
		name      string
		body      []byte
		signature string
	}{
		{"tampered body", tampered, sign(stripeTestSecret, time.Now())},
		{"wrong secret", body, sign("whsec_other", time.Now())},
		{"expired timestamp", body, sign(stripeTestSecret, time.Now().Add(-10*time.Minute))},
		{"no signature", body, ""},
		{"garbage signature", body, "t=123,v1=zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.postRaw(tc.body, tc.signature)
			if res.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.Code, res.Body)
			}
			if !strings.Contains(res.Body.String(), "signature") {
				t.Errorf("body %s does not mention the signature", res.Body)
			}
		})
	}
	if n := len(s.stripeConversions("")); n != 0 {
		t.Errorf("%d stripe conversions after rejected deliveries, want 0", n)
	}
	if n := s.count(collections.StripeEvents); n != 0 {
		t.Errorf("%d stripe events after rejected deliveries, want 0", n)
	}
}

func TestStripeDuplicateEvent(t *testing.T) {
	s := newStripe(t)
	body := stripeEvent("evt_dup", "checkout.session.completed", stripeCheckoutPayment("cs_dup", "pi_dup", fx.RowsA.Click, 1200))

	first := s.send(body)
	if first.JSON["duplicate"] == true {
		t.Fatalf("first delivery answered duplicate: %s", first.Body)
	}
	second := s.send(body)
	if second.JSON["duplicate"] != true {
		t.Fatalf("second delivery: %s, want duplicate", second.Body)
	}
	if n := len(s.stripeConversions("")); n != 1 {
		t.Errorf("%d stripe conversions, want 1", n)
	}
	if n := s.count(collections.StripeEvents); n != 1 {
		t.Errorf("%d stripe events, want 1", n)
	}
}

func TestStripeUnknownEventIgnored(t *testing.T) {
	s := newStripe(t)
	res := s.send(stripeEvent("evt_unknown", "customer.created", map[string]any{"id": "cus_x", "object": "customer"}))
	stripeWantString(t, "response outcome", res.JSON["outcome"].(string), "ignored: customer.created")
	stripeWantString(t, "stored outcome", s.outcome("evt_unknown"), "ignored: customer.created")
}

func TestStripeMissingSecret(t *testing.T) {
	s := newStripeEnv(t, hooks.Config{IPSalt: "s"})
	body := stripeEvent("evt_nosecret", "checkout.session.completed", stripeCheckoutPayment("cs_ns", "pi_ns", fx.RowsA.Click, 1000))
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	res := s.postRaw(signed.Payload, signed.Header)
	if res.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", res.Code, res.Body)
	}
	if !strings.Contains(res.Body.String(), "STRIPE_WEBHOOK_SECRET") {
		t.Errorf("body %s does not name STRIPE_WEBHOOK_SECRET", res.Body)
	}
	if n := s.count(collections.StripeEvents); n != 0 {
		t.Errorf("%d stripe events, want 0", n)
	}
}

// A failure after the sale was written rolls everything back, so Stripe's retry records it.
func TestStripeFailureRollsBackForRetry(t *testing.T) {
	s := newStripe(t)
	var fail atomic.Bool
	fail.Store(true)
	s.app.OnRecordCreate(collections.StripeEvents).BindFunc(func(e *core.RecordEvent) error {
		if fail.Load() {
			return errors.New("disk full")
		}
		return e.Next()
	})
	body := stripeEvent("evt_crash", "checkout.session.completed", stripeCheckoutPayment("cs_crash", "pi_crash", fx.RowsA.Click, 1000))
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: time.Now()})
	if res := s.postRaw(signed.Payload, signed.Header); res.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", res.Code, res.Body)
	}
	if n := len(s.stripeConversions("")); n != 0 {
		t.Fatalf("%d stripe conversions after a failed delivery, want 0", n)
	}
	if n := s.count(collections.StripeEvents); n != 0 {
		t.Fatalf("%d stripe events after a failed delivery, want 0", n)
	}

	fail.Store(false)
	res := s.send(body)
	stripeWantPrefix(t, "retry outcome", res.JSON["outcome"].(string), "recorded conversion")
	if n := len(s.stripeConversions("")); n != 1 {
		t.Errorf("%d stripe conversions after the retry, want 1", n)
	}
}

// Events of connected accounts come signed with the Connect endpoint's secret: accepted when
// STRIPE_CONNECT_WEBHOOK_SECRET is set, while any other secret is still a 400.
func TestStripeConnectEndpointSecret(t *testing.T) {
	const connectSecret = "whsec_connect_test"
	s := newStripeEnv(t, hooks.Config{IPSalt: "s", StripeWebhookSecret: stripeTestSecret, StripeConnectWebhookSecret: connectSecret})
	s.update(collections.Affiliates, fx.A.ID, map[string]any{collections.AffiliateStripeAccountID: "acct_A"})
	post := func(id, secret string) *pbatest.Response {
		body := stripeEvent(id, "account.updated", map[string]any{"id": "acct_A", "object": "account", "type": "express", "payouts_enabled": true})
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: time.Now()})
		return s.postRaw(signed.Payload, signed.Header)
	}
	if res := post("evt_connect_bad", "whsec_someone_else"); res.Code != http.StatusBadRequest {
		t.Fatalf("foreign secret: %d %s", res.Code, res.Body)
	}
	if a, _ := s.app.FindRecordById(collections.Affiliates, fx.A.ID); a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Fatal("a refused event changed the affiliate")
	}
	if res := post("evt_connect_ok", connectSecret); res.Code != http.StatusOK {
		t.Fatalf("connect secret: %d %s", res.Code, res.Body)
	}
	if a, _ := s.app.FindRecordById(collections.Affiliates, fx.A.ID); !a.GetBool(collections.AffiliatePayoutsEnabled) {
		t.Fatal("payouts_enabled not set by the Connect event")
	}
}
