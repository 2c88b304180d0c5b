package hooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/pbaffiliate/pbaffiliate/collections"
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
	// stripePromotionLookupTimeout bounds all promotion code lookups of one delivery: Stripe
	// gives up on a webhook that answers too slowly and sends it again anyway.
	stripePromotionLookupTimeout = 8 * time.Second
	// stripeMaxPromotionCodes caps the lookups one event can cause (an invoice may carry several
	// discounts); Stripe allows far fewer discounts than this on one object.
	stripeMaxPromotionCodes = 5
	// stripePromotionCacheSize bounds the id → code cache: enough for every promotion code a
	// merchant has in use, small enough not to matter in memory.
	stripePromotionCacheSize = 1024
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
	// secrets are the endpoint secrets a signature may use: the platform endpoint's and, when
	// set, the Connect endpoint's.
	secrets     []string
	conversions *conversionService
	// stripe resolves promotion code ids to codes; nil without STRIPE_SECRET_KEY, and promotion
	// codes are then ignored (metadata pba_coupon still works).
	stripe stripeAPI
	// promotionCodes remembers resolved codes: a promotion code's code never changes, and a
	// subscription's discount would otherwise cost one API call per renewal.
	promotionCodes promotionCodeCache
}

// newStripeWebhook serves POST /api/pba/stripe/webhook. The route always exists so a
// misconfigured server answers Stripe with a clear 503 instead of a 404 that looks like a typo
// in the endpoint URL.
func newStripeWebhook(cfg Config, conversions *conversionService) *stripeWebhook {
	h := &stripeWebhook{conversions: conversions, stripe: newStripeAPI(cfg)}
	for _, secret := range []string{cfg.StripeWebhookSecret, cfg.StripeConnectWebhookSecret} {
		if secret != "" {
			h.secrets = append(h.secrets, secret)
		}
	}
	return h
}

// stripeIgnoredError carries the outcome of an event whose processing was refused for a reason
// a retry cannot fix (no attribution, invalid figures). Returning it from the transaction rolls
// back whatever the attempt wrote; the handler then stores only the outcome and answers 200.
type stripeIgnoredError struct {
	outcome string
	// noAttribution marks "ignored: no attribution", which a promotion code that could not be
	// looked up might have changed (see handle).
	noAttribution bool
}

// Error is the outcome, so logs of a refused event read like its stripe_events row.
func (e *stripeIgnoredError) Error() string { return e.outcome }

