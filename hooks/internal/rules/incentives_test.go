package rules

import (
	"strings"
	"testing"
	"time"
)

func TestIncentiveCoversIsHalfOpen(t *testing.T) {
	start := time.Date(2026, 3, 27, 23, 0, 0, 0, time.UTC)
	in := Incentive{StartsAt: start, EndsAt: start.Add(47 * time.Hour)}
	for at, want := range map[time.Time]bool{
		start.Add(-time.Nanosecond): false, start: true, in.EndsAt.Add(-time.Nanosecond): true, in.EndsAt: false,
	} {
		if in.Covers(at) != want {
			t.Errorf("Covers(%v) = %v", at, !want)
		}
	}
}

func TestIncentiveEligible(t *testing.T) {
	tiers := Incentive{Eligibility: EligibleTiers, Tiers: []string{"gold"}}
	chosen := Incentive{Eligibility: EligibleAffiliates, Affiliates: []string{"a"}}
	switch {
	case !(Incentive{Eligibility: EligibleAll}).Eligible("x", ""):
		t.Error("all")
	case !tiers.Eligible("x", "gold"), tiers.Eligible("x", ""), tiers.Eligible("x", "silver"):
		t.Error("tiers")
	case !chosen.Eligible("a", ""), chosen.Eligible("b", "gold"):
		t.Error("affiliates")
	case (Incentive{Eligibility: "bogus"}).Eligible("a", ""):
		t.Error("unknown eligibility admits")
	}
}

func TestCheckIncentive(t *testing.T) {
	start := time.Now()
	ok := Incentive{Kind: IncentiveRateBoost, Value: 500, StartsAt: start, EndsAt: start.Add(time.Hour), Eligibility: EligibleAll}
	if errs := CheckIncentive(ok, TypePercent); errs != nil {
		t.Fatalf("valid boost refused: %v", errs)
	}
	for field, in := range map[string]Incentive{
		"ends_at":     {Kind: IncentiveRateBoost, Value: 500, StartsAt: start, EndsAt: start},
		"value":       {Kind: IncentiveMultiplier, Value: 1000, StartsAt: start, EndsAt: start.Add(time.Hour)},
		"bonus":       {Kind: IncentivePerSaleBonus, StartsAt: start, EndsAt: start.Add(time.Hour)},
		"target_kind": {Kind: IncentiveTargetBonus, Bonus: 1, Target: 1, StartsAt: start, EndsAt: start.Add(time.Hour)},
		"tiers":       {Kind: IncentiveMultiplier, Value: 1500, Eligibility: EligibleTiers, StartsAt: start, EndsAt: start.Add(time.Hour)},
	} {
		if errs := CheckIncentive(in, TypePercent); errs[field] == "" {
			t.Errorf("%s not refused: %v", field, errs)
		}
	}
	if errs := CheckIncentive(ok, TypeFlat); !strings.Contains(errs["kind"], "flat") {
		t.Errorf("rate boost on a flat program: %v", errs)
	}
}

// Boosts add up, the largest multiplier wins, and the result is rounded once, half to even,
// never above the sale (percent) nor MaxAmount (flat).
func TestApplyIncentives(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	window := func(kind string, v int64) Incentive {
		return Incentive{ID: kind, Kind: kind, Value: v, StartsAt: at.Add(-time.Hour), EndsAt: at.Add(time.Hour), Eligibility: EligibleAll}
	}
	list := []Incentive{window(IncentiveRateBoost, 500), window(IncentiveRateBoost, 250), window(IncentiveMultiplier, 1200),
		window(IncentiveMultiplier, 1500), window(IncentivePerSaleBonus, 0)}
	rc := RateChangeFor(list, "a", "", at)
	if rc.Boost != 750 || rc.Multiplier != 1500 || len(rc.Applied) != 3 {
		t.Fatalf("rate change %+v", rc)
	}
	percent := Program{CommissionType: TypePercent, CommissionValue: 2000, Currency: "usd"}
	base, _ := Compute(Conversion{Amount: 333, Currency: "usd", PaymentNumber: 1}, percent, Affiliate{}, nil, Performance{})
	got, err := ApplyIncentives(base, percent, rc)
	// 333 × 27.5% × 1.5 = 137.3625 → 137.
	if err != nil || got.Amount != 137 || got.Rule.Boost != 750 || got.Rule.Multiplier != 1500 || got.Rule.Value != 2000 {
		t.Fatalf("percent: %+v %v", got, err)
	}
	capped, _ := ApplyIncentives(Result{Amount: 9000, Rule: Explanation{Value: 9000, Base: 10000}}, percent, RateChange{Boost: 2000, Multiplier: 2000})
	if capped.Amount != 10000 {
		t.Fatalf("capped at the sale: %d", capped.Amount)
	}
	flat := Program{CommissionType: TypeFlat, CommissionValue: 500, Currency: "usd"}
	f, _ := ApplyIncentives(Result{Amount: 500, Rule: Explanation{Value: 500, Base: 10000}}, flat, RateChange{Multiplier: 1500})
	if f.Amount != 750 {
		t.Fatalf("flat ×1.5: %d", f.Amount)
	}
	if none, _ := ApplyIncentives(Result{Rule: Explanation{Note: NoteFirstOnly}}, percent, rc); none.Amount != 0 || none.Rule.Boost != 0 {
		t.Fatalf("a commission of nothing stays nothing: %+v", none)
	}
	if out := RateChangeFor(list, "a", "", at.Add(time.Hour)); !out.None() {
		t.Fatalf("after the window: %+v", out)
	}
}

func TestBonusCounts(t *testing.T) {
	perSale := Incentive{Kind: IncentivePerSaleBonus, Threshold: 2}
	target := Incentive{Kind: IncentiveTargetBonus, TargetKind: TargetRevenue, Target: 10000}
	if perSale.BonusedSales(Progress{Sales: 2}) != 0 || perSale.BonusedSales(Progress{Sales: 5}) != 3 {
		t.Error("per-sale")
	}
	if target.TargetReached(Progress{Sales: 99, Revenue: 9999}) || !target.TargetReached(Progress{Revenue: 10000}) {
		t.Error("revenue target")
	}
}
