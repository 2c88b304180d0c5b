package hooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/attribution"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/saleupdate"
)

// Sales from billing providers other than Stripe (Paddle Billing, Lemon Squeezy, Shopify). Each
// is a signed webhook whose provider-specific part (signature, payload) is a billingProvider;
// everything else is shared here and mirrors the Stripe webhook: one transaction per event
// holding its effects and its provider_events row (exactly once per provider and event id),
// sales through the conversion service, refunds through the merchants' update path
// (applySaleUpdate: cumulative, never lowered), refunds before their sale kept in
// provider_refunds until it arrives.

// providerWebhookBodyLimit bounds a delivery read before its signature is checked: the
// providers' orders with many line items stay far below it.
const providerWebhookBodyLimit = 1 << 20

// Custom data keys a merchant's checkout passes to the provider (Paddle custom_data, Lemon
// Squeezy checkout[custom], Shopify cart attributes), the same names as Stripe's metadata.
const (
	providerKeyClick     = stripeMetaClick
	providerKeyAffiliate = stripeMetaAffiliate
	providerKeyCoupon    = stripeMetaCoupon
)

// providerSources are the conversion sources of these providers (their sales follow their
// events: the merchant update form refuses them).
var providerSources = []string{collections.SourcePaddle, collections.SourceLemonSqueezy, collections.SourceShopify}

// errBadSignature is a delivery whose signature does not verify with the endpoint's secret.
var errBadSignature = errors.New("signature mismatch")

// billingProvider is what differs between the providers.
type billingProvider interface {
	// verify checks the delivery's signature over the exact bytes of body; any error answers 400
	// and nothing is stored.
	verify(header http.Header, body []byte) error
	// parse reads a verified delivery. An error is a signed body that is not one of the
	// provider's events (400); an event whose object cannot be read is ev.malformed.
	parse(header http.Header, body []byte) (providerEvent, error)
}

// providerEvent is one delivery as the shared code acts on it: exactly one of Sale, Refund,
// Link or Ignored.
type providerEvent struct {
	ID, Type string
	// Sale is a payment to record (Source is set by the webhook).
	Sale *conversionInput
	// Coupons are the sale's discount codes when it has several: the first that is an active
	// coupon becomes its Coupon (the others are the merchant's own campaigns).
	Coupons []string
	// Refund is a refund of the sale whose external id it names, recorded or not yet.
	Refund *providerRefund
	// Link is a subscription's first payment reported a second time (Lemon Squeezy's initial
	// invoice after its order): the sale recorded from the order gets the subscription id, so
	// the renewals count from it.
	Link *providerSubscriptionLink
	// Ignored is the outcome of an event pbaffiliate does not act on ("ignored: …").
	Ignored string
}

// malformed is ev acknowledged as ignored because its object cannot be read (an amount that is
// not exact minor units, a missing id): a signed event does not get better on redelivery, and a
// provider that keeps getting errors may disable the endpoint. As Stripe's withStripeObject.
func (ev providerEvent) malformed(err error) (providerEvent, error) {
	return providerEvent{ID: ev.ID, Type: ev.Type, Ignored: fmt.Sprintf("ignored: malformed %s: %v", ev.Type, err)}, nil
}

// providerRefund is one refund a provider reported.
type providerRefund struct {
	Sale     string // the sale's external id
	RefundID string // one row per refund id: a partial refund adds, the same refund again replaces
	Amount   int64  // minor units of this refund (the largest reported for its id is kept)
	Currency string
}

// providerSubscriptionLink names a subscription's first payment by its customer.
type providerSubscriptionLink struct {
	Customer, Subscription, Currency string
	Amount                           int64
}

// providerWebhook serves one provider's endpoint. The route always exists so a server without
// the secret answers 503 with the variable to set (as Stripe's), not a 404.
type providerWebhook struct {
	name   string // conversions.source, conversion_events.door, provider_events.provider
	label  string // the provider as people write it
	envVar string
	// configured is whether the secret is set; provider holds it.
	configured  bool
	provider    billingProvider
	conversions *conversionService
}

// newProviderWebhook builds the endpoint of one provider (paddle.go, lemonsqueezy.go, shopify.go).
func newProviderWebhook(name, label, envVar, secret string, p billingProvider, conversions *conversionService) *providerWebhook {
	return &providerWebhook{name: name, label: label, envVar: envVar, configured: secret != "", provider: p, conversions: conversions}
}

