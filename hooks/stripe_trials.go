package hooks

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Free trials (and 100% discounts, setup-mode sessions) start a Stripe subscription or customer
// without a payment: the $0 Checkout Session or invoice records no sale, but the click or code it
// carries is kept in stripe_attributions, keyed by subscription (or by customer when there is
// none), so the first paid invoice, weeks later, is credited to that referrer.

// stripeAttributionFieldMax is the stripe_attributions text fields' Max.
const stripeAttributionFieldMax = 255

// stripeKeptAttribution is the referrer of a subscription or customer that started without a
// payment, as its event named it (before attribution rules are applied: the paid invoice is
// judged by the conversion service like any sale).
type stripeKeptAttribution struct {
	Customer, Subscription                string
	Click, AffiliateCode, Coupon, Program string
	// At is when the customer signed up; the click's cookie window is judged at this moment, so
	// a trial longer than cookie_days still credits its click.
	At time.Time
	// Object and EventID say which Stripe object and event stored it (support questions).
	Object, EventID string
}

// names reports whether the attribution names any referrer.
func (a stripeKeptAttribution) names() bool {
	return a.Click != "" || a.AffiliateCode != "" || a.Coupon != ""
}

// zeroAmountSession keeps the attribution of a paid-for-nothing Checkout Session (a trial's,
// a fully discounted one's, a setup-mode one's). Nothing to keep is an ignored event like before.
func zeroAmountSession(tx core.App, event stripe.Event, s *stripe.CheckoutSession, promoCoupon string) (string, error) {
	a := stripeKeptAttribution{
		Customer: stripeID(s.Customer), Subscription: stripeID(s.Subscription),
		Click: s.ClientReferenceID, AffiliateCode: s.Metadata[stripeMetaAffiliate],
		Coupon: s.Metadata[stripeMetaCoupon], Program: s.Metadata[stripeMetaProgram],
		At: stripeEventTime(event), Object: s.ID, EventID: event.ID,
	}
	if a.Click == "" {
		a.Click = s.Metadata[stripeMetaClick]
	}
	if a.Coupon == "" {
		a.Coupon = promoCoupon
	}
	return keepZeroAmount(tx, a, "ignored: zero amount")
}

// zeroAmountInvoice keeps the attribution of a $0 invoice (a trial's first invoice): its
// metadata or promotion code may be the only place that names the referrer. It never becomes a
// sale, so it is not a payment of the subscription (payment_number, recurring rules).
func zeroAmountInvoice(tx core.App, event stripe.Event, inv *stripe.Invoice, promoCoupon string) (string, error) {
	meta := stripeInvoiceMetadata(inv)
	a := stripeKeptAttribution{
		Customer: stripeID(inv.Customer), Subscription: stripeID(inv.Subscription),
		Click: meta[stripeMetaClick], AffiliateCode: meta[stripeMetaAffiliate],
		Coupon: meta[stripeMetaCoupon], Program: meta[stripeMetaProgram],
		At: stripeEventTime(event), Object: inv.ID, EventID: event.ID,
	}
	if a.Coupon == "" {
		a.Coupon = promoCoupon
	}
	return keepZeroAmount(tx, a, "ignored: nothing paid")
}

// keepZeroAmount stores a and answers ignored plus where it was kept. With nothing to keep it
// returns ignored as a *stripeIgnoredError marked noAttribution, so a promotion code lookup
// that failed and might have named the referrer makes Stripe retry (see handle).
func keepZeroAmount(tx core.App, a stripeKeptAttribution, ignored string) (string, error) {
	if !a.names() || (a.Subscription == "" && a.Customer == "") {
		return "", &stripeIgnoredError{outcome: ignored, noAttribution: true}
	}
	if err := keepStripeAttribution(tx, a); err != nil {
		return "", err
	}
	if a.Subscription != "" {
		return fmt.Sprintf("%s; attribution kept for subscription %s", ignored, a.Subscription), nil
	}
	return fmt.Sprintf("%s; attribution kept for customer %s", ignored, a.Customer), nil
}

