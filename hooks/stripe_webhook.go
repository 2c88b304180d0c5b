package hooks

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/attribution"
)

// Stripe webhook limits. Stripe's events are a few KiB; 1 MiB leaves room for large line-item
// lists without letting anyone make us buffer an unbounded body before the signature check.
const (
	stripeWebhookPath      = "/api/pba/stripe/webhook"
	stripeWebhookBodyLimit = 1 << 20
	// stripeSignatureTolerance is how old a signed delivery may be: Stripe's own default, it
	// bounds how long a captured request can be replayed.
	stripeSignatureTolerance = 300 * time.Second
	// stripeOutcomeMax is the stripe_events.outcome field's Max.
	stripeOutcomeMax = 500
)

// Metadata keys a merchant puts on Stripe objects (Checkout Session, subscription, payment
// intent) to tell pbaffiliate who referred the sale when no client_reference_id carries it.
const (
	stripeMetaClick     = "pba_click"
	stripeMetaAffiliate = "pba_affiliate"
	stripeMetaCoupon    = "pba_coupon"
	stripeMetaProgram   = "pba_program"
)

// stripeWebhook handles POST /api/pba/stripe/webhook: it verifies Stripe's signature, processes
// every event exactly once (stripe_events remembers the ids) and turns payments into conversions
// and refunds, disputes and Connect account changes into updates of what is stored.
type stripeWebhook struct {
	secret      string
	conversions *conversionService
}

// registerStripeWebhook wires POST /api/pba/stripe/webhook. The route always exists so a
// misconfigured server answers Stripe with a clear 503 instead of a 404 that looks like a typo
// in the endpoint URL.
func registerStripeWebhook(app core.App, cfg Config, conversions *conversionService) {
	h := &stripeWebhook{secret: cfg.StripeWebhookSecret, conversions: conversions}
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		se.Router.POST(stripeWebhookPath, h.handle).Bind(apis.BodyLimit(stripeWebhookBodyLimit))
		return se.Next()
	})
}

// stripeIgnoredError carries the outcome of an event whose processing was refused for a reason
// a retry cannot fix (no attribution, invalid figures). Returning it from the transaction rolls
// back whatever the attempt wrote; the handler then stores only the outcome and answers 200.
type stripeIgnoredError struct {
	outcome string
}

// Error is the outcome, so logs of a refused event read like its stripe_events row.
func (e *stripeIgnoredError) Error() string { return e.outcome }

// handle verifies and processes one delivery. Answers: 503 without a secret (Stripe retries
// until it is configured), 400 for a bad signature (nothing stored), 200 for processed,
// ignored and duplicate events, 500 for internal failures (nothing committed, Stripe retries).
func (h *stripeWebhook) handle(e *core.RequestEvent) error {
	if h.secret == "" {
		return e.Error(http.StatusServiceUnavailable,
			"Stripe webhooks are disabled: STRIPE_WEBHOOK_SECRET is not set on the server.", nil)
	}
	// The signature covers the exact bytes, so the body is read once and never re-encoded.
	body, err := io.ReadAll(e.Request.Body)
	if err != nil {
		if errors.Is(err, apis.ErrRequestEntityTooLarge) {
			return err
		}
		return e.BadRequestError("Could not read the request body.", err)
	}
	event, err := webhook.ConstructEventWithOptions(body, e.Request.Header.Get("Stripe-Signature"), h.secret,
		webhook.ConstructEventOptions{Tolerance: stripeSignatureTolerance, IgnoreAPIVersionMismatch: true})
	switch {
	case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader),
		errors.Is(err, webhook.ErrNoValidSignature), errors.Is(err, webhook.ErrTooOld):
		return e.BadRequestError("Invalid or expired Stripe signature.", err)
	case err != nil:
		// Correctly signed but not an event: only a broken sender does that; tell it so.
		return e.BadRequestError("The signed body is not a Stripe event.", err)
	}
	if event.ID == "" {
		return e.BadRequestError("The event has no id.", nil)
	}

	duplicate, outcome, err := h.processOnce(e.App, event)
	var ignored *stripeIgnoredError
	if errors.As(err, &ignored) {
		// The attempt was rolled back; remember the verdict so a redelivery is a duplicate.
		duplicate, outcome, err = h.storeIgnored(e.App, event, ignored.outcome)
	}
	if err != nil {
		e.App.Logger().Error("stripe webhook failed", "event", event.ID, "type", string(event.Type), "error", err)
		return e.InternalServerError("", err)
	}
	if duplicate {
		return e.JSON(http.StatusOK, map[string]any{"received": true, "duplicate": true})
	}
	return e.JSON(http.StatusOK, map[string]any{"received": true, "outcome": outcome})
}

