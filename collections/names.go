// Package collections is pbaffiliate's data model as code: collection and field names,
// status values, typed record proxies and the few queries every capability shares.
//
// The names here are the public contract (the records API, realtime topics, the dashboard),
// so hooks, migrations and tests refer to them through these constants instead of strings.
package collections

// Collection names.
const (
	Affiliates  = "affiliates"
	Programs    = "programs"
	Tiers       = "tiers"
	Links       = "links"
	Clicks      = "clicks"
	Conversions = "conversions"
	Commissions = "commissions"
	Payouts     = "payouts"
	StatsDaily  = "stats_daily"

	Coupons           = "coupons"
	StripeEvents      = "stripe_events"
	StripePending     = "stripe_pending"
	WebhookDeliveries = "webhook_deliveries"

	// Leases hold one row per named lease (hooks/store: one process at a time runs a worker).
	Leases = "leases"
)

// Field names shared by several collections.
const (
	FieldAffiliate = "affiliate"
	FieldProgram   = "program"
	FieldLink      = "link"
	FieldCode      = "code"
	FieldStatus    = "status"
	FieldAmount    = "amount"
	FieldCurrency  = "currency"
	FieldName      = "name"
	FieldCreated   = "created"
	FieldUpdated   = "updated"
)

// Affiliate fields (besides the auth fields email, password, verified).
const (
	AffiliateTier               = "tier"
	AffiliateCommissionOverride = "commission_override"
	AffiliatePayoutMethod       = "payout_method"
	AffiliateStripeAccountID    = "stripe_account_id"
	AffiliatePayoutsEnabled     = "payouts_enabled"
	AffiliatePayoutEmail        = "payout_email"
	AffiliatePreferredChannel   = "preferred_channel"
	AffiliateWebhookURL         = "webhook_url"
	AffiliateTimezone           = "timezone"
	AffiliateTags               = "tags"
	AffiliateNotes              = "notes"
	AffiliateWebhookSecret      = "webhook_secret"
)

// Program fields.
const (
	ProgramSlug            = "slug"
	ProgramDestination     = "destination"
	ProgramAllowedDomains  = "allowed_domains"
	ProgramCommissionType  = "commission_type"
	ProgramCommissionValue = "commission_value"
	ProgramRecurring       = "recurring"
	ProgramRecurringMonths = "recurring_months"
	ProgramCookieDays      = "cookie_days"
	ProgramAttribution     = "attribution"
	ProgramHoldDays        = "hold_days"
	ProgramMinPayout       = "min_payout"
	ProgramPayoutSchedule  = "payout_schedule"
	ProgramAutoApprove     = "auto_approve"
	ProgramActive          = "active"
	ProgramPostbackSecret  = "postback_secret"
)

// Tier fields.
const (
	TierRank            = "rank"
	TierMinRevenue      = "min_revenue"
	TierMinConversions  = "min_conversions"
	TierCommissionValue = "commission_value"
)

// Link fields.
const (
	LinkDestination = "destination"
	LinkLabel       = "label"
	LinkSubID       = "sub_id"
)

// Click fields.
const (
	ClickVisitor   = "visitor"
	ClickIPHash    = "ip_hash"
	ClickUserAgent = "user_agent"
	ClickReferrer  = "referrer"
	ClickCountry   = "country"
	ClickSubID     = "sub_id"
	ClickUnique    = "unique"
	ClickFlag      = "flag"
)

// Conversion fields.
const (
	ConversionClick          = "click"
	ConversionSource         = "source"
	ConversionExternalID     = "external_id"
	ConversionCustomer       = "customer"
	ConversionReason         = "reason"
	ConversionOccurredAt     = "occurred_at"
	ConversionSubscriptionID = "subscription_id"
	ConversionMetadata       = "metadata"
	ConversionRefundedAmount = "refunded_amount"
	ConversionPaymentNumber  = "payment_number"
	ConversionPaymentIntent  = "stripe_payment_intent"
	ConversionCharge         = "stripe_charge"
)

// Coupon fields: a code that credits its affiliate when a sale uses it.
const (
	CouponActive = "active"
)

