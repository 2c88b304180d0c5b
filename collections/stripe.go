package collections

// Stripe bookkeeping collections: adjustments that arrived before their sale, and disputes.
const (
	StripeDisputes = "stripe_disputes"
)

// Fields shared by the Stripe bookkeeping rows (stripe_pending, stripe_disputes).
const (
	StripePaymentIntent = "payment_intent"
	StripeCharge        = "charge"
	StripeEventID       = "event_id"
)

// stripe_pending fields: a refund or dispute waiting for the sale it adjusts.
const (
	StripePendingKind           = "kind"
	StripePendingInvoice        = "invoice"
	StripePendingAmountRefunded = "amount_refunded"
)

// stripe_pending kinds.
const (
	StripePendingRefund  = "refund"
	StripePendingDispute = "dispute"
)

// stripe_disputes fields (besides payment_intent, charge, event_id and amount).
const (
	StripeDisputeID     = "dispute_id"
	StripeDisputeStatus = "status"
	StripeDisputeClosed = "closed"
)

// Stripe's closing dispute statuses that pbaffiliate acts on.
const (
	StripeDisputeWon           = "won"
	StripeDisputeLost          = "lost"
	StripeDisputeWarningClosed = "warning_closed"
)