// processOnce claims the event id and processes the event in one transaction, so either both
// the effects and the stripe_events row commit or neither does, and a crash between them lets
// Stripe's retry process the event again. duplicate reports an id processed before.
func (h *stripeWebhook) processOnce(app core.App, event stripe.Event) (duplicate bool, outcome string, err error) {
	err = app.RunInTransaction(func(tx core.App) error {
		seen, err := stripeEventSeen(tx, event.ID)
		if err != nil || seen {
			duplicate = seen
			return err
		}
		if outcome, err = h.process(tx, event); err != nil {
			return err
		}
		return saveStripeEvent(tx, event, outcome)
	})
	return duplicate, outcome, err
}

// storeIgnored records the outcome of an event refused after a rollback. It checks the id again:
// a concurrent delivery of the same event may have stored it in between.
func (h *stripeWebhook) storeIgnored(app core.App, event stripe.Event, outcome string) (duplicate bool, _ string, err error) {
	err = app.RunInTransaction(func(tx core.App) error {
		seen, err := stripeEventSeen(tx, event.ID)
		if err != nil || seen {
			duplicate = seen
			return err
		}
		return saveStripeEvent(tx, event, outcome)
	})
	return duplicate, outcome, err
}

// stripeEventSeen reports whether the event id was processed (or ignored) before.
func stripeEventSeen(tx core.App, eventID string) (bool, error) {
	_, err := tx.FindFirstRecordByData(collections.StripeEvents, "event_id", eventID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	default:
		return false, fmt.Errorf("look up stripe event %s: %w", eventID, err)
	}
}

// saveStripeEvent stores the event id with what processing did; the unique index on event_id
// also stops a concurrent duplicate that slipped past stripeEventSeen.
func saveStripeEvent(tx core.App, event stripe.Event, outcome string) error {
	col, err := tx.FindCachedCollectionByNameOrId(collections.StripeEvents)
	if err != nil {
		return fmt.Errorf("stripe_events collection: %w", err)
	}
	r := core.NewRecord(col)
	r.Load(map[string]any{"event_id": event.ID, "type": truncateStripeText(string(event.Type), 100),
		"outcome": truncateStripeText(outcome, stripeOutcomeMax)})
	if err := tx.Save(r); err != nil {
		return fmt.Errorf("save stripe event %s: %w", event.ID, err)
	}
	return nil
}

// truncateStripeText cuts s to at most n bytes without splitting a UTF-8 sequence (PocketBase's
// text Max counts characters, so this stays within it).
func truncateStripeText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// process dispatches one new event to its handler and returns the outcome to store. Events
// pbaffiliate does not use are acknowledged, so Stripe stops sending them again.
func (h *stripeWebhook) process(tx core.App, event stripe.Event) (string, error) {
	switch event.Type {
	case stripe.EventTypeCheckoutSessionCompleted, stripe.EventTypeCheckoutSessionAsyncPaymentSucceeded:
		return withStripeObject(event, func(s *stripe.CheckoutSession) (string, error) {
			return h.checkoutCompleted(tx, event, s)
		})
	case stripe.EventTypeInvoicePaid:
		return withStripeObject(event, func(inv *stripe.Invoice) (string, error) {
			return h.invoicePaid(tx, event, inv)
		})
	case stripe.EventTypePaymentIntentSucceeded:
		return withStripeObject(event, func(pi *stripe.PaymentIntent) (string, error) {
			return h.paymentIntentSucceeded(tx, event, pi)
		})
	case stripe.EventTypeChargeRefunded:
		return withStripeObject(event, func(c *stripe.Charge) (string, error) {
			return stripeChargeRefunded(tx, event, c)
		})
	case stripe.EventTypeChargeDisputeCreated:
		return withStripeObject(event, func(d *stripe.Dispute) (string, error) {
			return stripeDisputeCreated(tx, event, d)
		})
	case stripe.EventTypeAccountUpdated:
		return withStripeObject(event, func(a *stripe.Account) (string, error) {
			return stripeAccountUpdated(tx, a)
		})
	default:
		return "ignored: " + string(event.Type), nil
	}
}

