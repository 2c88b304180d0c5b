package rules

import (
	"fmt"
	"slices"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// Incentive kinds: two change the rate of the sales inside a campaign, two pay bonuses.
const (
	// IncentiveRateBoost adds Value basis points to a percent rate (500 = +5 points).
	IncentiveRateBoost = "rate_boost"
	// IncentiveMultiplier multiplies the commission by Value per mille (1500 = ×1.5).
	IncentiveMultiplier = "multiplier"
	// IncentivePerSaleBonus pays Bonus for every sale in the campaign beyond Threshold.
	IncentivePerSaleBonus = "per_sale_bonus"
	// IncentiveTargetBonus pays Bonus once when the campaign's sales or revenue reach Target.
	IncentiveTargetBonus = "target_bonus"

	// EligibleAll, EligibleTiers and EligibleAffiliates say who a campaign is for.
	EligibleAll        = "all"
	EligibleTiers      = "tiers"
	EligibleAffiliates = "affiliates"

	// TargetSales and TargetRevenue are what a target bonus counts.
	TargetSales   = "sales"
	TargetRevenue = "revenue"

	// PerMille is the multiplier unit: 1000 is ×1.
	PerMille int64 = 1000
	// MaxMultiplier is ×10: a larger factor is a typo, not a campaign.
	MaxMultiplier int64 = 10 * PerMille
)

// Incentive is one campaign of a program.
type Incentive struct {
	ID, Name    string
	Kind        string
	Value       int64 // rate_boost: basis points; multiplier: per mille
	Threshold   int64 // per_sale_bonus: sales before the bonus starts
	TargetKind  string
	Target      int64 // sales, or revenue in minor units
	Bonus       int64 // minor units
	StartsAt    time.Time
	EndsAt      time.Time // exclusive
	Eligibility string
	Tiers       []string
	Affiliates  []string
}

// Covers reports whether at is inside the campaign: StartsAt <= at < EndsAt.
func (in Incentive) Covers(at time.Time) bool {
	return !at.Before(in.StartsAt) && at.Before(in.EndsAt)
}

// Eligible reports whether the affiliate (with its current tier) takes part.
func (in Incentive) Eligible(affiliate, tier string) bool {
	switch in.Eligibility {
	case EligibleAll, "":
		return true
	case EligibleTiers:
		return tier != "" && slices.Contains(in.Tiers, tier)
	case EligibleAffiliates:
		return slices.Contains(in.Affiliates, affiliate)
	}
	return false
}

// ChangesRate reports whether the kind changes the commission of a sale (rather than paying a bonus).
func (in Incentive) ChangesRate() bool {
	return in.Kind == IncentiveRateBoost || in.Kind == IncentiveMultiplier
}

// CheckIncentive returns, by field name, why a campaign cannot be saved for a program of
// commission type programType; nil when it can.
func CheckIncentive(in Incentive, programType string) map[string]string {
	errs := map[string]string{}
	if !in.StartsAt.IsZero() && !in.EndsAt.IsZero() && !in.EndsAt.After(in.StartsAt) {
		errs["ends_at"] = "The campaign must end after it starts."
	}
	switch in.Eligibility {
	case EligibleAll, "":
	case EligibleTiers:
		if len(in.Tiers) == 0 {
			errs["tiers"] = "Choose at least one tier."
		}
	case EligibleAffiliates:
		if len(in.Affiliates) == 0 {
			errs["affiliates"] = "Choose at least one affiliate."
		}
	default:
		errs["eligibility"] = "Must be all, tiers or affiliates."
	}
	switch in.Kind {
	case IncentiveRateBoost:
		if programType != TypePercent {
			errs["kind"] = "A rate boost adds percentage points: this program pays a flat amount per sale, use a multiplier or a per-sale bonus."
		} else if in.Value < 1 || in.Value > MaxPercentBP {
			errs["value"] = "A rate boost is 1 to 10000 basis points (0.01 to 100 percentage points)."
		}
	case IncentiveMultiplier:
		if in.Value <= PerMille || in.Value > MaxMultiplier {
			errs["value"] = "A multiplier is in per mille, above 1000 (×1) and at most 10000 (×10): 1500 is ×1.5."
		}
	case IncentivePerSaleBonus, IncentiveTargetBonus:
		if in.Bonus < 1 || in.Bonus > MaxAmount {
			errs["bonus"] = "The bonus must be more than 0 (minor units)."
		}
		if in.Kind == IncentivePerSaleBonus && in.Threshold < 0 {
			errs["threshold"] = "The threshold is a number of sales, 0 or more."
		}
		if in.Kind == IncentiveTargetBonus {
			if in.TargetKind != TargetSales && in.TargetKind != TargetRevenue {
				errs["target_kind"] = "Must be sales or revenue."
			}
			if in.Target < 1 || in.Target > MaxAmount {
				errs["target"] = "The target must be more than 0."
			}
		}
	default:
		errs["kind"] = "Must be rate_boost, multiplier, per_sale_bonus or target_bonus."
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// AppliedIncentive is a campaign that changed a commission, as its rule records it.
type AppliedIncentive struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Value int64  `json:"value"`
}

// RateChange is what the rate-changing campaigns covering a sale do to its commission:
// Boost basis points added to a percent rate, then the commission multiplied by Multiplier
// per mille (PerMille when none).
type RateChange struct {
	Boost      int64
	Multiplier int64
	Applied    []AppliedIncentive
}

// RateChangeFor combines the rate-changing campaigns that cover at and admit the affiliate:
// rate boosts add up; of several multipliers only the largest applies (they do not compound).
func RateChangeFor(incentives []Incentive, affiliate, tier string, at time.Time) RateChange {
	rc := RateChange{Multiplier: PerMille}
	best := -1
	for _, in := range incentives {
		if !in.ChangesRate() || !in.Covers(at) || !in.Eligible(affiliate, tier) {
			continue
		}
		switch in.Kind {
		case IncentiveRateBoost:
			rc.Boost += in.Value
			rc.Applied = append(rc.Applied, AppliedIncentive{ID: in.ID, Name: in.Name, Kind: in.Kind, Value: in.Value})
		case IncentiveMultiplier:
			if in.Value > rc.Multiplier {
				rc.Multiplier = in.Value
				best = len(rc.Applied)
				rc.Applied = append(rc.Applied, AppliedIncentive{ID: in.ID, Name: in.Name, Kind: in.Kind, Value: in.Value})
			}
		}
	}
	// Only the winning multiplier is recorded.
	if best >= 0 {
		out := rc.Applied[:0:0]
		for i, a := range rc.Applied {
			if a.Kind != IncentiveMultiplier || i == best {
				out = append(out, a)
			}
		}
		rc.Applied = out
	}
	return rc
}

// None reports whether the change leaves a commission as it is.
func (rc RateChange) None() bool { return rc.Boost == 0 && rc.Multiplier == PerMille }

// ApplyIncentives recomputes a commission Compute produced under the campaigns' change: for
// a percent program the rate becomes min(rate + Boost, 100%) of the base, for a flat one the
// flat value stays (boosts are refused on flat programs); then the Multiplier, in one exact
// half-even rounding, and never more than the sale for a percent program. A result that
// earned nothing (recurring policy, zero rate) stays nothing.
func ApplyIncentives(res Result, p Program, rc RateChange) (Result, error) {
	if rc.None() || res.Amount <= 0 {
		return res, nil
	}
	if rc.Multiplier < PerMille || rc.Multiplier > MaxMultiplier || rc.Boost < 0 {
		return res, fmt.Errorf("%w: incentive boost %d, multiplier %d", ErrInvalidProgram, rc.Boost, rc.Multiplier)
	}
	e := res.Rule
	e.Boost, e.Incentives = rc.Boost, rc.Applied
	if rc.Multiplier != PerMille {
		e.Multiplier = rc.Multiplier
	}
	var amount int64
	if p.CommissionType == TypePercent {
		rate := min(e.Value+rc.Boost, MaxPercentBP)
		amount = min(money.MulDivHalfEven(e.Base, rate*rc.Multiplier, MaxPercentBP*PerMille), e.Base)
	} else {
		amount = min(money.MulDivHalfEven(e.Value, rc.Multiplier, PerMille), MaxAmount)
	}
	return Result{Amount: amount, Rule: e}, nil
}

// Progress is an affiliate's count in a campaign so far.
type Progress struct {
	Sales   int64 `json:"sales"`
	Revenue int64 `json:"revenue"`
}

// TargetReached reports whether a target bonus campaign's target is met by p.
func (in Incentive) TargetReached(p Progress) bool {
	if in.Kind != IncentiveTargetBonus || in.Target <= 0 {
		return false
	}
	if in.TargetKind == TargetRevenue {
		return p.Revenue >= in.Target
	}
	return p.Sales >= in.Target
}

// BonusedSales is how many sales of a per-sale bonus campaign earn the bonus with p.Sales
// sales so far: those beyond the threshold.
func (in Incentive) BonusedSales(p Progress) int64 {
	if in.Kind != IncentivePerSaleBonus {
		return 0
	}
	return max(0, p.Sales-in.Threshold)
}
