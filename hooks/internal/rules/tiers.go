package rules

// Tier is one step of a program's performance ladder: affiliates who reach its thresholds in a
// calendar month are moved to it and earn its rate.
type Tier struct {
	// ID identifies the tier; it is the tie-breaker between tiers of equal Rank.
	ID string
	// Name is the human label, copied into explanations.
	Name string
	// Rank orders tiers; higher is better.
	Rank int
	// MinRevenue is the monthly revenue (minor units) needed; 0 (or less) is always met.
	MinRevenue int64
	// MinConversions is the monthly conversion count needed; 0 (or less) is always met.
	MinConversions int
	// CommissionValue is the tier's rate, read in the program's CommissionType; <= 0 means the
	// tier does not set a rate and the program's is used.
	CommissionValue int64
}

// TierFor returns the highest-Rank tier whose thresholds perf meets (revenue >= MinRevenue AND
// conversions >= MinConversions), for the monthly job that moves affiliates up or down. Ties on
// Rank go to the lexicographically smallest ID so the choice is deterministic whatever the slice
// order. It reports false when tiers is empty or no tier qualifies. tiers is not modified.
func TierFor(tiers []Tier, perf Performance) (Tier, bool) {
	var best Tier
	found := false
	for _, t := range tiers {
		if perf.Revenue < t.MinRevenue || perf.Conversions < t.MinConversions {
			continue
		}
		if !found || t.Rank > best.Rank || (t.Rank == best.Rank && t.ID < best.ID) {
			best, found = t, true
		}
	}
	return best, found
}

// findTier returns the tier with the given id.
func findTier(tiers []Tier, id string) (Tier, bool) {
	for _, t := range tiers {
		if t.ID == id {
			return t, true
		}
	}
	return Tier{}, false
}
