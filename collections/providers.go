package collections

// Billing providers other than Stripe (hooks/billing_providers.go): each is a conversion source
// and a door of a sale's changes, named the same.
const (
	SourcePaddle       = "paddle"
	SourceLemonSqueezy = "lemonsqueezy"
	SourceShopify      = "shopify"
)

// Provider bookkeeping: the provider events processed (exactly once per provider and event id)
// and the refunds they reported, kept per refund so partial refunds add up in any order and a
// refund that arrives before its sale waits for it.
const (
	ProviderEvents  = "provider_events"
	ProviderRefunds = "provider_refunds"
)

// provider_events and provider_refunds fields (besides created, amount and currency).
const (
	ProviderName      = "provider"
	ProviderEventID   = "event_id"
	ProviderEventType = "type"
	ProviderOutcome   = "outcome"
	ProviderSale      = "sale"
	ProviderRefundID  = "refund_id"
)
