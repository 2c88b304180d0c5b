package collections

// Conversion fields: the sender's order key of the last merchant status update applied
// (hooks/conversion_updates.go, hooks/internal/saleupdate). Server-owned.
const (
	ConversionSenderUpdatedAt = "sender_updated_at"
	ConversionSenderSequence  = "sender_sequence"
)

// ConversionEvents is the history of every sale: one row per change of its status or refunded
// amount (and per refund the engine applies), written in the transaction of the change.
const ConversionEvents = "conversion_events"

// conversion_events fields (besides affiliate, program and created).
const (
	EventConversion       = "conversion"
	EventDoor             = "door"
	EventActor            = "actor"
	EventStatusBefore     = "status_before"
	EventStatusAfter      = "status_after"
	EventRefundedBefore   = "refunded_before"
	EventRefundedAfter    = "refunded_after"
	EventCommissionChange = "commission_change"
	EventSenderUpdatedAt  = "sender_updated_at"
	EventSenderSequence   = "sender_sequence"
	EventNote             = "note"
)

// Doors a change of a sale comes through (conversion_events.door).
const (
	DoorDashboard = "dashboard" // the records API as a superuser (the dashboard, /admin/)
	DoorAPI       = "api"       // POST /api/pba/conversions/{source}/{external_id}
	DoorPostback  = "postback"  // GET /api/pba/postback
	DoorStripe    = "stripe"    // the Stripe webhook: refunds and disputes
	DoorEngine    = "engine"    // pbaCommissions applying a refund to the commission
	DoorSystem    = "system"    // any other save in code (CLI, tests)
)