// handle verifies and processes one delivery. Answers as Stripe's: 503 without a secret, 400
// for a bad signature or a body that is not an event (nothing stored), 200 for processed,
// ignored and duplicate events, 500 for internal failures (nothing committed; the provider
// retries), 503 with Retry-After for a sale whose click is still on its way from a redirect
// node (click_awaiter.go; nothing committed, the provider retries).
func (h *providerWebhook) handle(e *core.RequestEvent) error {
	if !h.configured {
		return e.Error(http.StatusServiceUnavailable,
			fmt.Sprintf("%s webhooks are disabled: %s is not set on the server.", h.label, h.envVar), nil)
	}
	body, err := io.ReadAll(e.Request.Body)
	if err != nil {
		if errors.Is(err, apis.ErrRequestEntityTooLarge) {
			return err
		}
		return e.BadRequestError("Could not read the request body.", err)
	}
	if err := h.provider.verify(e.Request.Header, body); err != nil {
		return e.BadRequestError(fmt.Sprintf("Invalid or expired %s signature.", h.label), err)
	}
	event, err := h.provider.parse(e.Request.Header, body)
	if err != nil {
		return e.BadRequestError(fmt.Sprintf("The signed body is not a %s event.", h.label), err)
	}
	if event.ID == "" {
		return e.BadRequestError("The event has no id.", nil)
	}
	var duplicate bool
	var outcome string
	err = h.conversions.awaitingClick(e.Request.Context(), func() (err error) {
		duplicate, outcome, err = h.processOnce(e.App, event)
		return err
	})
	// As for Stripe: a refusal a retry cannot fix rolled the attempt back; store its verdict.
	var ignored *stripeIgnoredError
	if errors.As(err, &ignored) {
		duplicate, outcome, err = h.store(e.App, event, func(core.App) (string, error) { return ignored.outcome, nil })
	}
	if errors.Is(err, errClickBehind) { // the sale's click is still on its way: the provider retries
		return clickBehind(e)
	}
	if err != nil {
		e.App.Logger().Error(h.name+" webhook failed", "event", event.ID, "type", event.Type, "error", err)
		return e.InternalServerError("", err)
	}
	if duplicate {
		return e.JSON(http.StatusOK, map[string]any{"received": true, "duplicate": true})
	}
	return e.JSON(http.StatusOK, map[string]any{"received": true, "outcome": outcome})
}

// processOnce processes the event and stores its provider_events row in one transaction.
func (h *providerWebhook) processOnce(app core.App, event providerEvent) (bool, string, error) {
	return h.store(app, event, func(tx core.App) (string, error) { return h.process(tx, event) })
}

// store runs do and stores its outcome under the event's id in one transaction, unless the id
// was seen before (duplicate); the unique index stops a concurrent duplicate as well.
func (h *providerWebhook) store(app core.App, event providerEvent, do func(tx core.App) (string, error)) (duplicate bool, outcome string, err error) {
	err = app.RunInTransaction(func(tx core.App) error {
		_, err := tx.FindFirstRecordByFilter(collections.ProviderEvents, "provider = {:p} && event_id = {:id}",
			dbx.Params{"p": h.name, "id": event.ID})
		switch {
		case err == nil:
			duplicate = true
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("look up %s event %s: %w", h.name, event.ID, err)
		}
		if outcome, err = do(tx); err != nil {
			return err
		}
		col, err := tx.FindCachedCollectionByNameOrId(collections.ProviderEvents)
		if err != nil {
			return err
		}
		r := core.NewRecord(col)
		r.Load(map[string]any{collections.ProviderName: h.name, collections.ProviderEventID: event.ID,
			collections.ProviderEventType: truncateStripeText(event.Type, 100),
			collections.ProviderOutcome:   truncateStripeText(outcome, stripeOutcomeMax)})
		if err := tx.Save(r); err != nil {
			return fmt.Errorf("save %s event %s: %w", h.name, event.ID, err)
		}
		return nil
	})
	return duplicate, outcome, err
}