// keepStripeAttribution stores a for its subscription (or, without one, its customer), in the
// event's transaction. A row already there is completed, never overwritten: the session and the
// trial's $0 invoice arrive in any order and may each name part of it, and the first referrer
// named keeps the subscription. Replays are stopped earlier by stripe_events, and completing a
// row with what it holds changes nothing anyway.
func keepStripeAttribution(tx core.App, a stripeKeptAttribution) error {
	if a.At.IsZero() {
		a.At = time.Now().UTC()
	}
	row, err := findStripeAttribution(tx, a.Subscription, a.Customer, true)
	if err != nil {
		return err
	}
	if row == nil {
		col, err := tx.FindCachedCollectionByNameOrId(collections.StripeAttributions)
		if err != nil {
			return fmt.Errorf("stripe_attributions collection: %w", err)
		}
		row = core.NewRecord(col)
		row.Load(map[string]any{
			collections.StripeAttributionSubscription: a.Subscription,
			collections.StripeAttributionAt:           a.At,
			collections.StripeAttributionObject:       a.Object,
			collections.StripeEventID:                 a.EventID,
		})
	}
	changed := row.IsNew()
	for field, value := range map[string]string{
		collections.StripeAttributionCustomer:      a.Customer,
		collections.StripeAttributionClick:         a.Click,
		collections.StripeAttributionAffiliateCode: strings.ToLower(strings.TrimSpace(a.AffiliateCode)),
		collections.StripeAttributionCoupon:        strings.ToLower(strings.TrimSpace(a.Coupon)),
		collections.StripeAttributionProgram:       a.Program,
	} {
		if value != "" && row.GetString(field) == "" {
			row.Set(field, truncateStripeText(value, stripeAttributionFieldMax))
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := tx.Save(row); err != nil {
		return fmt.Errorf("keep stripe attribution of %s %s: %w", a.Subscription, a.Customer, err)
	}
	return nil
}

// findStripeAttribution is the kept attribution of a subscription, else the customer-wide one
// (kept by an event without subscription, e.g. a setup-mode session); nil when there is none.
// exact limits it to the row a keep of (subscription, customer) would write.
func findStripeAttribution(tx core.App, subscription, customer string, exact bool) (*core.Record, error) {
	if subscription != "" {
		r, err := tx.FindFirstRecordByData(collections.StripeAttributions, collections.StripeAttributionSubscription, subscription)
		if err == nil || !errors.Is(err, sql.ErrNoRows) {
			return r, wrapAttributionErr(err, subscription)
		}
		if exact {
			return nil, nil
		}
	}
	if customer == "" {
		return nil, nil
	}
	r, err := tx.FindFirstRecordByFilter(collections.StripeAttributions, "subscription = '' && customer = {:c}",
		dbx.Params{"c": customer})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, wrapAttributionErr(err, customer)
}

func wrapAttributionErr(err error, key string) error {
	if err != nil {
		return fmt.Errorf("find stripe attribution of %s: %w", key, err)
	}
	return nil
}

// withKeptAttribution completes a paid invoice's sale whose own metadata names nobody with the
// attribution kept for its subscription or customer: after a trial, the first paid invoice
// carries no client_reference_id. The invoice's promotion code, if any, stays the coupon.
func withKeptAttribution(tx core.App, in *conversionInput) error {
	row, err := findStripeAttribution(tx, in.SubscriptionID, in.Customer, false)
	if err != nil || row == nil {
		return err
	}
	in.ClickID = row.GetString(collections.StripeAttributionClick)
	in.AffiliateCode = row.GetString(collections.StripeAttributionAffiliateCode)
	if in.Coupon == "" {
		in.Coupon = row.GetString(collections.StripeAttributionCoupon)
	}
	if in.ProgramID == "" {
		in.ProgramID = row.GetString(collections.StripeAttributionProgram)
	}
	// A subscription's referral happened at its signup; a customer-wide row (no subscription)
	// may be old when the customer finally pays, so its click faces the cookie window as usual.
	if row.GetString(collections.StripeAttributionSubscription) != "" {
		in.AttributedAt = row.GetDateTime(collections.StripeAttributionAt).Time()
	}
	return nil
}
