package collections

// StripeAttributions keeps who referred a Stripe customer or subscription that started without
// a payment (free trial, 100% discount, setup mode), for its first paid invoice.
const StripeAttributions = "stripe_attributions"

// stripe_attributions fields (besides event_id).
const (
	StripeAttributionCustomer      = "customer"
	StripeAttributionSubscription  = "subscription"
	StripeAttributionClick         = "click"
	StripeAttributionAffiliateCode = "affiliate_code"
	StripeAttributionCoupon        = "coupon"
	StripeAttributionProgram       = "program"
	StripeAttributionAt            = "attributed_at"
	StripeAttributionObject        = "object"
)
