package hooks

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// registerIncentives validates campaigns on every save (the dashboard, the back office, any
// code): dates, values in their unit, eligibility pickers of the campaign's own program, a
// rate boost only on a percent program. announced_at belongs to the mail worker.
func registerIncentives(app core.App) {
	app.OnRecordValidate(collections.Incentives).BindFunc(func(e *core.RecordEvent) error {
		if err := validateIncentive(e.App, e.Record); err != nil {
			return err
		}
		return e.Next()
	})
	app.OnRecordUpdate(collections.Incentives).BindFunc(func(e *core.RecordEvent) error {
		// A form loaded before the announcement cannot clear it (and so cannot make it look
		// unannounced); deliveries are keyed per campaign and affiliate anyway.
		if stored, err := e.App.FindRecordById(collections.Incentives, e.Record.Id); err == nil {
			e.Record.Set(collections.IncentiveAnnouncedAt, stored.Get(collections.IncentiveAnnouncedAt))
		}
		return e.Next()
	})
}

// validateIncentive checks what the schema cannot, each refusal naming its field.
func validateIncentive(app core.App, r *core.Record) error {
	program, err := collections.FindProgram(app, r.GetString(collections.FieldProgram))
	if err != nil {
		return validation.Errors{collections.FieldProgram: validation.NewError("not_found", "Unknown program.")}
	}
	if r.GetString(collections.IncentiveEligibility) == "" {
		r.Set(collections.IncentiveEligibility, rules.EligibleAll)
	}
	in := incentiveOf(r)
	errs := validation.Errors{}
	for field, msg := range rules.CheckIncentive(in, program.CommissionType()) {
		errs[field] = validation.NewError("invalid", msg)
	}
	// Eligibility pickers: only what the chosen eligibility uses is kept, and it must be of
	// the campaign's program.
	switch in.Eligibility {
	case rules.EligibleTiers:
		r.Set(collections.IncentiveAffiliates, []string{})
		if n, err := countInProgram(app, collections.Tiers, in.Tiers, program.Id); err != nil || n != len(in.Tiers) {
			errs[collections.IncentiveTiers] = validation.NewError("program_mismatch", "Every tier must belong to the campaign's program.")
		}
	case rules.EligibleAffiliates:
		r.Set(collections.IncentiveTiers, []string{})
		if n, err := countInProgram(app, collections.Affiliates, in.Affiliates, program.Id); err != nil || n != len(in.Affiliates) {
			errs[collections.IncentiveAffiliates] = validation.NewError("program_mismatch", "Every affiliate must belong to the campaign's program.")
		}
	default:
		r.Set(collections.IncentiveTiers, []string{})
		r.Set(collections.IncentiveAffiliates, []string{})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// countInProgram counts how many of ids are rows of collection in program.
func countInProgram(app core.App, collection string, ids []string, program string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	recs, err := app.FindRecordsByIds(collection, ids)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, rec := range recs {
		if rec.GetString(collections.FieldProgram) == program {
			n++
		}
	}
	return n, nil
}

// incentiveOf converts a campaign record for the pure rules.
func incentiveOf(r *core.Record) rules.Incentive {
	return rules.Incentive{
		ID: r.Id, Name: r.GetString(collections.FieldName), Kind: r.GetString(collections.IncentiveKind),
		Value: int64(r.GetInt(collections.IncentiveValue)), Threshold: int64(r.GetInt(collections.IncentiveThreshold)),
		TargetKind: r.GetString(collections.IncentiveTargetKind), Target: int64(r.GetInt(collections.IncentiveTarget)),
		Bonus:    int64(r.GetInt(collections.IncentiveBonus)),
		StartsAt: r.GetDateTime(collections.IncentiveStartsAt).Time(), EndsAt: r.GetDateTime(collections.IncentiveEndsAt).Time(),
		Eligibility: r.GetString(collections.IncentiveEligibility),
		Tiers:       r.GetStringSlice(collections.IncentiveTiers), Affiliates: r.GetStringSlice(collections.IncentiveAffiliates),
	}
}

// programIncentives returns a program's active campaigns of the given kinds that have not
// ended before since (zero: all), as records.
func programIncentives(app core.App, program string, since time.Time, kinds ...string) ([]*core.Record, error) {
	exp := []dbx.Expression{dbx.HashExp{collections.FieldProgram: program, collections.IncentiveActive: true}}
	if len(kinds) > 0 {
		in := make([]any, len(kinds))
		for i, k := range kinds {
			in[i] = k
		}
		exp = append(exp, dbx.In(collections.IncentiveKind, in...))
	}
	if !since.IsZero() {
		exp = append(exp, dbx.NewExp("[["+collections.IncentiveEndsAt+"]] > {:since}", dbx.Params{"since": store.DBTime(since)}))
	}
	recs, err := app.FindAllRecords(collections.Incentives, exp...)
	if err != nil {
		return nil, fmt.Errorf("incentives of program %s: %w", program, err)
	}
	return recs, nil
}

// activeIncentiveRate is what the rate-changing campaigns running at `at` do to the
// affiliate's rate, for showing it (the portal's terms): rateBoostBP basis points added to a
// percent rate, then the commission multiplied by multiplierPermille (1000 = ×1, none), and
// the names of the campaigns. The engine applies the same rules.RateChangeFor to each sale's
// occurred_at.
func activeIncentiveRate(app core.App, affiliate *core.Record, at time.Time) (rateBoostBP int, multiplierPermille int, names []string, err error) {
	recs, err := programIncentives(app, affiliate.GetString(collections.FieldProgram), at, rules.IncentiveRateBoost, rules.IncentiveMultiplier)
	if err != nil {
		return 0, int(rules.PerMille), nil, err
	}
	list := make([]rules.Incentive, len(recs))
	for i, r := range recs {
		list[i] = incentiveOf(r)
	}
	rc := rules.RateChangeFor(list, affiliate.Id, affiliate.GetString(collections.AffiliateTier), at)
	for _, a := range rc.Applied {
		names = append(names, a.Name)
	}
	return int(rc.Boost), int(rc.Multiplier), names, nil
}

// incentiveProgress counts an affiliate's approved sales in a campaign and their revenue net
// of refunds, as they stand now.
func incentiveProgress(db dbx.Builder, affiliate, program string, in rules.Incentive) (rules.Progress, error) {
	var p rules.Progress
	err := db.NewQuery(`SELECT COUNT(*), IFNULL(SUM(amount - refunded_amount), 0) FROM conversions
		WHERE affiliate = {:a} AND program = {:p} AND status = 'approved' AND occurred_at >= {:from} AND occurred_at < {:to}`).
		Bind(dbx.Params{"a": affiliate, "p": program, "from": store.DBTime(in.StartsAt), "to": store.DBTime(in.EndsAt)}).
		Row(&p.Sales, &p.Revenue)
	if err != nil {
		return p, fmt.Errorf("progress in incentive %s: %w", in.ID, err)
	}
	return p, nil
}

// Refs of incentive bonuses: unique with (affiliate, kind = bonus), so each is paid once.
func incentiveTargetRef(incentive string) string { return "incentive:" + incentive + ":target" }
func incentiveSaleRef(incentive, conversion string) string {
	return "incentive:" + incentive + ":sale:" + conversion
}

// incentiveKey is a campaign and an affiliate whose bonuses a batch evaluates.
type incentiveKey struct{ incentive, affiliate string }

// bonusTodo is a bonus campaign a batch's sale counts toward.
type bonusTodo struct {
	in      rules.Incentive
	program *programRules
	id      string // program id
}

// payIncentiveBonuses pays what one affiliate has earned so far in one bonus campaign, in
// the engine batch's transaction tx: the bonuses commit with the commissions of the sales
// that earned them or not at all, so a crash leaves nothing to recover and the next run
// counts again. Each bonus is keyed by its ref (unique with affiliate and kind), so re-runs
// pay each exactly once.
func payIncentiveBonuses(tx core.App, st *engineStats, todo bonusTodo, affiliate rules.Affiliate, now time.Time) error {
	in := todo.in
	if !in.Eligible(affiliate.ID, affiliate.TierID) {
		return nil
	}
	progress, err := incentiveProgress(tx.DB(), affiliate.ID, todo.id, in)
	if err != nil {
		return err
	}
	// Held until the campaign is over (and the program's hold after it), so an admin sees
	// refunds and rejections of the counted sales before the bonus can be paid.
	payable := heldFrom(now, in.EndsAt).AddDate(0, 0, todo.program.holdDays)
	pay := func(ref, rule string) error {
		return insertBonus(tx, st, bonusRow{affiliate: affiliate.ID, program: todo.id, currency: todo.program.rules.Currency, amount: in.Bonus,
			payableAt: payable, ref: ref, rule: rule, note: in.Name, now: now})
	}
	switch in.Kind {
	case rules.IncentiveTargetBonus:
		if !in.TargetReached(progress) {
			return nil
		}
		return pay(incentiveTargetRef(in.ID), fmt.Sprintf(`{"incentive":%q,"kind":%q,"target_kind":%q,"target":%d,"sales":%d,"revenue":%d}`,
			in.ID, in.Kind, in.TargetKind, in.Target, progress.Sales, progress.Revenue))
	case rules.IncentivePerSaleBonus:
		if in.BonusedSales(progress) == 0 {
			return nil
		}
		// The sales beyond the threshold, in the order they occurred.
		var sales []string
		err := tx.DB().NewQuery(`SELECT id FROM conversions
			WHERE affiliate = {:a} AND program = {:p} AND status = 'approved' AND occurred_at >= {:from} AND occurred_at < {:to}
			ORDER BY occurred_at, id LIMIT -1 OFFSET {:skip}`).
			Bind(dbx.Params{"a": affiliate.ID, "p": todo.id, "from": store.DBTime(in.StartsAt), "to": store.DBTime(in.EndsAt), "skip": in.Threshold}).
			Column(&sales)
		if err != nil {
			return fmt.Errorf("sales of incentive %s: %w", in.ID, err)
		}
		for i, sale := range sales {
			rule := fmt.Sprintf(`{"incentive":%q,"kind":%q,"sale":%q,"number":%d,"threshold":%d}`, in.ID, in.Kind, sale, in.Threshold+int64(i)+1, in.Threshold)
			if err := pay(incentiveSaleRef(in.ID, sale), rule); err != nil {
				return err
			}
		}
	}
	return nil
}

// bonusRow is one bonus commission (milestone or incentive).
type bonusRow struct {
	affiliate, program, currency string
	amount                       int64
	payableAt, now               time.Time
	ref, rule, note              string
}

// insertBonus writes a pending bonus unless its ref was paid before, with its count in
// commission_totals, in one transaction (st.Bonuses counts the new ones).
func insertBonus(app core.App, st *engineStats, b bonusRow) error {
	id := store.NewOrderedID(b.now)
	return app.RunInTransaction(func(tx core.App) error {
		res, err := tx.DB().NewQuery(`INSERT INTO commissions (id, affiliate, program, conversion, kind, amount, currency, status,
			payable_at, payout, rule, ref, note, created, updated) VALUES ({:id}, {:a}, {:p}, '', 'bonus', {:amount}, {:cur}, 'pending',
			{:payable}, '', {:rule}, {:ref}, {:note}, {:now}, {:now}) ON CONFLICT (affiliate, kind, ref) WHERE ref != '' DO NOTHING`).Bind(dbx.Params{
			"id": id, "a": b.affiliate, "p": b.program, "amount": b.amount, "cur": b.currency,
			"payable": store.DBTime(b.payableAt), "rule": b.rule, "ref": b.ref, "note": b.note, "now": store.DBTime(b.now),
		}).Execute()
		if err != nil {
			return fmt.Errorf("insert bonus %s: %w", b.ref, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil // paid before
		}
		st.Bonuses++
		if err := newEventEmitter(tx).emitRecord(eventCommissionCreated, collections.Commissions, id); err != nil {
			return err
		}
		return store.AddCommissionTotals(tx, map[store.TotalsKey]store.TotalsDelta{
			{Program: b.program, Currency: b.currency, Status: collections.CommissionPending}: {Amount: b.amount, Count: 1}})
	})
}

// incentiveItem is one campaign as GET /api/pba/incentives shows it to an affiliate.
type incentiveItem struct {
	ID          string         `json:"id"`
	Program     string         `json:"program"`
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Kind        string         `json:"kind"`
	Value       int64          `json:"value"`
	Threshold   int64          `json:"threshold"`
	TargetKind  string         `json:"target_kind"`
	Target      int64          `json:"target"`
	Bonus       int64          `json:"bonus"`
	Currency    string         `json:"currency"`
	StartsAt    string         `json:"starts_at"`
	EndsAt      string         `json:"ends_at"`
	Timezone    string         `json:"timezone"`
	State       string         `json:"state"`
	Progress    rules.Progress `json:"progress"`
	Earned      bool           `json:"earned"`
	Bonuses     int64          `json:"bonuses"` // bonus commissions earned so far (not void), minor units
}

// handleIncentives answers GET /api/pba/incentives: the signed-in affiliate's active and
// upcoming campaigns (those it is eligible for), soonest end first, with its progress.
func handleIncentives(e *core.RequestEvent) error {
	a := e.Auth
	program, err := collections.FindProgram(e.App, a.GetString(collections.FieldProgram))
	if err != nil {
		return e.JSON(http.StatusOK, map[string]any{"items": []incentiveItem{}})
	}
	now := time.Now().UTC()
	recs, err := programIncentives(e.App, program.Id, now)
	if err != nil {
		return err
	}
	items := make([]incentiveItem, 0, len(recs))
	for _, r := range recs {
		in := incentiveOf(r)
		if !in.Eligible(a.Id, a.GetString(collections.AffiliateTier)) {
			continue
		}
		item := incentiveItem{ID: in.ID, Program: program.Id, Name: in.Name, Description: r.GetString(collections.IncentiveDescription),
			Kind: in.Kind, Value: in.Value, Threshold: in.Threshold, TargetKind: in.TargetKind, Target: in.Target, Bonus: in.Bonus,
			Currency: program.Currency(), StartsAt: in.StartsAt.UTC().Format(time.RFC3339), EndsAt: in.EndsAt.UTC().Format(time.RFC3339),
			Timezone: programTimezone(program.Record), State: "upcoming"}
		if in.Covers(now) {
			item.State = "active"
		}
		if item.State == "active" {
			if item.Progress, err = incentiveProgress(e.App.DB(), a.Id, program.Id, in); err != nil {
				return err
			}
		}
		if in.Kind == rules.IncentivePerSaleBonus || in.Kind == rules.IncentiveTargetBonus {
			err := e.App.DB().NewQuery(`SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE affiliate = {:a} AND kind = 'bonus'
				AND status != 'void' AND ref LIKE {:prefix}`).Bind(dbx.Params{"a": a.Id, "prefix": "incentive:" + in.ID + ":%"}).Row(&item.Bonuses)
			if err != nil {
				return fmt.Errorf("bonuses of incentive %s: %w", in.ID, err)
			}
			item.Earned = item.Bonuses > 0
		}
		items = append(items, item)
	}
	slices.SortFunc(items, func(x, y incentiveItem) int {
		return cmp.Or(cmp.Compare(x.StartsAt, y.StartsAt), cmp.Compare(x.ID, y.ID))
	})
	return e.JSON(http.StatusOK, map[string]any{"items": items})
}

// programTimezone is the program's IANA zone, UTC when unset.
func programTimezone(p *core.Record) string {
	if tz := strings.TrimSpace(p.GetString(collections.ProgramTimezone)); tz != "" {
		return tz
	}
	return "UTC"
}
