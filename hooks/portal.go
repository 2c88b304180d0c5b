package hooks

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/questions"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Reasons a next payout pays nothing, as GET /api/pba/terms names them.
const (
	reasonNothingPayable = "nothing_payable"
	reasonBelowMinimum   = "below_minimum"
	reasonNotApproved    = "not_approved"
	reasonStripeSetup    = "stripe_onboarding_incomplete"
	reasonNoSchedule     = "no_schedule"
)

// portalTerms answers the portal's public apply page and the affiliate's own terms. The terms'
// next payout comes from the payout engine's own preview, so the portal and the back office
// can never disagree about what an affiliate will be paid.
type portalTerms struct {
	payouts *payoutEngine
}

// programTerms is what a visitor may know of a program: its name and terms, nothing internal
// (no secret, no destination, no domains).
func programTerms(p *collections.Program) map[string]any {
	return map[string]any{
		"id":               p.Id,
		"name":             p.GetString(collections.FieldName),
		"slug":             p.Slug(),
		"currency":         p.Currency(),
		"commission_type":  p.CommissionType(),
		"commission_value": p.CommissionValue(),
		"recurring":        p.GetString(collections.ProgramRecurring),
		"recurring_months": p.GetInt(collections.ProgramRecurringMonths),
		"cookie_days":      p.CookieDays(),
		"hold_days":        p.HoldDays(),
		"min_payout":       p.MinPayout(),
		"payout_schedule":  p.PayoutSchedule(),
		"auto_approve":     p.AutoApprove(),
		"timezone":         cmp.Or(strings.TrimSpace(p.GetString(collections.ProgramTimezone)), scheduleZone(p.PayoutSchedule())),
	}
}

// handleApply is GET /api/pba/apply/{slug}: the program an applicant joins, in plain data, with
// its questions. Inactive and unknown programs are the same 404.
func (pt *portalTerms) handleApply(re *core.RequestEvent) error {
	slug := strings.TrimSpace(re.Request.PathValue("slug"))
	recs, err := re.App.FindRecordsByFilter(collections.Programs, "slug = {:s} && active = true", "", 1, 0, dbx.Params{"s": slug})
	if err != nil {
		return re.InternalServerError("", err)
	}
	if len(recs) == 0 {
		return re.NotFoundError("No open program has this address.", fieldError("slug", "not_found", "Unknown or closed program."))
	}
	p, err := collections.AsProgram(recs[0])
	if err != nil {
		return re.InternalServerError("", err)
	}
	qs, err := programQuestions(re.App, p.Id)
	if err != nil {
		return re.InternalServerError("", err)
	}
	if qs == nil {
		qs = []questions.Question{}
	}
	return re.JSON(http.StatusOK, map[string]any{"program": programTerms(p), "questions": qs})
}

// handleTerms is GET /api/pba/terms for the signed-in affiliate: its rate as the commission
// engine would apply it (rules.Compute, with its override or tier), the program's windows and
// schedule, and the next payout as the payout preview computes it.
func (pt *portalTerms) handleTerms(re *core.RequestEvent) error {
	aff, err := collections.AsAffiliate(re.Auth)
	if err != nil {
		return re.ForbiddenError("Affiliates only.", nil)
	}
	p, err := collections.FindProgram(re.App, aff.ProgramID())
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("program of affiliate %s: %w", aff.Id, err))
	}
	rate, err := affiliateRate(re.App, p, aff, pt.payouts.now())
	if err != nil {
		return re.InternalServerError("", err)
	}
	var next []time.Time // a paused program runs no payouts
	if p.Active() {
		next, _ = nextRuns(p.PayoutSchedule(), pt.payouts.now(), scheduleRuns)
	}
	nextOut := make([]string, len(next))
	for i, t := range next {
		nextOut[i] = t.Format(time.RFC3339)
	}
	payout, err := pt.nextPayout(re.App, p, aff, next)
	if err != nil {
		return re.InternalServerError("", err)
	}
	return re.JSON(http.StatusOK, map[string]any{
		"program":        programTerms(p),
		"rate":           rate,
		"cookie_days":    p.CookieDays(),
		"hold_days":      p.HoldDays(),
		"min_payout":     p.MinPayout(),
		"schedule":       map[string]any{"spec": p.PayoutSchedule(), "timezone": scheduleZone(p.PayoutSchedule()), "next": nextOut},
		"next_payout":    payout,
		"stripe_enabled": pt.payouts.stripe,
	})
}

// termsRate is the rate an affiliate earns now and where it comes from.
type termsRate struct {
	Type   string `json:"type"`   // percent (value in basis points) or flat (minor units)
	Value  int64  `json:"value"`  // basis points or minor units, with the running campaigns applied
	Source string `json:"source"` // program, tier, override, or incentive when a campaign changes it
	Tier   string `json:"tier"`   // the tier's name when it sets the base rate
	// The rate without campaigns and where it comes from (program, tier, override).
	BaseValue  int64  `json:"base_value"`
	BaseSource string `json:"base_source"`
	// What the running campaigns do: basis points added, then a factor per mille (1000 = ×1).
	Boost      int64    `json:"boost"`
	Multiplier int64    `json:"multiplier"`
	Incentives []string `json:"incentives"`
}

