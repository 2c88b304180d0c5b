package hooks

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
	"github.com/stripe/stripe-go/v76"
)

// The fake Stripe of the hooks tests is pbatest's (shared with the soak).
const FakeStripeKey = pbatest.FakeStripeKey

type (
	FakeStripe   = pbatest.FakeStripe
	FakeTransfer = pbatest.FakeTransfer
)

// NewFakeStripe starts a fake closed when t ends.
func NewFakeStripe(t testing.TB) *FakeStripe { return pbatest.NewFakeStripe(t) }

// newFakeStripeAPI is a real stripeAPI client talking to a new fake.
func newFakeStripeAPI(t *testing.T) (stripeAPI, *FakeStripe) {
	t.Helper()
	fake := NewFakeStripe(t)
	api := newStripeAPI(Config{StripeSecretKey: FakeStripeKey, StripeAPIBase: fake.URL})
	if api == nil {
		t.Fatal("newStripeAPI returned nil with a key")
	}
	return api, fake
}

func TestStripeAPIWithoutKeyIsNil(t *testing.T) {
	if api := newStripeAPI(Config{StripeAPIBase: "http://127.0.0.1:1"}); api != nil {
		t.Fatalf("newStripeAPI without a key = %#v, want nil", api)
	}
}

func TestStripeAPIPromotionCode(t *testing.T) {
	api, fake := newFakeStripeAPI(t)
	fake.AddPromotionCode("promo_1", "ADA10")

	code, err := api.PromotionCode(context.Background(), "promo_1")
	if err != nil || code != "ADA10" {
		t.Fatalf("PromotionCode = %q, %v; want ADA10", code, err)
	}
	if n := fake.Calls(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
	// A client per Config: the process-wide key stays untouched.
	if stripe.Key != "" {
		t.Errorf("stripe.Key = %q, want it left empty", stripe.Key)
	}
}

// The session is retrieved with its discounts expanded: the fake, like Stripe, lists them only then.
func TestStripeAPICheckoutSessionPromotionCodes(t *testing.T) {
	api, fake := newFakeStripeAPI(t)
	fake.AddCheckoutSession("cs_1", "promo_a", "promo_b", "promo_a")
	ids, err := api.CheckoutSessionPromotionCodes(context.Background(), "cs_1")
	if err != nil || strings.Join(ids, ",") != "promo_a,promo_b" {
		t.Fatalf("CheckoutSessionPromotionCodes = %v, %v; want promo_a,promo_b", ids, err)
	}
	if _, err := api.CheckoutSessionPromotionCodes(context.Background(), "cs_missing"); err == nil || !stripePermanentError(err) {
		t.Fatalf("unknown session: %v, want a permanent error", err)
	}
	before := fake.Calls()
	if _, err := api.CheckoutSessionPromotionCodes(context.Background(), ""); err == nil || fake.Calls() != before {
		t.Fatal("an empty session id reached Stripe")
	}
}

func TestStripeAPIPromotionCodeErrors(t *testing.T) {
	api, fake := newFakeStripeAPI(t)

	t.Run("unknown id is permanent", func(t *testing.T) {
		_, err := api.PromotionCode(context.Background(), "promo_missing")
		if err == nil || !stripePermanentError(err) || !strings.Contains(err.Error(), "404 resource_missing") {
			t.Fatalf("err = %v (permanent %t), want a permanent 404 resource_missing", err, stripePermanentError(err))
		}
	})

	t.Run("server error is retryable", func(t *testing.T) {
		fake.SetFailing(true)
		defer fake.SetFailing(false)
		before := fake.Calls()
		_, err := api.PromotionCode(context.Background(), "promo_1")
		if err == nil || stripePermanentError(err) || !strings.Contains(err.Error(), "500") {
			t.Fatalf("err = %v, want a retryable 500", err)
		}
		if n := fake.Calls() - before; n != 1 {
			t.Errorf("%d calls with Stripe-Should-Retry: false, want 1", n)
		}
	})

	t.Run("transient 500s are retried", func(t *testing.T) {
		fake.AddPromotionCode("promo_retry", "RETRY")
		fake.FailNext(2)
		before := fake.Calls()
		code, err := api.PromotionCode(context.Background(), "promo_retry")
		if err != nil || code != "RETRY" {
			t.Fatalf("PromotionCode = %q, %v; want RETRY after two retries", code, err)
		}
		if n := fake.Calls() - before; n != 3 {
			t.Errorf("%d calls, want 3 (two network retries)", n)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		other := newStripeAPI(Config{StripeSecretKey: "sk_test_wrong", StripeAPIBase: fake.URL})
		_, err := other.PromotionCode(context.Background(), "promo_1")
		if err == nil || stripePermanentError(err) || !strings.Contains(err.Error(), "401") {
			t.Fatalf("err = %v, want a retryable 401", err)
		}
	})

	t.Run("canceled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := api.PromotionCode(ctx, "promo_1"); err == nil || stripePermanentError(err) {
			t.Fatalf("err = %v, want a retryable error", err)
		}
	})

	t.Run("empty id", func(t *testing.T) {
		before := fake.Calls()
		if _, err := api.PromotionCode(context.Background(), ""); err == nil {
			t.Fatal("no error for an empty id")
		}
		if fake.Calls() != before {
			t.Error("an empty id reached Stripe")
		}
	})
}

