package pbatest

import (
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
)

// FakeStripeKey is the secret key FakeStripe accepts.
const FakeStripeKey = "sk_test_x"

// FakeStripe is an httptest stand-in for Stripe's REST API on loopback, so no test ever reaches
// a Stripe host. It checks the bearer key, counts requests and can fail on demand. It lives in
// pbatest so the hooks tests and the soak (internal/soak) share it.
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