// affiliateRate asks the commission engine what a sale at `at` would earn: rules.Compute
// (loaded as the engine loads it: override, tier or program), then the rate-changing campaigns
// running at `at` through rules.ApplyIncentives, as the engine applies them. The rate is the
// commission on a sale of MaxPercentBP minor units, which is the rate in basis points (rounded
// half-even, as the engine rounds, when a multiplier makes it fractional); a flat rate is the
// commission itself.
func affiliateRate(app core.App, p *collections.Program, aff *collections.Affiliate, at time.Time) (termsRate, error) {
	rc := newRuleContext(app)
	pr, err := rc.program(p.Id)
	if err != nil {
		return termsRate{}, fmt.Errorf("program rules: %w", err)
	}
	a := rules.Affiliate{ID: aff.Id, TierID: aff.TierID(), CommissionOverride: aff.CommissionOverride()}
	sale := rules.Conversion{Amount: rules.MaxPercentBP, Currency: pr.rules.Currency, Kind: rules.KindSale, PaymentNumber: 1, OccurredAt: at}
	res, err := rules.Compute(sale, pr.rules, a, pr.tiers, rules.Performance{})
	if err != nil {
		return termsRate{}, fmt.Errorf("rate of affiliate %s: %w", aff.Id, err)
	}
	out := termsRate{Type: res.Rule.Type, Value: res.Rule.Value, Source: res.Rule.Source, Tier: res.Rule.TierName,
		BaseValue: res.Rule.Value, BaseSource: res.Rule.Source, Multiplier: rules.PerMille, Incentives: []string{}}
	boost, mult, names, err := activeIncentiveRate(app, aff.Record, at)
	if err != nil {
		return termsRate{}, err
	}
	change := rules.RateChange{Boost: int64(boost), Multiplier: int64(mult)}
	if change.None() || res.Amount <= 0 {
		return out, nil
	}
	boosted, err := rules.ApplyIncentives(res, pr.rules, change)
	if err != nil {
		return termsRate{}, fmt.Errorf("incentives of affiliate %s: %w", aff.Id, err)
	}
	out.Value, out.Source = boosted.Amount, "incentive"
	out.Boost, out.Multiplier, out.Incentives = change.Boost, change.Multiplier, names
	return out, nil
}

// termsPayout is the affiliate's next payout: the payout preview's line for it.
type termsPayout struct {
	At       string `json:"at"` // RFC 3339; "" when the schedule never runs
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Eligible bool   `json:"eligible"`
	Reason   string `json:"reason"`
	// PendingByThen is the pending commission that becomes payable before At: not in Amount
	// (the preview pays what is payable now), shown so the affiliate knows what else is coming.
	PendingByThen int64 `json:"pending_by_then"`
}

// nextPayout runs the payout preview of the affiliate's program limited to its lines
// (payoutEngine.previewAffiliate: the code GET /api/pba/payouts/preview runs) and takes its line.
func (pt *portalTerms) nextPayout(app core.App, p *collections.Program, aff *collections.Affiliate, next []time.Time) (termsPayout, error) {
	out := termsPayout{Currency: p.Currency(), Reason: reasonNothingPayable}
	if len(next) == 0 {
		out.Reason = reasonNoSchedule
	} else {
		out.At = next[0].Format(time.RFC3339)
		err := app.DB().NewQuery(`SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE affiliate = {:a} AND program = {:p}
			AND status = 'pending' AND payable_at <= {:at}`).
			Bind(dbx.Params{"a": aff.Id, "p": p.Id, "at": store.DBTime(next[0])}).Row(&out.PendingByThen)
		if err != nil {
			return out, fmt.Errorf("pending by the next payout: %w", err)
		}
	}
	rep, err := pt.payouts.previewAffiliate(p.Id, aff.Id)
	if err != nil {
		return out, fmt.Errorf("payout preview: %w", err)
	}
	for _, l := range rep.Lines {
		if l.Affiliate != aff.Id || l.Currency != p.Currency() {
			continue
		}
		out.Amount = l.Amount
		switch l.Action {
		case actionPay:
			out.Eligible, out.Reason = true, ""
		case actionCarryForward:
			out.Reason = reasonBelowMinimum
		case actionSkip:
			out.Reason = reasonStripeSetup
			if !aff.IsApproved() {
				out.Reason = reasonNotApproved
			}
		}
	}
	if len(next) == 0 {
		out.Eligible, out.Reason = false, reasonNoSchedule
	}
	return out, nil
}