func TestStripePromotionCodeIDs(t *testing.T) {
	event := func(typ string, obj map[string]any) stripe.Event {
		raw, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return stripe.Event{ID: "evt", Type: stripe.EventType(typ), Data: &stripe.EventData{Raw: raw}}
	}
	invoice := func(extra map[string]any) map[string]any {
		obj := map[string]any{"id": "in_1", "object": "invoice", "amount_paid": 1000, "currency": "usd"}
		for k, v := range extra {
			obj[k] = v
		}
		return obj
	}
	discount := func(id string, promo any) map[string]any {
		return map[string]any{"id": id, "object": "discount", "coupon": map[string]any{"id": "co_1", "object": "coupon"}, "promotion_code": promo}
	}
	checkout := func(status string, extra map[string]any) map[string]any {
		obj := map[string]any{"id": "cs_1", "object": "checkout.session", "payment_status": status, "amount_total": 1000, "currency": "usd"}
		for k, v := range extra {
			obj[k] = v
		}
		return obj
	}
	breakdown := map[string]any{"breakdown": map[string]any{"discounts": []any{
		map[string]any{"amount": 100, "discount": discount("di_1", "promo_cs")},
		map[string]any{"amount": 100, "discount": discount("di_2", nil)},
	}}}

	for _, tc := range []struct {
		name  string
		event stripe.Event
		want  string
	}{
		{"invoice discount with promotion code id",
			event("invoice.paid", invoice(map[string]any{"discount": discount("di_1", "promo_1"), "discounts": []string{"di_1"}})), "promo_1"},
		{"invoice discount with expanded promotion code",
			event("invoice.paid", invoice(map[string]any{"discount": discount("di_1", map[string]any{"id": "promo_x", "object": "promotion_code", "code": "X"})})), "promo_x"},
		{"invoice discounts expanded, deduplicated",
			event("invoice.paid", invoice(map[string]any{"discount": discount("di_1", "promo_1"),
				"discounts": []any{discount("di_1", "promo_1"), discount("di_2", "promo_2"), discount("di_3", nil), nil}})), "promo_1,promo_2"},
		{"invoice discounts as bare ids only", event("invoice.paid", invoice(map[string]any{"discount": nil, "discounts": []string{"di_1", "di_2"}})), ""},
		{"invoice discount without promotion code", event("invoice.paid", invoice(map[string]any{"discount": discount("di_1", nil)})), ""},
		{"invoice with pba_coupon metadata",
			event("invoice.paid", invoice(map[string]any{"discount": discount("di_1", "promo_1"), "metadata": map[string]string{"pba_coupon": "x"}})), ""},
		{"invoice with pba_coupon on the subscription",
			event("invoice.paid", invoice(map[string]any{"discount": discount("di_1", "promo_1"),
				"subscription_details": map[string]any{"metadata": map[string]string{"pba_coupon": "x"}}})), ""},
		{"invoice with nothing paid and nothing to keep its attribution for",
			event("invoice.paid", invoice(map[string]any{"amount_paid": 0, "discount": discount("di_1", "promo_1")})), ""},
		{"trial invoice: its promotion code is kept for the subscription",
			event("invoice.paid", invoice(map[string]any{"amount_paid": 0, "subscription": "sub_1", "discount": discount("di_1", "promo_1")})), "promo_1"},
		{"checkout breakdown", event("checkout.session.completed", checkout("paid", map[string]any{"total_details": breakdown})), "promo_cs"},
		{"checkout as events carry it: the session to retrieve",
			event("checkout.session.completed", checkout("paid", map[string]any{"total_details": map[string]any{"amount_discount": 100}})), "session cs_1"},
		{"checkout without a discount", event("checkout.session.completed", checkout("paid", map[string]any{"total_details": map[string]any{"amount_discount": 0}})), ""},
		{"trial checkout: amount_discount is 0, the session to retrieve",
			event("checkout.session.completed", checkout("no_payment_required", map[string]any{"amount_total": 0, "subscription": "sub_1",
				"total_details": map[string]any{"amount_discount": 0}})), "session cs_1"},
		{"trial checkout with its breakdown", event("checkout.session.completed", checkout("no_payment_required",
			map[string]any{"amount_total": 0, "subscription": "sub_1", "total_details": breakdown})), "promo_cs"},
		{"$0 checkout with nothing to keep its attribution for",
			event("checkout.session.completed", checkout("no_payment_required", map[string]any{"amount_total": 0})), ""},
		{"checkout unpaid", event("checkout.session.completed", checkout("unpaid", map[string]any{"total_details": breakdown})), ""},
		{"checkout with pba_coupon",
			event("checkout.session.completed", checkout("paid", map[string]any{"total_details": breakdown, "metadata": map[string]string{"pba_coupon": "x"}})), ""},
		{"async checkout", event("checkout.session.async_payment_succeeded", checkout("paid", map[string]any{"total_details": breakdown})), "promo_cs"},
		{"other events", event("payment_intent.succeeded", map[string]any{"id": "pi_1", "object": "payment_intent"}), ""},
		{"malformed object", event("invoice.paid", map[string]any{"id": "in_1", "discount": 42}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, session := stripePromotionCodeIDs(tc.event)
			got := strings.Join(ids, ",")
			if session != "" {
				got = "session " + session
			}
			if got != tc.want {
				t.Errorf("ids = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("capped", func(t *testing.T) {
		var many []any
		for i := 0; i < 2*stripeMaxPromotionCodes; i++ {
			many = append(many, discount("di", "promo_"+string(rune('a'+i))))
		}
		if ids, _ := stripePromotionCodeIDs(event("invoice.paid", invoice(map[string]any{"discounts": many}))); len(ids) != stripeMaxPromotionCodes {
			t.Errorf("%d ids, want %d", len(ids), stripeMaxPromotionCodes)
		}
	})
}

func TestStripePromotionOutcomeNote(t *testing.T) {
	if got := (stripePromotion{}).annotate("recorded"); got != "recorded" {
		t.Errorf("annotate without failure = %q", got)
	}
	if got := (stripePromotion{failure: "promotion code lookup failed: x"}).annotate("recorded"); got != "recorded; promotion code lookup failed: x" {
		t.Errorf("annotate = %q", got)
	}
	var c promotionCodeCache
	for i := 0; i <= stripePromotionCacheSize; i++ {
		c.put(strings.Repeat("x", i), "c")
	}
	if n := len(c.codes); n > stripePromotionCacheSize {
		t.Errorf("cache holds %d entries, want at most %d", n, stripePromotionCacheSize)
	}
}

// TestStripeAPITransfer: the client sends every field of the request and its idempotency key;
// the fake replays the same transfer for the same key and refuses the key with other values.
func TestStripeAPITransfer(t *testing.T) {
	api, fake := newFakeStripeAPI(t)
	ctx := context.Background()
	req := transferRequest{Amount: 6500, Currency: "usd", Destination: "acct_1", TransferGroup: "run1",
		Payout: "po1", Affiliate: "aff1", IdempotencyKey: "pba_payout_po1"}
	id, err := api.Transfer(ctx, req)
	if err != nil || id == "" {
		t.Fatalf("Transfer = %q, %v", id, err)
	}
	want := FakeTransfer{ID: id, Amount: 6500, Currency: "usd", Destination: "acct_1", TransferGroup: "run1",
		Payout: "po1", Affiliate: "aff1", IdempotencyKey: "pba_payout_po1"}
	if trs := fake.Transfers(); len(trs) != 1 || trs[0] != want {
		t.Fatalf("transfers %+v, want %+v", trs, want)
	}
	if again, err := api.Transfer(ctx, req); err != nil || again != id || len(fake.Transfers()) != 1 {
		t.Fatalf("same key: %q %v, %d transfers", again, err, len(fake.Transfers()))
	}
	other := req
	other.Amount = 7000
	_, err = api.Transfer(ctx, other)
	if err == nil || !strings.Contains(err.Error(), "idempotency_error") {
		t.Fatalf("same key, other amount: %v", err)
	}
	if p, _ := classifyTransferError(err); p {
		t.Error("an idempotency conflict must not count as a permanent failure")
	}
	for name, bad := range map[string]transferRequest{
		"no key": {Amount: 1, Currency: "usd", Destination: "acct_1"}, "no destination": {Amount: 1, Currency: "usd", IdempotencyKey: "k"},
		"zero amount": {Currency: "usd", Destination: "acct_1", IdempotencyKey: "k"},
	} {
		if _, err := api.Transfer(ctx, bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(fake.Transfers()); n != 1 {
		t.Errorf("%d transfers, want 1", n)
	}
}

// TestStripeAPIConnectAccounts: one account per idempotency key; links for known accounts.
func TestStripeAPIConnectAccounts(t *testing.T) {
	api, fake := newFakeStripeAPI(t)
	ctx := context.Background()
	a, err := api.CreateExpressAccount(ctx, "a@example.test", "pba_connect_a")
	if err != nil || !strings.HasPrefix(a, "acct_") {
		t.Fatalf("CreateExpressAccount = %q, %v", a, err)
	}
	if again, err := api.CreateExpressAccount(ctx, "a@example.test", "pba_connect_a"); err != nil || again != a {
		t.Fatalf("same key: %q %v", again, err)
	}
	if b, err := api.CreateExpressAccount(ctx, "b@example.test", "pba_connect_b"); err != nil || b == a {
		t.Fatalf("other key: %q %v", b, err)
	}
	if n := len(fake.Accounts()); n != 2 {
		t.Fatalf("%d accounts, want 2", n)
	}
	url, err := api.AccountLink(ctx, a, "https://x.example/portal/?stripe=refresh", "https://x.example/portal/?stripe=return")
	if err != nil || !strings.Contains(url, a) {
		t.Fatalf("AccountLink = %q, %v", url, err)
	}
	if _, err := api.AccountLink(ctx, "acct_missing", "https://x.example/r", "https://x.example/r"); err == nil || !stripePermanentError(err) {
		t.Fatalf("link for an unknown account: %v", err)
	}
}