// withStripeObject decodes the event's data.object into T and hands it to fn. A signed event
// whose object does not decode cannot get better on retry, so it is acknowledged as ignored.
func withStripeObject[T any](event stripe.Event, fn func(*T) (string, error)) (string, error) {
	if event.Data == nil || len(event.Data.Raw) == 0 {
		return "ignored: event without data.object", nil
	}
	var obj T
	if err := json.Unmarshal(event.Data.Raw, &obj); err != nil {
		return fmt.Sprintf("ignored: malformed %s object: %v", event.Type, err), nil
	}
	return fn(&obj)
}

// checkoutCompleted records a paid Checkout Session. Its external id is the id Stripe's other
// events report for the same money (the first invoice of a subscription, the payment intent of
// a one-off payment), so those events become duplicates instead of second sales.
func (h *stripeWebhook) checkoutCompleted(tx core.App, event stripe.Event, s *stripe.CheckoutSession) (string, error) {
	switch s.PaymentStatus {
	case stripe.CheckoutSessionPaymentStatusPaid, stripe.CheckoutSessionPaymentStatusNoPaymentRequired:
	default:
		// Delayed payment methods: checkout.session.async_payment_succeeded follows when paid.
		return fmt.Sprintf("ignored: payment_status %q", s.PaymentStatus), nil
	}
	if s.AmountTotal <= 0 {
		return "ignored: zero amount", nil
	}
	externalID := s.ID
	switch {
	case s.Mode == stripe.CheckoutSessionModeSubscription && stripeID(s.Invoice) != "":
		externalID = stripeID(s.Invoice)
	case s.Mode == stripe.CheckoutSessionModePayment && stripeID(s.PaymentIntent) != "":
		externalID = stripeID(s.PaymentIntent)
	}
	var email string
	if s.CustomerDetails != nil {
		email = s.CustomerDetails.Email
	}
	customer := stripeID(s.Customer)
	if customer == "" {
		customer = email
	}
	clickID := s.ClientReferenceID
	if clickID == "" {
		clickID = s.Metadata[stripeMetaClick]
	}
	return h.recordSale(tx, conversionInput{
		ProgramID:      s.Metadata[stripeMetaProgram],
		ExternalID:     externalID,
		ClickID:        clickID,
		AffiliateCode:  s.Metadata[stripeMetaAffiliate],
		Coupon:         s.Metadata[stripeMetaCoupon],
		Customer:       customer,
		CustomerEmail:  email,
		Amount:         s.AmountTotal,
		Currency:       string(s.Currency),
		OccurredAt:     stripeEventTime(event),
		SubscriptionID: stripeID(s.Subscription),
		PaymentIntent:  stripeID(s.PaymentIntent),
		Metadata:       stripeSaleMetadata(event, s.ID),
	})
}

// invoicePaid records an invoice payment: for subscriptions every renewal is a sale, and the
// conversion service credits it to the customer's first affiliate when the program pays
// recurring commissions. The subscription's metadata (copied onto the invoice) may name the
// affiliate as well, for subscriptions created without Checkout.
func (h *stripeWebhook) invoicePaid(tx core.App, event stripe.Event, inv *stripe.Invoice) (string, error) {
	if inv.AmountPaid <= 0 {
		return "ignored: nothing paid", nil
	}
	meta := inv.Metadata
	if inv.SubscriptionDetails != nil && hasStripeAttribution(inv.SubscriptionDetails.Metadata) {
		meta = inv.SubscriptionDetails.Metadata
	}
	return h.recordSale(tx, conversionInput{
		ProgramID:      meta[stripeMetaProgram],
		ExternalID:     inv.ID,
		ClickID:        meta[stripeMetaClick],
		AffiliateCode:  meta[stripeMetaAffiliate],
		Coupon:         meta[stripeMetaCoupon],
		Customer:       stripeID(inv.Customer),
		CustomerEmail:  inv.CustomerEmail,
		Amount:         inv.AmountPaid,
		Currency:       string(inv.Currency),
		OccurredAt:     stripeEventTime(event),
		SubscriptionID: stripeID(inv.Subscription),
		PaymentIntent:  stripeID(inv.PaymentIntent),
		Charge:         stripeID(inv.Charge),
		Metadata:       stripeSaleMetadata(event, inv.ID),
	})
}