// Reasons a conversion carries with its status.
const (
	ReasonSelfReferral = "self_referral"
	ReasonDispute      = "dispute"
)

// Commission fields.
const (
	CommissionConversion = "conversion"
	CommissionKind       = "kind"
	CommissionPayableAt  = "payable_at"
	CommissionPayout     = "payout"
	CommissionRule       = "rule"
)

// Payout fields.
const (
	PayoutMethod           = "method"
	PayoutStripeTransferID = "stripe_transfer_id"
	PayoutIdempotencyKey   = "idempotency_key"
	PayoutAttempts         = "attempts"
	PayoutError            = "error"
	PayoutPeriodEnd        = "period_end"
	PayoutPaidAt           = "paid_at"
)

// stats_daily fields: one row per (day, affiliate, program, link) with additive counters.
const (
	StatsDay          = "day"
	StatsClicks       = "clicks"
	StatsUniqueClicks = "unique_clicks"
	StatsConversions  = "conversions"
	StatsRevenue      = "revenue"
	StatsCommission   = "commission"
)

// Affiliate statuses. Only approved affiliates of an active program earn.
const (
	AffiliatePending   = "pending"
	AffiliateApproved  = "approved"
	AffiliateRejected  = "rejected"
	AffiliateSuspended = "suspended"
)

// Payout methods (the affiliate's payout_method and the payout's method).
const (
	MethodStripe = "stripe"
	MethodManual = "manual"
)

// Preferred channels for marketing mail.
const (
	ChannelEmail = "email"
	ChannelNone  = "none"
)

// Commission types of a program: percent values are basis points, flat values minor units.
const (
	CommissionPercent = "percent"
	CommissionFlat    = "flat"
)

// Recurring modes of a program.
const (
	RecurringFirst    = "first"
	RecurringMonths   = "months"
	RecurringLifetime = "lifetime"
)

// Attribution models of a program.
const (
	AttributionLastClick  = "last_click"
	AttributionFirstClick = "first_click"
)

// Click flags: a flagged click is stored but counts for neither stats nor attribution.
const (
	FlagBot  = "bot"
	FlagRate = "rate"
	FlagSelf = "self"
)

// Conversion sources; external_id is unique per source.
const (
	SourceStripe   = "stripe"
	SourcePostback = "postback"
	SourceAPI      = "api"
	SourceCoupon   = "coupon"
	SourceManual   = "manual"
)

// Conversion statuses.
const (
	ConversionPending  = "pending"
	ConversionApproved = "approved"
	ConversionRejected = "rejected"
	ConversionRefunded = "refunded"
)

// Commission kinds; clawbacks carry a negative amount.
const (
	KindSale       = "sale"
	KindRecurring  = "recurring"
	KindBonus      = "bonus"
	KindClawback   = "clawback"
	KindAdjustment = "adjustment"
)

// Commission statuses.
const (
	CommissionPending = "pending"
	CommissionPayable = "payable"
	CommissionPaid    = "paid"
	CommissionVoid    = "void"
)

// Payout statuses.
const (
	PayoutPending    = "pending"
	PayoutProcessing = "processing"
	PayoutPaid       = "paid"
	PayoutFailed     = "failed"
	PayoutCanceled   = "canceled"
)

// Defaults of a new program (docs/data-model.md).
const (
	DefaultProgramSlug     = "default"
	DefaultCookieDays      = 60
	DefaultHoldDays        = 30
	DefaultMinPayout       = 5000
	DefaultPayoutSchedule  = "0 9 1 * *"
	DefaultCurrency        = "usd"
	DefaultCommissionValue = 2000 // 20% in basis points
)

// CodePattern is what affiliate and link codes look like: they appear in URLs (/r/{code}).
const CodePattern = `^[a-z0-9][a-z0-9-]{2,31}$`

// CurrencyPattern is a lowercase ISO 4217 code, as Stripe writes it.
const CurrencyPattern = `^[a-z]{3}$`

// DayPattern is the stats_daily day key (UTC calendar day).
const DayPattern = `^\d{4}-\d{2}-\d{2}$`
