package collections

// Doors: what /r/{code} does for a visitor it credits no click to (hooks/redirect_doors.go).

// LinkArchived marks a link its affiliate (or an admin) retired: it keeps its clicks and
// history, and its visitors are still sent on, but no new click is credited.
const LinkArchived = "archived"

// InactiveRedirects counts, per UTC day, the visitors sent on without a click credited.
const InactiveRedirects = "inactive_redirects"

// inactive_redirects fields (besides program, affiliate, link and updated). The ids are
// plain text, not relations: a counter row outlives the link or affiliate it counts.
const (
	InactiveDay    = "day"
	InactiveReason = "reason"
	InactiveCount  = "count"
)

// Why a visitor got no click: the first of these that applies.
const (
	InactiveProgram            = "program_inactive"
	InactiveAffiliatePending   = "affiliate_pending"
	InactiveAffiliateSuspended = "affiliate_suspended"
	InactiveAffiliateRejected  = "affiliate_rejected"
	InactiveLinkArchived       = "link_archived"
	InactiveUnknownCode        = "unknown_code" // counted only when PBA_FALLBACK_URL is set
)

// EdgeDoorBatches holds the ids of the door counts redirect nodes published that the primary
// has counted (hooks/edge_ingest.go), so a batch delivered again is counted once.
const EdgeDoorBatches = "edge_door_batches"