// paymentIntentSucceeded records a payment made without Checkout or invoices (the merchant's
// own payment form), which only counts when the merchant tagged it with pba_* metadata.
// Payment intents of invoices are left to invoice.paid, which knows the subscription.
func (h *stripeWebhook) paymentIntentSucceeded(tx core.App, event stripe.Event, pi *stripe.PaymentIntent) (string, error) {
	if !hasStripeAttribution(pi.Metadata) {
		return "ignored: payment intent without pba metadata", nil
	}
	if stripeID(pi.Invoice) != "" {
		return "ignored: invoice payment (recorded by invoice.paid)", nil
	}
	amount := pi.AmountReceived
	if amount <= 0 {
		amount = pi.Amount
	}
	customer := stripeID(pi.Customer)
	if customer == "" {
		customer = pi.ReceiptEmail
	}
	return h.recordSale(tx, conversionInput{
		ProgramID:     pi.Metadata[stripeMetaProgram],
		ExternalID:    pi.ID,
		ClickID:       pi.Metadata[stripeMetaClick],
		AffiliateCode: pi.Metadata[stripeMetaAffiliate],
		Coupon:        pi.Metadata[stripeMetaCoupon],
		Customer:      customer,
		CustomerEmail: pi.ReceiptEmail,
		Amount:        amount,
		Currency:      string(pi.Currency),
		OccurredAt:    stripeEventTime(event),
		PaymentIntent: pi.ID,
		Charge:        stripeID(pi.LatestCharge),
		Metadata:      stripeSaleMetadata(event, pi.ID),
	})
}

// recordSale runs the conversion service inside the event's transaction (its RunInTransaction
// on the tx app joins this transaction). Refusals a retry cannot fix come back as
// *stripeIgnoredError so the caller rolls the attempt back and stores only the verdict.
func (h *stripeWebhook) recordSale(tx core.App, in conversionInput) (string, error) {
	in.Source = collections.SourceStripe
	// One payment reaches us through several events whose amounts may differ (discounts, tax).
	in.IgnoreMismatch = true
	svc := &conversionService{app: tx, live: h.conversions.live, now: h.conversions.now}
	rec, created, err := svc.record(in)
	var invalid validation.Errors
	switch {
	case err == nil:
	case errors.Is(err, attribution.ErrNoAttribution):
		return "", &stripeIgnoredError{outcome: "ignored: no attribution"}
	case errors.Is(err, errConversionConflict):
		return "", &stripeIgnoredError{outcome: "ignored: conflict: " + err.Error()}
	case errors.As(err, &invalid):
		return "", &stripeIgnoredError{outcome: "ignored: invalid: " + invalid.Error()}
	default:
		return "", fmt.Errorf("record stripe sale %s: %w", in.ExternalID, err)
	}
	if created {
		return fmt.Sprintf("recorded conversion %s (affiliate %s, %s)", rec.Id,
			rec.GetString(collections.FieldAffiliate), rec.GetString(collections.FieldStatus)), nil
	}
	if err := backfillStripeIDs(tx, rec, in.PaymentIntent, in.Charge); err != nil {
		return "", err
	}
	return "duplicate of conversion " + rec.Id, nil
}

// backfillStripeIDs completes a sale recorded by an earlier event with the payment intent and
// charge a later event knows (a subscription's checkout session names neither; its invoice does).
// Disputes only name the charge and payment intent, so without this they could not find the sale;
// adjustments already waiting under those ids are applied at once.
func backfillStripeIDs(tx core.App, conv *core.Record, paymentIntent, charge string) error {
	changed := false
	if paymentIntent != "" && conv.GetString(collections.ConversionPaymentIntent) == "" {
		conv.Set(collections.ConversionPaymentIntent, paymentIntent)
		changed = true
	}
	if charge != "" && conv.GetString(collections.ConversionCharge) == "" {
		conv.Set(collections.ConversionCharge, charge)
		changed = true
	}
	if !changed {
		return nil
	}
	if err := tx.Save(conv); err != nil {
		return fmt.Errorf("backfill stripe ids of conversion %s: %w", conv.Id, err)
	}
	if err := applyPendingStripe(tx, conv); err != nil {
		return fmt.Errorf("apply pending stripe adjustments to %s: %w", conv.Id, err)
	}
	return nil
}

// stripeChargeRefunded applies Stripe's cumulative amount_refunded to the sale. A refund of a
// sale not recorded yet waits in stripe_pending: Stripe does not order events, and the sale
// applies it when it arrives.
func stripeChargeRefunded(tx core.App, event stripe.Event, c *stripe.Charge) (string, error) {
	pi, invoice := stripeID(c.PaymentIntent), stripeID(c.Invoice)
	conv, err := findStripeConversion(tx, pi, c.ID, invoice)
	if err != nil {
		return "", fmt.Errorf("refund of charge %s: %w", c.ID, err)
	}
	if conv == nil {
		if err := storePendingStripe(tx, pendingRefund, pi, c.ID, invoice, c.AmountRefunded, event.ID); err != nil {
			return "", fmt.Errorf("keep refund of charge %s: %w", c.ID, err)
		}
		return fmt.Sprintf("pending: refund of %d for an unrecorded sale", c.AmountRefunded), nil
	}
	if err := applyRefund(tx, conv, c.AmountRefunded); err != nil {
		return "", fmt.Errorf("refund conversion %s: %w", conv.Id, err)
	}
	return fmt.Sprintf("refunded %d of conversion %s (%s)", c.AmountRefunded, conv.Id,
		conv.GetString(collections.FieldStatus)), nil
}

