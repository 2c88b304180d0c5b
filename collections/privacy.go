package collections

// Privacy requests and erasure (migration 1795481900_privacy; hooks/privacy*.go).
const (
	// PrivacyRequests records every export and erasure a superuser made: superusers only.
	PrivacyRequests = "privacy_requests"

	PrivacyKind    = "kind"
	PrivacySubject = "subject" // the affiliate id, or the visitor id
	PrivacyBy      = "by"      // the superuser's email
	PrivacySummary = "summary" // what was exported or changed: counts, never personal data

	// AffiliateErasedAt is when an affiliate's personal data was erased (server-owned; empty
	// for everyone else).
	AffiliateErasedAt = "erased_at"
)

// Kinds of privacy request.
const (
	PrivacyExport       = "export"
	PrivacyErase        = "erase"
	PrivacyVisitorErase = "visitor_erase"
)

// ErasedDomain is the domain of the address an erased affiliate's email becomes
// (erased-<id>@erased.invalid): ".invalid" is reserved (RFC 2606), so no mail can reach it.
const ErasedDomain = "erased.invalid"

// ErasedEmail is the placeholder address of the erased affiliate id, unique as the id is.
func ErasedEmail(id string) string { return "erased-" + id + "@" + ErasedDomain }

// ErasedName is the name an erased affiliate keeps.
const ErasedName = "Erased affiliate"