// process applies one new event and returns the outcome to store.
func (h *providerWebhook) process(tx core.App, event providerEvent) (string, error) {
	switch {
	case event.Sale != nil:
		return h.recordSale(tx, event)
	case event.Refund != nil:
		return h.refund(tx, event)
	case event.Link != nil:
		return h.linkSubscription(tx, *event.Link)
	case event.Ignored != "":
		return event.Ignored, nil
	default:
		return "ignored: " + event.Type, nil
	}
}

// recordSale records the payment through the conversion service (joining the transaction),
// then applies the refunds that arrived before it.
func (h *providerWebhook) recordSale(tx core.App, event providerEvent) (string, error) {
	in := *event.Sale
	in.Source, in.Signed = h.name, true
	meta := map[string]any{"provider_event": event.ID, "provider_event_type": event.Type}
	for k, v := range in.Metadata {
		meta[k] = v
	}
	in.Metadata = meta
	if len(event.Coupons) > 1 {
		codes := make([]string, len(event.Coupons))
		for i, c := range event.Coupons {
			codes[i] = strings.ToLower(strings.TrimSpace(c))
		}
		in.Coupon = pickPromotionCoupon(tx, codes)
	}
	rec, created, err := h.conversions.withTx(tx).record(in)
	if ignored := ignoredSale(err); ignored != nil {
		return "", ignored
	}
	if err != nil {
		return "", fmt.Errorf("record %s sale %s: %w", h.name, in.ExternalID, err)
	}
	if !created {
		return "duplicate of conversion " + rec.Id, nil
	}
	outcome := fmt.Sprintf("recorded conversion %s (affiliate %s, %s)", rec.Id,
		rec.GetString(collections.FieldAffiliate), rec.GetString(collections.FieldStatus))
	refunded, err := h.applyRefunds(tx, rec)
	if err != nil {
		return "", err
	}
	if refunded != "" {
		outcome += "; refunds that arrived first: " + refunded
	}
	return outcome, nil
}

// ignoredSale is the stored verdict of a sale the conversion service refused for a reason a
// retry cannot fix (nobody to credit, a reused external id, invalid figures), nil otherwise.
func ignoredSale(err error) *stripeIgnoredError {
	var invalid validation.Errors
	switch {
	case errors.Is(err, attribution.ErrNoAttribution):
		return &stripeIgnoredError{outcome: "ignored: no attribution", noAttribution: true}
	case errors.Is(err, errConversionConflict):
		return &stripeIgnoredError{outcome: "ignored: conflict: " + err.Error()}
	case errors.As(err, &invalid):
		return &stripeIgnoredError{outcome: "ignored: invalid: " + invalid.Error()}
	}
	return nil
}

// refund keeps the refund, then applies the sale's refunds if the sale is recorded.
func (h *providerWebhook) refund(tx core.App, event providerEvent) (string, error) {
	r := *event.Refund
	if r.Amount <= 0 {
		return "ignored: refund of nothing", nil
	}
	if err := h.keepRefund(tx, r, event.ID); err != nil {
		return "", err
	}
	conv, err := findSale(tx, saleRef{Source: h.name, ExternalID: r.Sale})
	switch {
	case errors.Is(err, errSaleNotFound):
		return fmt.Sprintf("pending: refund %s of %d for the unrecorded sale %s", r.RefundID, r.Amount, r.Sale), nil
	case err != nil:
		return "", err
	}
	outcome, err := h.applyRefunds(tx, conv)
	if err != nil || outcome == "" {
		return "ignored: refund in another currency than the sale", err
	}
	return fmt.Sprintf("conversion %s: %s", conv.Id, outcome), nil
}

// keepRefund stores the refund under its id; the same id again keeps the larger amount
// (a refund reported as pending, then approved, or a cumulative figure that grew).
func (h *providerWebhook) keepRefund(tx core.App, r providerRefund, eventID string) error {
	rec, err := tx.FindFirstRecordByFilter(collections.ProviderRefunds, "provider = {:p} && refund_id = {:id}",
		dbx.Params{"p": h.name, "id": r.RefundID})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		col, err := tx.FindCachedCollectionByNameOrId(collections.ProviderRefunds)
		if err != nil {
			return err
		}
		rec = core.NewRecord(col)
		rec.Load(map[string]any{collections.ProviderName: h.name, collections.ProviderRefundID: r.RefundID,
			collections.ProviderSale: r.Sale})
	case err != nil:
		return fmt.Errorf("find %s refund %s: %w", h.name, r.RefundID, err)
	case int64(rec.GetInt(collections.FieldAmount)) >= r.Amount:
		return nil
	}
	rec.Load(map[string]any{collections.FieldAmount: r.Amount, collections.FieldCurrency: strings.ToLower(r.Currency),
		collections.ProviderEventID: eventID})
	if err := tx.Save(rec); err != nil {
		return fmt.Errorf("keep %s refund %s: %w", h.name, r.RefundID, err)
	}
	return nil
}

