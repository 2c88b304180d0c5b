package hooks

import (
	"fmt"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// incentiveKeyPrefix starts the key of a campaign's announcement: incentive:<incentive>:<affiliate>.
const incentiveKeyPrefix = "incentive:"

// incentiveMails announces each campaign once, when it starts, to the affiliates it is for.
// It runs in the mail worker's passes, under the mail lease, so one process announces; the
// deliveries' keys make a pass that dies half-way harmless to repeat. The announcement is
// marketing mail: the worker skips affiliates with preferred_channel none and suppressed
// addresses, recording why.
type incentiveMails struct {
	app    core.App
	outbox *mailOutbox
	now    func() time.Time
}

func newIncentiveMails(app core.App, outbox *mailOutbox, now func() time.Time) *incentiveMails {
	return &incentiveMails{app: app, outbox: outbox, now: now}
}

// queueStarted queues the announcements of the active campaigns that have started, have not
// ended and were not announced yet, then marks each announced.
func (m *incentiveMails) queueStarted() error {
	now := m.now().UTC()
	recs, err := m.app.FindAllRecords(collections.Incentives,
		dbx.HashExp{collections.IncentiveActive: true},
		dbx.NewExp("([[announced_at]] = '' OR [[announced_at]] IS NULL) AND [[starts_at]] <= {:now} AND [[ends_at]] > {:now}",
			dbx.Params{"now": store.DBTime(now)}))
	if err != nil {
		return fmt.Errorf("started incentives: %w", err)
	}
	for _, r := range recs {
		if err := m.announce(incentiveOf(r), r.GetString(collections.FieldProgram), now); err != nil {
			return err
		}
	}
	return nil
}

// announce queues one campaign's mail to each eligible approved affiliate of its program.
func (m *incentiveMails) announce(in rules.Incentive, program string, now time.Time) error {
	last := ""
	for {
		var page []struct {
			ID    string `db:"id"`
			Email string `db:"email"`
			Tier  string `db:"tier"`
		}
		err := m.app.DB().Select("id", "email", "tier").From(collections.Affiliates).
			Where(dbx.HashExp{collections.FieldProgram: program, collections.FieldStatus: collections.AffiliateApproved}).
			AndWhere(dbx.NewExp("[[id]] > {:last}", dbx.Params{"last": last})).
			OrderBy("id").Limit(messagingInsertChunk).All(&page)
		if err != nil {
			return fmt.Errorf("audience of incentive %s: %w", in.ID, err)
		}
		err = m.app.RunInTransaction(func(tx core.App) error {
			for _, a := range page {
				if a.Email == "" || !in.Eligible(a.ID, a.Tier) {
					continue
				}
				if _, err := m.outbox.enqueue(tx.DB(), deliveryRow{Affiliate: a.ID, Email: a.Email, Template: templateIncentiveStarted,
					Status: collections.DeliveryQueued, IdempotencyKey: incentiveKeyPrefix + in.ID + ":" + a.ID, Marketing: true}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("announce incentive %s: %w", in.ID, err)
		}
		if len(page) < messagingInsertChunk {
			break
		}
		last = page[len(page)-1].ID
	}
	_, err := m.app.DB().NewQuery("UPDATE {{incentives}} SET [[announced_at]] = {:now} WHERE [[id]] = {:id}").
		Bind(dbx.Params{"now": store.DBTime(now), "id": in.ID}).Execute()
	if err != nil {
		return fmt.Errorf("mark incentive %s announced: %w", in.ID, err)
	}
	return nil
}

// mailIncentive is a campaign as its announcement shows it.
type mailIncentive struct {
	Name        string
	Description string
	Offer       string // what it pays, in words: "+5 percentage points on your commission rate"
	Starts      string // in the program's time zone: "1 Dec 2026 00:00 CET"
	Ends        string
}

// incentiveMailData fills in the campaign of an announcement's key; a campaign deleted or
// switched off since is not announced.
func (mc *mailContent) incentiveMailData(r deliveryRow, d *mailData) (string, error) {
	id, _, _ := strings.Cut(strings.TrimPrefix(r.IdempotencyKey, incentiveKeyPrefix), ":")
	rec, err := mc.app.FindRecordById(collections.Incentives, id)
	if err != nil {
		return "campaign deleted", nil
	}
	if !rec.GetBool(collections.IncentiveActive) {
		return "campaign switched off", nil
	}
	p, err := collections.FindProgram(mc.app, rec.GetString(collections.FieldProgram))
	if err != nil {
		return "", fmt.Errorf("program of incentive %s: %w", id, err)
	}
	in := incentiveOf(rec)
	loc, err := time.LoadLocation(programTimezone(p.Record))
	if err != nil {
		loc = time.UTC
	}
	const layout = "2 Jan 2006 15:04 MST"
	d.Incentive = mailIncentive{Name: in.Name, Description: rec.GetString(collections.IncentiveDescription),
		Offer: incentiveOffer(in, p.Currency()), Starts: in.StartsAt.In(loc).Format(layout), Ends: in.EndsAt.In(loc).Format(layout)}
	return "", nil
}

// incentiveOffer says in words what a campaign pays.
func incentiveOffer(in rules.Incentive, currency string) string {
	switch in.Kind {
	case rules.IncentiveRateBoost:
		return "+" + decimalOf(in.Value, 100) + " percentage points on your commission rate"
	case rules.IncentiveMultiplier:
		return "your commission ×" + decimalOf(in.Value, rules.PerMille)
	case rules.IncentivePerSaleBonus:
		if in.Threshold == 0 {
			return money.FormatWithCode(in.Bonus, currency) + " extra for every sale"
		}
		return fmt.Sprintf("%s extra for every sale after your first %d", money.FormatWithCode(in.Bonus, currency), in.Threshold)
	case rules.IncentiveTargetBonus:
		if in.TargetKind == rules.TargetRevenue {
			return fmt.Sprintf("%s bonus when your sales reach %s", money.FormatWithCode(in.Bonus, currency), money.FormatWithCode(in.Target, currency))
		}
		return fmt.Sprintf("%s bonus when you reach %d sales", money.FormatWithCode(in.Bonus, currency), in.Target)
	}
	return ""
}

// decimalOf writes v/unit (unit 100 or 1000) without trailing zeros: 550/100 is "5.5".
func decimalOf(v, unit int64) string {
	digits := len(fmt.Sprint(unit)) - 1
	s := fmt.Sprintf("%d.%0*d", v/unit, digits, v%unit)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}
