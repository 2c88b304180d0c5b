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
// it at a fake. Every method takes a context so callers bound how long they wait. Later
// capabilities (Connect transfers, accounts) add their calls here.
type stripeAPI interface {
	// PromotionCode returns the customer-facing code (as the merchant typed it, e.g. "ADA10")
	// of the promotion code with the given id ("promo_..."): Stripe's events name promotion
	// codes only by id, while coupons in pbaffiliate are keyed by the code customers enter.
	PromotionCode(ctx context.Context, id string) (code string, err error)
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
