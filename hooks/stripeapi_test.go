package hooks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// FakeStripeKey is the secret key FakeStripe accepts.
const FakeStripeKey = "sk_test_x"

// FakeStripe is an httptest stand-in for Stripe's REST API on loopback, so no test ever reaches
// a Stripe host. It checks the bearer key, counts requests and can fail on demand. It lives in a
// _test file of package hooks and is exported so the hooks_test package can use it too; later
// API calls (transfers, accounts) add their routes here.
type FakeStripe struct {
	URL string

	mu       sync.Mutex
	calls    int
	failing  bool
	failNext int
	codes    map[string]string // promotion code id → code
}

// NewFakeStripe starts a fake closed when t ends.
func NewFakeStripe(t testing.TB) *FakeStripe {
	t.Helper()
	f := &FakeStripe{codes: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// AddPromotionCode makes GET /v1/promotion_codes/{id} answer with code.
func (f *FakeStripe) AddPromotionCode(id, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.codes[id] = code
}

// SetFailing makes every request answer 500 with Stripe-Should-Retry: false, so stripe-go does
// not retry and tests stay fast.
func (f *FakeStripe) SetFailing(failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = failing
}

// FailNext makes the next n requests answer a plain 500, which stripe-go retries.
func (f *FakeStripe) FailNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = n
}

// Calls is how many requests reached the fake.
func (f *FakeStripe) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *FakeStripe) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	failing, failNow := f.failing, f.failNext > 0
	if failNow {
		f.failNext--
	}
	id, isPromo := strings.CutPrefix(r.URL.Path, "/v1/promotion_codes/")
	code, known := f.codes[id]
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	stripeErr := func(status int, typ, code, msg string) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "code": code, "message": msg}})
	}
	switch {
	case r.Header.Get("Authorization") != "Bearer "+FakeStripeKey:
		stripeErr(http.StatusUnauthorized, "invalid_request_error", "", "Invalid API Key provided.")
	case failing:
		w.Header().Set("Stripe-Should-Retry", "false")
		stripeErr(http.StatusInternalServerError, "api_error", "", "Something went wrong on Stripe's end.")
	case failNow:
		stripeErr(http.StatusInternalServerError, "api_error", "", "Something went wrong on Stripe's end.")
	case r.Method != http.MethodGet || !isPromo || id == "" || strings.Contains(id, "/"):
		stripeErr(http.StatusNotFound, "invalid_request_error", "", "Unrecognized request URL.")
	case !known:
		stripeErr(http.StatusNotFound, "invalid_request_error", "resource_missing", "No such promotion code: '"+id+"'")
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": id, "object": "promotion_code", "active": true, "code": code, "livemode": false,
			"coupon":   map[string]any{"id": "co_" + id, "object": "coupon", "percent_off": 10, "valid": true},
			"metadata": map[string]string{}, "times_redeemed": 1,
		})
	}
}

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
		{"invoice with nothing paid",
			event("invoice.paid", invoice(map[string]any{"amount_paid": 0, "discount": discount("di_1", "promo_1")})), ""},
		{"checkout breakdown", event("checkout.session.completed", checkout("paid", map[string]any{"total_details": breakdown})), "promo_cs"},
		{"checkout unexpanded", event("checkout.session.completed", checkout("paid", map[string]any{"total_details": map[string]any{"amount_discount": 100}})), ""},
		{"checkout unpaid", event("checkout.session.completed", checkout("unpaid", map[string]any{"total_details": breakdown})), ""},
		{"checkout with pba_coupon",
			event("checkout.session.completed", checkout("paid", map[string]any{"total_details": breakdown, "metadata": map[string]string{"pba_coupon": "x"}})), ""},
		{"async checkout", event("checkout.session.async_payment_succeeded", checkout("paid", map[string]any{"total_details": breakdown})), "promo_cs"},
		{"other events", event("payment_intent.succeeded", map[string]any{"id": "pi_1", "object": "payment_intent"}), ""},
		{"malformed object", event("invoice.paid", map[string]any{"id": "in_1", "discount": 42}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(stripePromotionCodeIDs(tc.event), ","); got != tc.want {
				t.Errorf("ids = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("capped", func(t *testing.T) {
		var many []any
		for i := 0; i < 2*stripeMaxPromotionCodes; i++ {
			many = append(many, discount("di", "promo_"+string(rune('a'+i))))
		}
		if n := len(stripePromotionCodeIDs(event("invoice.paid", invoice(map[string]any{"discounts": many})))); n != stripeMaxPromotionCodes {
			t.Errorf("%d ids, want %d", n, stripeMaxPromotionCodes)
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
