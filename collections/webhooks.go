package collections

// Webhook delivery fields (migration 1795478500_conversions): the outbox of notifications
// to affiliates' own webhook_url, one row per event and affiliate.
const (
	WebhookDeliveryEvent          = "event"
	WebhookDeliveryEventID        = "event_id"
	WebhookDeliveryURL            = "url"
	WebhookDeliveryPayload        = "payload"
	WebhookDeliveryAttempts       = "attempts"
	WebhookDeliveryNextAttemptAt  = "next_attempt_at"
	WebhookDeliveryResponseStatus = "response_status"
	WebhookDeliveryLastError      = "last_error" // hidden: the detail is for admins
	WebhookDeliveryReason         = "reason"     // the generic account affiliates see
)

// Webhook delivery statuses: pending until sent, failed after the last attempt.
const (
	WebhookDeliveryPending = "pending"
	WebhookDeliverySent    = "sent"
	WebhookDeliveryFailed  = "failed"
)
