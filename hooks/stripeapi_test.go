package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// FakeStripeKey is the secret key FakeStripe accepts.
const FakeStripeKey = "sk_test_x"

// FakeStripe is an httptest stand-in for Stripe's REST API on loopback, so no test ever reaches
// a Stripe host. It checks the bearer key, counts requests and can fail on demand. It lives in a
// _test file of package hooks and is exported so the hooks_test package can use it too.
//
// POSTs (transfers, accounts, account links) enforce idempotency keys like Stripe: the same key
// with the same parameters replays the first answer (same object, Idempotent-Replayed: true);
// the same key with other parameters is a 400 idempotency_error.
type FakeStripe struct {
	URL string

	mu               sync.Mutex
	calls            int
	failing          bool
	failNext         int
	codes            map[string]string   // promotion code id → code
	sessions         map[string][]string // checkout session id → its discounts' promotion code ids
	transferFails    []int               // statuses the next transfer requests answer without a transfer
	crashAfterCommit int                 // next transfer requests: processed, then the connection drops
	refuseDest       map[string]string   // destination → message of a permanent 400
	idem             map[string]fakeIdempotent
	transfers        []FakeTransfer
	accounts         []string
	links            int
}

// FakeTransfer is a transfer the fake made.
type FakeTransfer struct {
	ID, Currency, Destination, TransferGroup, Payout, Affiliate, IdempotencyKey string
	Amount                                                                      int64
}

// fakeIdempotent is the first answer to an idempotency key.
type fakeIdempotent struct {
	path   string
	params map[string][]string
	status int
	body   []byte
}

// NewFakeStripe starts a fake closed when t ends.
func NewFakeStripe(t testing.TB) *FakeStripe {
	t.Helper()
	f := &FakeStripe{codes: map[string]string{}, sessions: map[string][]string{}, idem: map[string]fakeIdempotent{}, refuseDest: map[string]string{}}
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

// AddCheckoutSession makes GET /v1/checkout/sessions/{id} answer a paid session discounted by
// these promotion codes. Like Stripe, it lists the discounts (total_details.breakdown) only
// when the request expands them.
func (f *FakeStripe) AddCheckoutSession(id string, promotionCodes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[id] = promotionCodes
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

// FailTransfers makes the next transfer requests answer these statuses (e.g. 500, 429) without
// making a transfer and without storing the answer under the idempotency key.
func (f *FakeStripe) FailTransfers(statuses ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transferFails = append(f.transferFails, statuses...)
}

// CrashAfterCommit makes the next n transfer requests do their work (a new transfer, or the
// replay of an earlier one) and then drop the connection, so the caller never sees the answer.
func (f *FakeStripe) CrashAfterCommit(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crashAfterCommit = n
}

// RefuseDestination makes transfers to the account answer a permanent 400 with msg.
func (f *FakeStripe) RefuseDestination(account, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if msg == "" {
		delete(f.refuseDest, account)
		return
	}
	f.refuseDest[account] = msg
}

// Transfers returns the transfers made, in order (replays are not new transfers).
func (f *FakeStripe) Transfers() []FakeTransfer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FakeTransfer(nil), f.transfers...)
}

// Accounts returns the ids of the Connect accounts created.
func (f *FakeStripe) Accounts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.accounts...)
}

// AccountLinks is how many account links were created.
func (f *FakeStripe) AccountLinks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.links
}

