package collections

// Messaging collections (migrations 1795478800_messaging and 1795479100_mail_templates) and
// tier_changes (1795478600_commissions), whose rows the tier_changed mail reads.
const (
	Messages      = "messages"
	Deliveries    = "deliveries"
	Suppressions  = "suppressions"
	MailTemplates = "mail_templates"
	TierChanges   = "tier_changes"
)

// Message fields: a broadcast an admin writes, resolved into one delivery per recipient.
const (
	MessageSubject    = "subject"
	MessageBody       = "body"
	MessageKind       = "kind"
	MessageAudience   = "audience"
	MessageSendAt     = "send_at"
	MessageResolvedAt = "resolved_at"
	MessageCounts     = "counts"
	MessageError      = "error"
)

// Message kinds.
const (
	MessageKindBroadcast = "broadcast"
	MessageKindDigest    = "digest"
	MessageKindLifecycle = "lifecycle"
)

// Message statuses: an admin schedules a draft; the mail worker sends it and marks it sent.
const (
	MessageDraft     = "draft"
	MessageScheduled = "scheduled"
	MessageSending   = "sending"
	MessageSent      = "sent"
)

// Delivery fields: one email to one affiliate, once per idempotency key.
const (
	DeliveryMessage        = "message"
	DeliveryEmail          = "email"
	DeliveryTemplate       = "template"
	DeliveryProviderID     = "provider_id"
	DeliveryIdempotencyKey = "idempotency_key"
	DeliveryMarketing      = "marketing"
	DeliveryError          = "error"
	DeliveryAttempts       = "attempts"
	DeliveryNextAttemptAt  = "next_attempt_at"
	DeliverySentAt         = "sent_at"
	DeliveryData           = "data"
)

// Delivery statuses: queued until the worker sends it; the provider's webhook reports the rest.
const (
	DeliveryQueued     = "queued"
	DeliverySent       = "sent"
	DeliveryDelivered  = "delivered"
	DeliveryBounced    = "bounced"
	DeliveryComplained = "complained"
	DeliveryFailed     = "failed"
	DeliverySkipped    = "skipped"
	DeliveryDelayed    = "delayed"
)

// Suppression fields: an address (lowercase) no marketing mail may go to.
const (
	SuppressionEmail  = "email"
	SuppressionReason = "reason"
)

// Suppression reasons.
const (
	SuppressionBounce      = "bounce"
	SuppressionComplaint   = "complaint"
	SuppressionUnsubscribe = "unsubscribe"
)

// Mail template fields (besides name): an admin's version of a shipped template.
const (
	MailTemplateSubject   = "subject"
	MailTemplateHTML      = "html"
	MailTemplateText      = "text"
	MailTemplateVariables = "variables"
)

// Tier change fields (besides affiliate): one recorded move between tiers.
const (
	TierChangeFromTier = "from_tier"
	TierChangeToTier   = "to_tier"
	TierChangeReason   = "reason"
)
