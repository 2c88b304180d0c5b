package collections

// Outgoing webhooks for the merchant's tools (migration 1795481500_outgoing_webhooks): the
// endpoints superusers register. Their deliveries are webhook_deliveries rows with
// WebhookDeliveryWebhook set (and no affiliate).
const Webhooks = "webhooks"

// Endpoint fields.
const (
	WebhookURL            = "url"
	WebhookDescription    = "description"
	WebhookEvents         = "events" // multi select; empty = every event
	WebhookSecret         = "secret" // whsec_ + base64, readable by superusers
	WebhookActive         = "active"
	WebhookFailureStreak  = "failure_streak"
	WebhookDisabledAt     = "disabled_at"
	WebhookDisabledReason = "disabled_reason"
)

// Delivery fields added for endpoints.
const (
	WebhookDeliveryWebhook       = "webhook"
	WebhookDeliveryLastAttemptAt = "last_attempt_at"
	WebhookDeliveryResponseBody  = "response_body" // hidden: superusers only
)