// Calls is how many requests reached the fake.
func (f *FakeStripe) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// serve answers one request: key check, injected failures, then the route.
func (f *FakeStripe) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	failing, failNow := f.failing, f.failNext > 0
	if failNow {
		f.failNext--
	}
	id, isPromo := strings.CutPrefix(r.URL.Path, "/v1/promotion_codes/")
	code, known := f.codes[id]
	sessionID, isSession := strings.CutPrefix(r.URL.Path, "/v1/checkout/sessions/")
	sessionPromos, knownSession := f.sessions[sessionID]
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
	case r.Method == http.MethodPost && (r.URL.Path == "/v1/transfers" || r.URL.Path == "/v1/accounts" || r.URL.Path == "/v1/account_links"):
		f.servePost(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/transfers":
		f.listTransfers(w, r)
	case r.Method == http.MethodGet && isSession && knownSession:
		f.serveSession(w, r, sessionID, sessionPromos)
	case r.Method == http.MethodGet && isSession:
		stripeErr(http.StatusNotFound, "invalid_request_error", "resource_missing", "No such checkout.session: '"+sessionID+"'")
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

// serveSession answers GET /v1/checkout/sessions/{id}: 100 off per promotion code, listed in
// total_details.breakdown only when expand[] asks for it.
func (f *FakeStripe) serveSession(w http.ResponseWriter, r *http.Request, id string, promos []string) {
	totals := map[string]any{"amount_discount": 100 * len(promos), "amount_shipping": 0, "amount_tax": 0}
	expanded := false // stripe-go sends expand[0]=…, curl-style clients expand[]=…
	for k, v := range r.URL.Query() {
		expanded = expanded || strings.HasPrefix(k, "expand[") && slices.Contains(v, "total_details.breakdown")
	}
	if expanded {
		var discounts []any
		for i, promo := range promos {
			discounts = append(discounts, map[string]any{"amount": 100, "discount": map[string]any{
				"id": fmt.Sprintf("di_%s_%d", id, i), "object": "discount", "promotion_code": promo,
				"coupon": map[string]any{"id": "co_" + promo, "object": "coupon", "amount_off": 100, "valid": true}}})
		}
		totals["breakdown"] = map[string]any{"discounts": discounts, "taxes": []any{}}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "checkout.session", "mode": "payment",
		"payment_status": "paid", "status": "complete", "amount_total": 2000, "currency": "usd", "total_details": totals})
}

// listTransfers answers GET /v1/transfers filtered by destination and transfer_group, newest
// first, in pages (limit, starting_after) like Stripe.
func (f *FakeStripe) listTransfers(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 || limit > 100 {
		limit = 10
	}
	var data []map[string]any
	started := q.Get("starting_after") == ""
	more := false
	for i := len(f.transfers) - 1; i >= 0; i-- {
		tr := f.transfers[i]
		if (q.Get("destination") != "" && tr.Destination != q.Get("destination")) ||
			(q.Get("transfer_group") != "" && tr.TransferGroup != q.Get("transfer_group")) {
			continue
		}
		if !started {
			started = tr.ID == q.Get("starting_after")
			continue
		}
		if len(data) == limit {
			more = true
			break
		}
		data = append(data, map[string]any{"id": tr.ID, "object": "transfer", "amount": tr.Amount, "currency": tr.Currency,
			"destination": tr.Destination, "transfer_group": tr.TransferGroup, "livemode": false,
			"metadata": map[string]string{"payout": tr.Payout, "affiliate": tr.Affiliate}})
	}
	if data == nil {
		data = []map[string]any{}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "url": "/v1/transfers", "has_more": more, "data": data})
}

// ForgetIdempotencyKeys drops every stored key, as Stripe does after 24 hours.
func (f *FakeStripe) ForgetIdempotencyKeys() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idem = map[string]fakeIdempotent{}
}

