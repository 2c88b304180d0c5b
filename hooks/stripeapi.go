package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// Limits of every call pbaffiliate makes to Stripe's API. A slow Stripe must not hold a webhook
// or a payout run for long: each attempt gets stripeHTTPTimeout, and stripe-go retries network
// errors, 409s and (for GETs) 5xx answers stripeMaxNetworkRetries times with its own backoff.
const (
	stripeHTTPTimeout       = 10 * time.Second
	stripeMaxNetworkRetries = 2
)

// stripeAPI is the part of Stripe's REST API pbaffiliate calls, behind an interface so the rest
// of the package never touches stripe-go's client (and its globals) directly and tests can point
// it at a fake. Every method takes a context so callers bound how long they wait.
type stripeAPI interface {
	// PromotionCode returns the customer-facing code (as the merchant typed it, e.g. "ADA10")
	// of the promotion code with the given id ("promo_..."): Stripe's events name promotion
	// codes only by id, while coupons in pbaffiliate are keyed by the code customers enter.
	PromotionCode(ctx context.Context, id string) (code string, err error)

	// CheckoutSessionPromotionCodes returns the promotion code ids of a Checkout Session's
	// discounts: its checkout.session.completed event cannot carry them (they are in
	// total_details.breakdown, which Stripe includes only when a request expands it).
	CheckoutSessionPromotionCodes(ctx context.Context, sessionID string) (ids []string, err error)

	// Transfer moves a payout's money from the platform balance to the affiliate's connected
	// account. The request's idempotency key makes a retry (after a crash, a timeout, a lost
	// answer) return the transfer Stripe already made instead of paying twice.
	Transfer(ctx context.Context, req transferRequest) (transferID string, err error)

	// FindTransfer returns the id of a transfer already made for the payout ("" if none),
	// found among the destination's transfers of the group by the payout in its metadata.
	// Stripe forgets idempotency keys after 24 hours: before a retry of an attempt that may
	// have reached Stripe, this is what keeps a long outage from paying twice.
	FindTransfer(ctx context.Context, destination, transferGroup, payoutID string) (transferID string, err error)

	// CreateExpressAccount creates a Connect Express account for an affiliate. The idempotency
	// key (one per affiliate) makes two onboarding clicks create one account, not two.
	CreateExpressAccount(ctx context.Context, email, idempotencyKey string) (accountID string, err error)

	// AccountLink returns a one-time URL of Stripe's hosted onboarding for the account.
	AccountLink(ctx context.Context, accountID, refreshURL, returnURL string) (url string, err error)
}

// transferRequest is one payout as a Connect transfer. Every field goes into the request that
// the idempotency key covers, so a retry must send exactly the same values.
type transferRequest struct {
	Amount         int64
	Currency       string
	Destination    string // the affiliate's connected account, acct_...
	TransferGroup  string // the payout run, so Stripe's dashboard groups a run's transfers
	Payout         string // metadata: lets an operator find the payout from the transfer
	Affiliate      string // metadata
	IdempotencyKey string // the payout's idempotency_key, the same on every attempt
}

// stripeClient implements stripeAPI with stripe-go's per-client API, so the key and backends
// belong to one Config and two apps in one process (tests, embedding apps) never share them.
type stripeClient struct {
	api *client.API
}

// newStripeAPI builds the Stripe client of cfg. Without STRIPE_SECRET_KEY it returns nil: every
// feature that needs the API (promotion codes, Connect payouts) is then simply off.
func newStripeAPI(cfg Config) stripeAPI {
	if cfg.StripeSecretKey == "" {
		return nil
	}
	return &stripeClient{api: client.New(cfg.StripeSecretKey, newStripeBackends(cfg.StripeAPIBase))}
}