// handle verifies and processes one delivery. Answers: 503 without a secret (Stripe retries
// until it is configured), 400 for a bad signature (nothing stored), 200 for processed,
// ignored and duplicate events, 500 for internal failures (nothing committed, Stripe retries)
// and for a sale that nothing attributes while its promotion code could not be looked up, 503
// with Retry-After for a sale whose click a redirect node answered and the primary has not
// ingested yet (click_awaiter.go; nothing committed, Stripe retries).
func (h *stripeWebhook) handle(e *core.RequestEvent) error {
	if len(h.secrets) == 0 {
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
	var event stripe.Event
	for _, secret := range h.secrets {
		event, err = webhook.ConstructEventWithOptions(body, e.Request.Header.Get("Stripe-Signature"), secret,
			webhook.ConstructEventOptions{Tolerance: stripeSignatureTolerance, IgnoreAPIVersionMismatch: true})
		if !errors.Is(err, webhook.ErrNoValidSignature) {
			break // valid, or wrong in a way no other secret changes
		}
	}
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

	// Stripe is called here, before the transaction: the database has one writer, and holding
	// it during a network call would stall every other write.
	promo := h.resolvePromotion(e.Request.Context(), e.App, event)
	var duplicate bool
	var outcome string
	err = h.conversions.awaitingClick(e.Request.Context(), func() (err error) {
		duplicate, outcome, err = h.processOnce(e.App, event, promo)
		return err
	})
	var ignored *stripeIgnoredError
	if errors.As(err, &ignored) {
		if ignored.noAttribution && promo.retry {
			// The promotion code may be the only thing that credits this sale: answer 500 and
			// store nothing, so Stripe delivers the event again when the lookup may work.
			e.App.Logger().Warn("stripe webhook: no attribution and the promotion code lookup failed; asking Stripe to retry",
				"event", event.ID, "type", string(event.Type), "error", promo.failure)
			return e.InternalServerError("Could not look up the sale's promotion code at Stripe; please retry.", nil)
		}
		// The attempt was rolled back; remember the verdict so a redelivery is a duplicate.
		duplicate, outcome, err = h.storeIgnored(e.App, event, promo.annotate(ignored.outcome))
	}
	if errors.Is(err, errClickBehind) { // the sale's click is still on its way: Stripe retries
		return clickBehind(e)
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
func (h *stripeWebhook) processOnce(app core.App, event stripe.Event, promo stripePromotion) (duplicate bool, outcome string, err error) {
	err = app.RunInTransaction(func(tx core.App) error {
		seen, err := stripeEventSeen(tx, event.ID)
		if err != nil || seen {
			duplicate = seen
			return err
		}
		if outcome, err = h.process(tx, event, promo); err != nil {
			return err
		}
		outcome = promo.annotate(outcome)
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
func (h *stripeWebhook) process(tx core.App, event stripe.Event, promo stripePromotion) (string, error) {
	switch event.Type {
	case stripe.EventTypeCheckoutSessionCompleted, stripe.EventTypeCheckoutSessionAsyncPaymentSucceeded:
		return withStripeObject(event, func(s *stripe.CheckoutSession) (string, error) {
			return h.checkoutCompleted(tx, event, s, promo.coupon)
		})
	case stripe.EventTypeInvoicePaid:
		return withStripeObject(event, func(inv *stripe.Invoice) (string, error) {
			return h.invoicePaid(tx, event, inv, promo.coupon)
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
			return stripeDisputeChanged(tx, event, d, false)
		})
	case stripe.EventTypeChargeDisputeClosed:
		return withStripeObject(event, func(d *stripe.Dispute) (string, error) {
			return stripeDisputeChanged(tx, event, d, true)
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
// a one-off payment), so those events become duplicates instead of second sales. promoCoupon is
// the session's promotion code, used when the metadata names no coupon.
func (h *stripeWebhook) checkoutCompleted(tx core.App, event stripe.Event, s *stripe.CheckoutSession, promoCoupon string) (string, error) {
	switch s.PaymentStatus {
	case stripe.CheckoutSessionPaymentStatusPaid, stripe.CheckoutSessionPaymentStatusNoPaymentRequired:
	default:
		// Delayed payment methods: checkout.session.async_payment_succeeded follows when paid.
		return fmt.Sprintf("ignored: payment_status %q", s.PaymentStatus), nil
	}
	if s.AmountTotal <= 0 {
		return zeroAmountSession(tx, event, s, promoCoupon)
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
	coupon := s.Metadata[stripeMetaCoupon]
	if coupon == "" {
		coupon = promoCoupon
	}
	return h.recordSale(tx, conversionInput{
		ProgramID:      s.Metadata[stripeMetaProgram],
		ExternalID:     externalID,
		ClickID:        clickID,
		AffiliateCode:  s.Metadata[stripeMetaAffiliate],
		Coupon:         coupon,
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
// affiliate as well, for subscriptions created without Checkout. promoCoupon is the invoice's
// promotion code, used when the metadata names no coupon.
func (h *stripeWebhook) invoicePaid(tx core.App, event stripe.Event, inv *stripe.Invoice, promoCoupon string) (string, error) {
	if inv.AmountPaid <= 0 {
		return zeroAmountInvoice(tx, event, inv, promoCoupon)
	}
	meta := stripeInvoiceMetadata(inv)
	coupon := meta[stripeMetaCoupon]
	if coupon == "" {
		coupon = promoCoupon
	}
	in := conversionInput{
		ProgramID:      meta[stripeMetaProgram],
		ExternalID:     inv.ID,
		ClickID:        meta[stripeMetaClick],
		AffiliateCode:  meta[stripeMetaAffiliate],
		Coupon:         coupon,
		Customer:       stripeID(inv.Customer),
		CustomerEmail:  inv.CustomerEmail,
		Amount:         inv.AmountPaid,
		Currency:       string(inv.Currency),
		OccurredAt:     stripeEventTime(event),
		SubscriptionID: stripeID(inv.Subscription),
		PaymentIntent:  stripeID(inv.PaymentIntent),
		Charge:         stripeID(inv.Charge),
		Metadata:       stripeSaleMetadata(event, inv.ID),
	}
	if !hasStripeAttribution(meta) {
		if err := withKeptAttribution(tx, &in); err != nil {
			return "", err
		}
	}
	return h.recordSale(tx, in)
}

// stripeInvoiceMetadata is the metadata that attributes an invoice: the subscription's (copied
// onto the invoice as subscription_details) when it names an affiliate, else the invoice's own.
func stripeInvoiceMetadata(inv *stripe.Invoice) map[string]string {
	if inv.SubscriptionDetails != nil && hasStripeAttribution(inv.SubscriptionDetails.Metadata) {
		return inv.SubscriptionDetails.Metadata
	}
	return inv.Metadata
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
	in.Source, in.Signed = collections.SourceStripe, true
	// One payment reaches us through several events whose amounts may differ (discounts, tax).
	in.IgnoreMismatch = true
	rec, created, err := h.conversions.withTx(tx).record(in)
	if ignored := ignoredSale(err); ignored != nil {
		return "", ignored
	}
	if err != nil {
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
		if err := storePendingStripe(tx, collections.StripePendingRefund, pi, c.ID, invoice, c.AmountRefunded, event.ID); err != nil {
			return "", fmt.Errorf("keep refund of charge %s: %w", c.ID, err)
		}
		return fmt.Sprintf("pending: refund of %d for an unrecorded sale", c.AmountRefunded), nil
	}
	if err := applyRefund(tx, conv, c.AmountRefunded, "charge.refunded "+event.ID); err != nil {
		return "", fmt.Errorf("refund conversion %s: %w", conv.Id, err)
	}
	return fmt.Sprintf("refunded %d of conversion %s (%s)", c.AmountRefunded, conv.Id,
		conv.GetString(collections.FieldStatus)), nil
}

// stripeDisputeChanged records a dispute opened (charge.dispute.created) or closed
// (charge.dispute.closed, closed) and puts the sale where its disputes leave it: held (pending,
// reason dispute) while one is open so its commission is not paid while the money may go back,
// released when won, refunded in full when lost (the engine then voids the unpaid commission
// or claws back a paid one). A sale not recorded yet gets the same treatment when it arrives.
func stripeDisputeChanged(tx core.App, event stripe.Event, d *stripe.Dispute, closed bool) (string, error) {
	if d.ID == "" {
		return "ignored: dispute without id", nil
	}
	stored, err := recordDispute(tx, d, stripeID(d.Charge), stripeID(d.PaymentIntent), closed, event.ID)
	if err != nil {
		return "", fmt.Errorf("record dispute %s: %w", d.ID, err)
	}
	conv, err := findStripeConversion(tx, stored.GetString("payment_intent"), stored.GetString("charge"), "")
	if err != nil {
		return "", fmt.Errorf("dispute %s: %w", d.ID, err)
	}
	state := "dispute"
	if closed {
		state = fmt.Sprintf("dispute %s", d.Status)
	}
	if conv == nil {
		return "pending: " + state + " for an unrecorded sale", nil
	}
	did, err := applyDisputeState(tx, conv)
	if err != nil {
		return "", fmt.Errorf("apply dispute %s to conversion %s: %w", d.ID, conv.Id, err)
	}
	if did == "" {
		did = "unchanged"
	}
	return fmt.Sprintf("%s %s: conversion %s %s (%s)", state, d.ID, conv.Id, did, conv.GetString(collections.FieldStatus)), nil
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

// stripePromotion is what the promotion codes of one sale resolved to, worked out before the
// event's transaction because it may call Stripe.
type stripePromotion struct {
	// coupon is the lowercased code to pass as the sale's Coupon, "" for none.
	coupon string
	// failure is "promotion code lookup failed: …" when a lookup failed, kept in the outcome so
	// support can see why a discounted sale was not credited to the code's affiliate.
	failure string
	// retry reports that a failed lookup may work later (network, 5xx, bad key), as opposed to a
	// promotion code Stripe says does not exist.
	retry bool
}

// annotate appends the lookup failure, if any, to an outcome; the outcome's own text comes first
// so truncation to the field's size only ever shortens the note.
func (p stripePromotion) annotate(outcome string) string {
	if p.failure == "" {
		return outcome
	}
	return outcome + "; " + p.failure
}

// resolvePromotion looks up the promotion codes of a sale event whose metadata names no coupon.
// It always looks them up, even when a click or affiliate code is present: a click may be unknown
// or outside the cookie window, and the conversion service already ranks click and affiliate
// code above the coupon, so a stronger attribution still wins. Without a Stripe key, for events
// seen before and for events without promotion codes it does nothing.
func (h *stripeWebhook) resolvePromotion(ctx context.Context, app core.App, event stripe.Event) stripePromotion {
	var p stripePromotion
	if h.stripe == nil {
		return p
	}
	ids, session := stripePromotionCodeIDs(event)
	if len(ids) == 0 && session == "" {
		return p
	}
	// A redelivery is answered as a duplicate by processOnce; do not spend API calls on it.
	// (A lookup error is left for processOnce to report as well.)
	if seen, err := stripeEventSeen(app, event.ID); err != nil || seen {
		return p
	}
	ctx, cancel := context.WithTimeout(ctx, stripePromotionLookupTimeout)
	defer cancel()
	var codes, failures []string
	if session != "" {
		var err error
		if ids, err = h.stripe.CheckoutSessionPromotionCodes(ctx, session); err != nil {
			failures = append(failures, truncateStripeText(err.Error(), 200))
			p.retry = !stripePermanentError(err)
		}
	}
	for _, id := range ids {
		code, err := h.promotionCode(ctx, id)
		if err != nil {
			failures = append(failures, truncateStripeText(err.Error(), 200))
			if !stripePermanentError(err) {
				p.retry = true
			}
			continue
		}
		if code = strings.ToLower(strings.TrimSpace(code)); code != "" {
			codes = append(codes, code)
		}
	}
	if len(failures) > 0 {
		p.failure = "promotion code lookup failed: " + strings.Join(failures, "; ")
	}
	p.coupon = pickPromotionCoupon(app, codes)
	return p
}

// promotionCode resolves one id through the cache, then Stripe. Failures are not cached: the
// next delivery asks again.
func (h *stripeWebhook) promotionCode(ctx context.Context, id string) (string, error) {
	if code, ok := h.promotionCodes.get(id); ok {
		return code, nil
	}
	code, err := h.stripe.PromotionCode(ctx, id)
	if err != nil {
		return "", err
	}
	h.promotionCodes.put(id, code)
	return code, nil
}

// pickPromotionCoupon chooses the code to credit when a sale carries several promotion codes:
// the first that is an active coupon in pbaffiliate (the others are the merchant's own
// campaigns), else the first, which the conversion service then simply does not find. Stripe
// reads outside its transaction (the service looks the coupon up again inside it); the other
// providers (Shopify's discount codes) pass their transaction.
func pickPromotionCoupon(app core.App, codes []string) string {
	if len(codes) == 0 {
		return ""
	}
	if len(codes) > 1 {
		for _, code := range codes {
			if _, err := app.FindFirstRecordByFilter(collections.Coupons, "code = {:code} && active = true",
				dbx.Params{"code": code}); err == nil {
				return code
			}
		}
	}
	return codes[0]
}

// stripePromotionCodeIDs lists the promotion code ids (deduplicated, at most
// stripeMaxPromotionCodes) of a sale event that metadata does not already give a coupon, and
// nothing for events that will not become a sale anyway (unpaid, zero amounts), so those cost
// no API call. For a discounted Checkout Session whose payload does not list its discounts, it
// returns the session's id instead: the caller retrieves the session with them.
//
// Webhook payloads leave most references unexpanded, and stripe-go decodes a bare id into an
// object holding only its ID, so every shape is handled:
//   - invoice.discount is an object whose promotion_code is an id (or, expanded, an object);
//   - invoice.discounts is, in API version 2023-10-16, usually a list of bare discount ids
//     ("di_…") with no promotion code to read: those are skipped, invoice.discount covers the
//     common single-discount case;
//   - a Checkout Session's total_details.breakdown is includable: Stripe never sends it in an
//     event, only when a request expands it; total_details.amount_discount says whether there
//     is anything to look for.
func stripePromotionCodeIDs(event stripe.Event) (ids []string, expandSession string) {
	if event.Data == nil || len(event.Data.Raw) == 0 {
		return nil, ""
	}
	var discounts []*stripe.Discount
	switch event.Type {
	case stripe.EventTypeCheckoutSessionCompleted, stripe.EventTypeCheckoutSessionAsyncPaymentSucceeded:
		var s stripe.CheckoutSession
		if json.Unmarshal(event.Data.Raw, &s) != nil || s.Metadata[stripeMetaCoupon] != "" {
			return nil, ""
		}
		if s.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid &&
			s.PaymentStatus != stripe.CheckoutSessionPaymentStatusNoPaymentRequired {
			return nil, ""
		}
		// A $0 session (a trial) is only worth a lookup when its attribution can be kept, and
		// its amount_discount is 0 even when a promotion code applies to the later invoices.
		zero := s.AmountTotal <= 0
		if zero && stripeID(s.Subscription) == "" && stripeID(s.Customer) == "" {
			return nil, ""
		}
		if s.ID != "" && (s.TotalDetails == nil || s.TotalDetails.Breakdown == nil) &&
			(zero || s.TotalDetails != nil && s.TotalDetails.AmountDiscount > 0) {
			return nil, s.ID
		}
		discounts = checkoutSessionDiscounts(&s)
	case stripe.EventTypeInvoicePaid:
		var inv stripe.Invoice
		if json.Unmarshal(event.Data.Raw, &inv) != nil || stripeInvoiceMetadata(&inv)[stripeMetaCoupon] != "" {
			return nil, ""
		}
		// $0 invoices too when their attribution can be kept: a trial's first invoice may carry
		// the promotion code that credits the paid ones.
		if inv.AmountPaid <= 0 && stripeID(inv.Subscription) == "" && stripeID(inv.Customer) == "" {
			return nil, ""
		}
		discounts = append([]*stripe.Discount{inv.Discount}, inv.Discounts...)
	default:
		return nil, ""
	}
	return promotionCodeIDs(discounts), ""
}

// checkoutSessionDiscounts are the discounts of an expanded session's total_details.breakdown.
func checkoutSessionDiscounts(s *stripe.CheckoutSession) []*stripe.Discount {
	if s.TotalDetails == nil || s.TotalDetails.Breakdown == nil {
		return nil
	}
	var discounts []*stripe.Discount
	for _, d := range s.TotalDetails.Breakdown.Discounts {
		if d != nil {
			discounts = append(discounts, d.Discount)
		}
	}
	return discounts
}

// promotionCodeIDs are the promotion code ids of discounts, deduplicated, at most
// stripeMaxPromotionCodes.
func promotionCodeIDs(discounts []*stripe.Discount) []string {
	var ids []string
	seen := map[string]bool{}
	for _, d := range discounts {
		if d == nil || d.PromotionCode == nil || d.PromotionCode.ID == "" || seen[d.PromotionCode.ID] {
			continue
		}
		seen[d.PromotionCode.ID] = true
		if ids = append(ids, d.PromotionCode.ID); len(ids) == stripeMaxPromotionCodes {
			break
		}
	}
	return ids
}

// promotionCodeCache maps promotion code ids to codes. It is bounded by emptying it when full,
// which costs a few repeated lookups and needs no eviction bookkeeping.
type promotionCodeCache struct {
	mu    sync.Mutex
	codes map[string]string
}

// get returns the cached code of id.
func (c *promotionCodeCache) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	code, ok := c.codes[id]
	return code, ok
}

// put remembers the code of id.
func (c *promotionCodeCache) put(id, code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.codes == nil || len(c.codes) >= stripePromotionCacheSize {
		c.codes = make(map[string]string)
	}
	c.codes[id] = code
}
