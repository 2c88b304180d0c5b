package collections

// Incentives are time-boxed campaigns of a program (migration 1795480700): rate boosts and
// multipliers the commission engine applies to the sales inside them, per-sale and target
// bonuses it pays once. Superusers only through the records API.
const (
	Incentives = "incentives"

	IncentiveDescription = "description"
	IncentiveStartsAt    = "starts_at"
	IncentiveEndsAt      = "ends_at"
	IncentiveEligibility = "eligibility"
	IncentiveTiers       = "tiers"
	IncentiveAffiliates  = "affiliates"
	IncentiveKind        = "kind"
	IncentiveValue       = "value"
	IncentiveThreshold   = "threshold"
	IncentiveTargetKind  = "target_kind"
	IncentiveTarget      = "target"
	IncentiveBonus       = "bonus"
	IncentiveActive      = "active"
	// IncentiveAnnouncedAt is server-owned: when the start was announced by mail.
	IncentiveAnnouncedAt = "announced_at"

	// ProgramTimezone is the IANA zone campaign dates are entered and shown in ("" = UTC).
	ProgramTimezone = "timezone"
)

// Monthly milestone bonuses (migration 1795478600), and the table (not a collection) of the
// affiliate months whose bonuses the commission engine has still to evaluate (migration
// 1795482400; hooks/commissions.go).
const (
	Bonuses     = "bonuses"
	BonusChecks = "bonus_checks"
)