// applyRefunds sets the sale's refunded amount to the sum of its refunds in its currency (at
// most its amount) through the merchants' update path, which keeps the largest figure ever
// told: duplicates, partial refunds and any order converge. "" when there is nothing to apply.
func (h *providerWebhook) applyRefunds(tx core.App, conv *core.Record) (string, error) {
	var sum struct {
		Total int64 `db:"total"`
	}
	err := tx.DB().NewQuery("SELECT COALESCE(SUM(amount), 0) AS total FROM " + collections.ProviderRefunds +
		" WHERE provider = {:p} AND sale = {:sale} AND currency = {:currency}").
		Bind(dbx.Params{"p": h.name, "sale": conv.GetString(collections.ConversionExternalID),
			"currency": conv.GetString(collections.FieldCurrency)}).One(&sum)
	if err != nil {
		return "", fmt.Errorf("refunds of %s sale %s: %w", h.name, conv.Id, err)
	}
	if sum.Total <= 0 {
		return "", nil
	}
	refunded := min(sum.Total, int64(conv.GetInt(collections.FieldAmount)))
	d, err := applySaleUpdate(tx, conv, saleUpdate{Update: saleupdate.Update{Refunded: refunded}}, saleChange{Door: h.name})
	if err != nil {
		return "", fmt.Errorf("refund conversion %s: %w", conv.Id, err)
	}
	return d.Message, nil
}

// linkSubscription gives a subscription's first payment, recorded from its order, the
// subscription's id: the customer's latest sale from this provider without a subscription,
// of the same amount and currency. Nothing found: the order was not credited (or not yet
// received), and the renewals count from the first one recorded.
func (h *providerWebhook) linkSubscription(tx core.App, l providerSubscriptionLink) (string, error) {
	if l.Customer == "" || l.Subscription == "" {
		return "ignored: subscription payment without customer or subscription", nil
	}
	found, err := tx.FindRecordsByFilter(collections.Conversions,
		"source = {:source} && customer = {:customer} && subscription_id = '' && amount = {:amount} && currency = {:currency}",
		"-occurred_at", 1, 0, dbx.Params{"source": h.name, "customer": l.Customer, "amount": l.Amount,
			"currency": strings.ToLower(l.Currency)})
	if err != nil {
		return "", fmt.Errorf("first payment of subscription %s: %w", l.Subscription, err)
	}
	if len(found) == 0 {
		return "ignored: first subscription payment (its order records the sale) not recorded", nil
	}
	conv := found[0]
	conv.Set(collections.ConversionSubscriptionID, l.Subscription)
	if err := tx.Save(conv); err != nil {
		return "", fmt.Errorf("subscription of conversion %s: %w", conv.Id, err)
	}
	return fmt.Sprintf("subscription %s linked to conversion %s", l.Subscription, conv.Id), nil
}

// hmacSignature verifies the signature Lemon Squeezy and Shopify send: the HMAC-SHA256 of the
// body under the endpoint's secret, in one header, encoded (hex, base64) by decode.
type hmacSignature struct {
	secret, header string
	decode         func(string) ([]byte, error)
}

// verify compares the header's MAC with the body's in constant time.
func (s hmacSignature) verify(header http.Header, body []byte) error {
	sig, err := s.decode(strings.TrimSpace(header.Get(s.header)))
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("%s is not an encoded HMAC-SHA256", s.header)
	}
	mac := hmac.New(sha256.New, []byte(s.secret))
	mac.Write(body)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return errBadSignature
	}
	return nil
}

// customString is a string value of a provider's custom data ("" for anything else).
func customString(data map[string]any, key string) string {
	s, _ := data[key].(string)
	return strings.TrimSpace(s)
}