// servePost handles the POST routes under the fake's lock, so idempotency is atomic.
func (f *FakeStripe) servePost(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	answer := func(status int, body any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
	stripeErr := func(status int, typ, code, msg string) {
		answer(status, map[string]any{"error": map[string]any{"type": typ, "code": code, "message": msg}})
	}
	if err := r.ParseForm(); err != nil {
		stripeErr(http.StatusBadRequest, "invalid_request_error", "", "Malformed body.")
		return
	}
	isTransfer := r.URL.Path == "/v1/transfers"
	if isTransfer && len(f.transferFails) > 0 {
		status := f.transferFails[0]
		f.transferFails = f.transferFails[1:]
		if status == http.StatusTooManyRequests {
			stripeErr(status, "invalid_request_error", "rate_limit", "Too many requests hit the API too quickly.")
		} else {
			stripeErr(status, "api_error", "", "Something went wrong on Stripe's end.")
		}
		return
	}
	// crash drops the connection after the work is done (and stored under the key).
	crash := func() bool {
		if !isTransfer || f.crashAfterCommit <= 0 {
			return false
		}
		f.crashAfterCommit--
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		return false
	}
	key := r.Header.Get("Idempotency-Key")
	if prev, ok := f.idem[key]; ok && key != "" {
		if prev.path != r.URL.Path || !reflect.DeepEqual(prev.params, map[string][]string(r.PostForm)) {
			stripeErr(http.StatusBadRequest, "idempotency_error", "",
				"Keys for idempotent requests can only be used with the same parameters they were first used with.")
			return
		}
		if crash() {
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(prev.status)
		_, _ = w.Write(prev.body)
		return
	}

	status, body := f.create(r)
	raw, _ := json.Marshal(body)
	if key != "" {
		f.idem[key] = fakeIdempotent{path: r.URL.Path, params: r.PostForm, status: status, body: raw}
	}
	if crash() {
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

// create makes the object of a POST (caller holds mu) and returns Stripe's answer.
func (f *FakeStripe) create(r *http.Request) (int, any) {
	form := r.PostForm
	invalid := func(param, msg string) (int, any) {
		return http.StatusBadRequest, map[string]any{"error": map[string]any{
			"type": "invalid_request_error", "code": "parameter_invalid", "param": param, "message": msg}}
	}
	switch r.URL.Path {
	case "/v1/transfers":
		amount, err := strconv.ParseInt(form.Get("amount"), 10, 64)
		if err != nil || amount <= 0 {
			return invalid("amount", "Invalid positive integer")
		}
		dest := form.Get("destination")
		if !strings.HasPrefix(dest, "acct_") {
			return http.StatusNotFound, map[string]any{"error": map[string]any{
				"type": "invalid_request_error", "code": "resource_missing", "param": "destination", "message": "No such destination: '" + dest + "'"}}
		}
		if msg, refused := f.refuseDest[dest]; refused {
			return invalid("destination", msg)
		}
		tr := FakeTransfer{ID: fmt.Sprintf("tr_fake_%d", len(f.transfers)+1), Amount: amount, Currency: form.Get("currency"),
			Destination: dest, TransferGroup: form.Get("transfer_group"), Payout: form.Get("metadata[payout]"),
			Affiliate: form.Get("metadata[affiliate]"), IdempotencyKey: r.Header.Get("Idempotency-Key")}
		f.transfers = append(f.transfers, tr)
		return http.StatusOK, map[string]any{"id": tr.ID, "object": "transfer", "amount": tr.Amount, "currency": tr.Currency,
			"destination": tr.Destination, "transfer_group": tr.TransferGroup, "livemode": false,
			"metadata": map[string]string{"payout": tr.Payout, "affiliate": tr.Affiliate}}
	case "/v1/accounts":
		if form.Get("type") != "express" || form.Get("capabilities[transfers][requested]") != "true" {
			return invalid("type", "An Express account that can receive transfers is expected.")
		}
		id := fmt.Sprintf("acct_fake%d", len(f.accounts)+1)
		f.accounts = append(f.accounts, id)
		return http.StatusOK, map[string]any{"id": id, "object": "account", "type": "express", "email": form.Get("email"),
			"payouts_enabled": false, "charges_enabled": false}
	default: // /v1/account_links
		if form.Get("type") != "account_onboarding" || form.Get("refresh_url") == "" || form.Get("return_url") == "" {
			return invalid("type", "type, refresh_url and return_url are required.")
		}
		account := form.Get("account")
		if !slices.Contains(f.accounts, account) {
			return http.StatusNotFound, map[string]any{"error": map[string]any{
				"type": "invalid_request_error", "code": "resource_missing", "message": "No such account: '" + account + "'"}}
		}
		f.links++
		return http.StatusOK, map[string]any{"object": "account_link", "expires_at": 1,
			"url": fmt.Sprintf("%s/setup/%s/%d", f.URL, account, f.links)}
	}
}

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