// newStripeBackends builds backends of our own instead of stripe-go's process-wide ones, whose
// defaults (80 s timeout, logging every failed request to stderr) suit neither a webhook that
// must answer quickly nor PocketBase's logs. A non-empty base (stripe-mock, a test fake) serves
// all three backends, so a test configuration can never reach a real Stripe host.
func newStripeBackends(base string) *stripe.Backends {
	config := func() *stripe.BackendConfig {
		// A fresh config per backend: GetBackendWithConfig fills in and normalises its URL.
		c := &stripe.BackendConfig{
			HTTPClient:        &http.Client{Timeout: stripeHTTPTimeout},
			MaxNetworkRetries: stripe.Int64(stripeMaxNetworkRetries),
			// Failures come back as errors that callers log with context; stripe-go's own
			// logger would only repeat them without saying which event or payout was affected.
			LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
		}
		if base != "" {
			c.URL = stripe.String(base)
		}
		return c
	}
	return &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, config()),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, config()),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, config()),
	}
}

// PromotionCode retrieves the promotion code and returns its code. An object without a code is
// an error: an empty coupon would silently mean "no coupon" to the caller.
func (c *stripeClient) PromotionCode(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", errors.New("promotion code: empty id")
	}
	params := &stripe.PromotionCodeParams{}
	params.Context = ctx
	pc, err := c.api.PromotionCodes.Get(id, params)
	if err != nil {
		return "", fmt.Errorf("retrieve promotion code %s: %w", id, stripeErrorSummary(err))
	}
	if pc.Code == "" {
		return "", fmt.Errorf("promotion code %s: Stripe returned no code", id)
	}
	return pc.Code, nil
}

// CheckoutSessionPromotionCodes retrieves the session with total_details.breakdown expanded.
func (c *stripeClient) CheckoutSessionPromotionCodes(ctx context.Context, sessionID string) ([]string, error) {
	if sessionID == "" {
		return nil, errors.New("checkout session: empty id")
	}
	params := &stripe.CheckoutSessionParams{}
	params.Context = ctx
	params.AddExpand("total_details.breakdown")
	s, err := c.api.CheckoutSessions.Get(sessionID, params)
	if err != nil {
		return nil, fmt.Errorf("retrieve checkout session %s: %w", sessionID, stripeErrorSummary(err))
	}
	return promotionCodeIDs(checkoutSessionDiscounts(s)), nil
}

// Transfer creates the transfer of req. It refuses requests that could not be retried safely:
// without an idempotency key a lost answer would leave no way to avoid a second transfer.
func (c *stripeClient) Transfer(ctx context.Context, req transferRequest) (string, error) {
	if req.IdempotencyKey == "" || req.Destination == "" || req.Amount <= 0 || req.Currency == "" {
		return "", fmt.Errorf("transfer for payout %s: idempotency key, destination, currency and a positive amount are required", req.Payout)
	}
	params := &stripe.TransferParams{
		Amount:        stripe.Int64(req.Amount),
		Currency:      stripe.String(req.Currency),
		Destination:   stripe.String(req.Destination),
		TransferGroup: stripe.String(req.TransferGroup),
	}
	params.Context = ctx
	params.AddMetadata("payout", req.Payout)
	params.AddMetadata("affiliate", req.Affiliate)
	params.SetIdempotencyKey(req.IdempotencyKey)
	tr, err := c.api.Transfers.New(params)
	if err != nil {
		return "", fmt.Errorf("create transfer for payout %s: %w", req.Payout, stripeErrorSummary(err))
	}
	if tr.ID == "" {
		return "", fmt.Errorf("create transfer for payout %s: Stripe returned no transfer id", req.Payout)
	}
	return tr.ID, nil
}

// findTransferScan bounds how many of a destination's transfers FindTransfer reads.
const findTransferScan = 1000