// stripeDisputeCreated holds the disputed sale (pending with reason dispute) so its commission is not
// paid while the money may go back; an unrecorded sale gets the hold when it arrives.
func stripeDisputeCreated(tx core.App, event stripe.Event, d *stripe.Dispute) (string, error) {
	pi, charge := stripeID(d.PaymentIntent), stripeID(d.Charge)
	conv, err := findStripeConversion(tx, pi, charge, "")
	if err != nil {
		return "", fmt.Errorf("dispute %s: %w", d.ID, err)
	}
	if conv == nil {
		if err := storePendingStripe(tx, pendingDispute, pi, charge, "", 0, event.ID); err != nil {
			return "", fmt.Errorf("keep dispute %s: %w", d.ID, err)
		}
		return "pending: dispute for an unrecorded sale", nil
	}
	if err := applyDispute(tx, conv); err != nil {
		return "", fmt.Errorf("hold conversion %s for dispute %s: %w", conv.Id, d.ID, err)
	}
	return fmt.Sprintf("disputed conversion %s (%s)", conv.Id, conv.GetString(collections.FieldStatus)), nil
}

// stripeAccountUpdated mirrors a Connect account's payouts_enabled onto its affiliate, so payout runs
// skip affiliates Stripe would refuse to pay and the portal can ask them to finish onboarding.
func stripeAccountUpdated(tx core.App, a *stripe.Account) (string, error) {
	if a.ID == "" {
		return "ignored: account without id", nil
	}
	affiliate, err := tx.FindFirstRecordByData(collections.Affiliates, collections.AffiliateStripeAccountID, a.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return "ignored: unknown account", nil
	}
	if err != nil {
		return "", fmt.Errorf("find affiliate of account %s: %w", a.ID, err)
	}
	if affiliate.GetBool(collections.AffiliatePayoutsEnabled) != a.PayoutsEnabled {
		affiliate.Set(collections.AffiliatePayoutsEnabled, a.PayoutsEnabled)
		if err := tx.Save(affiliate); err != nil {
			return "", fmt.Errorf("save payouts_enabled of affiliate %s: %w", affiliate.Id, err)
		}
	}
	return fmt.Sprintf("affiliate %s payouts_enabled=%t", affiliate.Id, a.PayoutsEnabled), nil
}

// hasStripeAttribution reports whether metadata names a click, affiliate or coupon.
func hasStripeAttribution(meta map[string]string) bool {
	return meta[stripeMetaClick] != "" || meta[stripeMetaAffiliate] != "" || meta[stripeMetaCoupon] != ""
}

// stripeID is the id of an expandable Stripe reference, "" when absent. Webhook payloads carry
// references as bare ids, which stripe-go decodes into an object holding only ID.
func stripeID(ref any) string {
	switch r := ref.(type) {
	case *stripe.Customer:
		if r != nil {
			return r.ID
		}
	case *stripe.Subscription:
		if r != nil {
			return r.ID
		}
	case *stripe.PaymentIntent:
		if r != nil {
			return r.ID
		}
	case *stripe.Invoice:
		if r != nil {
			return r.ID
		}
	case *stripe.Charge:
		if r != nil {
			return r.ID
		}
	}
	return ""
}

// stripeEventTime is when Stripe created the event, the closest moment to the payment it reports;
// zero (the service then uses now) when the event carries none.
func stripeEventTime(event stripe.Event) time.Time {
	if event.Created <= 0 {
		return time.Time{}
	}
	return time.Unix(event.Created, 0).UTC()
}

// stripeSaleMetadata is what a Stripe conversion keeps about its origin, for support questions
// ("which event created this sale?").
func stripeSaleMetadata(event stripe.Event, objectID string) map[string]any {
	return map[string]any{"stripe_event": event.ID, "stripe_event_type": string(event.Type),
		"stripe_object": objectID, "livemode": event.Livemode}
}