// FindTransfer lists the destination's transfers (of the group, when there is one), newest
// first, and matches the payout id stored in their metadata by Transfer.
func (c *stripeClient) FindTransfer(ctx context.Context, destination, transferGroup, payoutID string) (string, error) {
	params := &stripe.TransferListParams{Destination: stripe.String(destination)}
	if transferGroup != "" {
		params.TransferGroup = stripe.String(transferGroup)
	}
	params.Context = ctx
	params.Limit = stripe.Int64(100)
	it := c.api.Transfers.List(params)
	for n := 0; n < findTransferScan && it.Next(); n++ {
		if tr := it.Transfer(); tr.Metadata["payout"] == payoutID {
			return tr.ID, nil
		}
	}
	if err := it.Err(); err != nil {
		return "", fmt.Errorf("list transfers of payout %s: %w", payoutID, stripeErrorSummary(err))
	}
	return "", nil
}

// CreateExpressAccount creates an Express account that can receive transfers.
func (c *stripeClient) CreateExpressAccount(ctx context.Context, email, idempotencyKey string) (string, error) {
	if idempotencyKey == "" {
		return "", errors.New("create Connect account: an idempotency key is required")
	}
	params := &stripe.AccountParams{
		Type: stripe.String(string(stripe.AccountTypeExpress)),
		Capabilities: &stripe.AccountCapabilitiesParams{
			Transfers: &stripe.AccountCapabilitiesTransfersParams{Requested: stripe.Bool(true)},
		},
	}
	if email != "" {
		params.Email = stripe.String(email)
	}
	params.Context = ctx
	params.SetIdempotencyKey(idempotencyKey)
	acct, err := c.api.Accounts.New(params)
	if err != nil {
		return "", fmt.Errorf("create Connect account: %w", stripeErrorSummary(err))
	}
	if acct.ID == "" {
		return "", errors.New("create Connect account: Stripe returned no account id")
	}
	return acct.ID, nil
}

// AccountLink creates an account_onboarding link. Links expire within minutes and can be used
// once, so callers make a new one for every request instead of storing it.
func (c *stripeClient) AccountLink(ctx context.Context, accountID, refreshURL, returnURL string) (string, error) {
	params := &stripe.AccountLinkParams{
		Account:    stripe.String(accountID),
		RefreshURL: stripe.String(refreshURL),
		ReturnURL:  stripe.String(returnURL),
		Type:       stripe.String(string(stripe.AccountLinkTypeAccountOnboarding)),
	}
	params.Context = ctx
	link, err := c.api.AccountLinks.New(params)
	if err != nil {
		return "", fmt.Errorf("create account link for %s: %w", accountID, stripeErrorSummary(err))
	}
	if link.URL == "" {
		return "", fmt.Errorf("create account link for %s: Stripe returned no URL", accountID)
	}
	return link.URL, nil
}

// stripeRequestError is a Stripe API failure in a few words. stripe-go's *stripe.Error prints
// itself as a JSON document (request log URL and all), too long for an outcome or log line; the
// original stays reachable through errors.As for stripePermanentError.
type stripeRequestError struct {
	err *stripe.Error
}

// Error reads "404 resource_missing: No such promotion_code: 'promo_x'".
func (e *stripeRequestError) Error() string {
	msg := fmt.Sprintf("%d", e.err.HTTPStatusCode)
	if e.err.Code != "" {
		msg += " " + string(e.err.Code)
	} else if e.err.Type != "" {
		msg += " " + string(e.err.Type)
	}
	if e.err.Msg != "" {
		msg += ": " + e.err.Msg
	}
	return msg
}

// Unwrap keeps the *stripe.Error inspectable.
func (e *stripeRequestError) Unwrap() error { return e.err }

// stripeErrorSummary shortens a *stripe.Error (see stripeRequestError); other errors (network,
// timeouts, canceled contexts) pass through unchanged.
func stripeErrorSummary(err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		return &stripeRequestError{err: se}
	}
	return err
}

// stripePermanentError reports whether asking Stripe again cannot change the answer: the object
// does not exist (404) or the request itself is invalid (400). Everything else (network errors,
// 5xx, rate limits, and 401/403, which an operator fixes by correcting the key) may succeed later.
func stripePermanentError(err error) bool {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.HTTPStatusCode == http.StatusNotFound || se.HTTPStatusCode == http.StatusBadRequest
}
