package hooks

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// Key prefixes of deliveries whose content is read back when they are sent.
const (
	// commissionKeyPrefix: commission:<affiliate>:<UTC hour as 2006010215>, one mail per
	// affiliate and hour listing the commissions created in that hour.
	commissionKeyPrefix = "commission:"
	// tierKeyPrefix: tier:<tier_changes id>.
	tierKeyPrefix = "tier:"
	// digestKeyPrefix: digest:<affiliate>:<local date the week started>.
	digestKeyPrefix = "digest:"
	// actionKeyPrefix: action:<affiliate>:<payout run>, the payout_failed mail of a balance a
	// run could not pay because the affiliate has to act (Stripe onboarding).
	actionKeyPrefix = "action:"
)

// actionNeeded is what an action-needed mail reports, frozen on its delivery.
type actionNeeded struct {
	Amount string `json:"amount"`
	Reason string `json:"reason"`
}

// queueActionNeeded tells an affiliate, once per payout run, that a balance waits for them
// to finish Stripe onboarding. Payout mail: preferences never stop it.
func queueActionNeeded(db dbx.Builder, b balance, runID, reason string, now time.Time) error {
	if b.Email == "" {
		return nil
	}
	raw, err := json.Marshal(actionNeeded{Amount: formatMoney(b.Amount, b.Currency), Reason: reason})
	if err != nil {
		return fmt.Errorf("encode action-needed mail: %w", err)
	}
	_, err = insertDelivery(db, deliveryRow{
		Affiliate: b.Affiliate, Email: b.Email, Template: templatePayoutFailed, Status: collections.DeliveryQueued,
		IdempotencyKey: actionKeyPrefix + b.Affiliate + ":" + runID, Data: string(raw),
	}, now)
	return err
}

// Tunables of the new-commission mail.
const (
	// commissionMailLookback is how far back the first scan after a start looks, so mails of
	// the hours around a restart are still queued.
	commissionMailLookback = 24 * time.Hour
	// commissionMailOverlap re-reads the tail of the previous scan: a batch transaction can
	// commit a little after the time stamped on its rows.
	commissionMailOverlap = 15 * time.Minute
	// commissionHourLayout is the hour in keys.
	commissionHourLayout = "2006010215"
)

// earnedKinds are the commission kinds an affiliate is told about as new earnings.
const earnedKinds = "'sale', 'recurring', 'bonus'"

// queueCommissionMails queues one new_commission mail per affiliate and UTC hour with new
// positive commissions, due when the hour ends: at most one such mail per affiliate per hour,
// listing everything of that hour. The engine writes commissions with raw SQL (no record
// hooks), so this scans them: ids are time-ordered (newOrderedID), so the scan is a range of
// the primary key since the last scan. Idempotency keys make rescans harmless.
func (e *messagingEngine) queueCommissionMails() error {
	now := e.now()
	from := e.commissionsSeen
	if from.IsZero() {
		from = now.Add(-commissionMailLookback)
	}
	lo := from.Add(-commissionMailOverlap)
	var rows []struct {
		Affiliate string `db:"affiliate"`
		Hour      string `db:"hour"`
	}
	err := e.app.DB().NewQuery(
		"SELECT [[affiliate]], substr([[created]], 1, 13) AS [[hour]] FROM {{commissions}} " +
			"WHERE [[id]] >= {:lo} AND [[created]] >= {:since} AND [[kind]] IN (" + earnedKinds + ") AND [[amount]] > 0 " +
			"GROUP BY [[affiliate]], [[hour]]").
		Bind(dbx.Params{"lo": orderedIDFloor(lo), "since": webhookDBTime(lo)}).All(&rows)
	if err != nil {
		return fmt.Errorf("scan new commissions: %w", err)
	}
	if len(rows) > 0 {
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = r.Affiliate
		}
		emails, err := affiliateEmails(e.app, ids)
		if err != nil {
			return err
		}
		for _, r := range rows {
			hour, err := time.Parse("2006-01-02 15", r.Hour)
			if err != nil || emails[r.Affiliate] == "" {
				continue
			}
			_, err = insertDelivery(e.app.DB(), deliveryRow{
				Affiliate: r.Affiliate, Email: emails[r.Affiliate], Template: templateNewCommission, Status: collections.DeliveryQueued,
				IdempotencyKey: commissionKeyPrefix + r.Affiliate + ":" + hour.Format(commissionHourLayout),
				Due:            hour.Add(time.Hour),
			}, now)
			if err != nil {
				return err
			}
		}
	}
	e.commissionsSeen = now
	return nil
}

// orderedIDFloor is the smallest newOrderedID of instant t: its ten time digits.
func orderedIDFloor(t time.Time) string {
	return newOrderedID(t)[:10]
}

// affiliateEmails maps affiliate ids to their emails.
func affiliateEmails(app core.App, ids []string) (map[string]string, error) {
	recs, err := app.FindRecordsByIds(collections.Affiliates, ids)
	if err != nil {
		return nil, fmt.Errorf("load affiliates: %w", err)
	}
	out := make(map[string]string, len(recs))
	for _, r := range recs {
		out[r.Id] = r.Email()
	}
	return out, nil
}

// commissionMailData lists the affiliate's commissions of the hour in the key; it returns a
// skip reason when none is left (all voided since).
func (e *messagingEngine) commissionMailData(r deliveryRow, d *mailData) (string, error) {
	rest := strings.TrimPrefix(r.IdempotencyKey, commissionKeyPrefix)
	_, hourText, _ := strings.Cut(rest, ":")
	hour, err := time.Parse(commissionHourLayout, hourText)
	if err != nil {
		return "", fmt.Errorf("bad commission mail key %q", r.IdempotencyKey)
	}
	var rows []struct {
		Amount   int64  `db:"amount"`
		Currency string `db:"currency"`
		Kind     string `db:"kind"`
		Created  string `db:"created"`
	}
	err = e.app.DB().NewQuery(
		"SELECT [[amount]], [[currency]], [[kind]], [[created]] FROM {{commissions}} " +
			"WHERE [[affiliate]] = {:a} AND [[created]] >= {:from} AND [[created]] < {:to} AND [[kind]] IN (" + earnedKinds + ") " +
			"AND [[amount]] > 0 AND [[status]] != {:void} ORDER BY [[created]], [[id]]").
		Bind(dbx.Params{"a": r.Affiliate, "from": webhookDBTime(hour), "to": webhookDBTime(hour.Add(time.Hour)), "void": collections.CommissionVoid}).
		All(&rows)
	if err != nil {
		return "", fmt.Errorf("commissions of mail %s: %w", r.IdempotencyKey, err)
	}
	if len(rows) == 0 {
		return "no commission left to report", nil
	}
	totals := map[string]int64{}
	for i, c := range rows {
		totals[c.Currency] += c.Amount
		if i < mailListMax {
			when := c.Created
			if t, err := time.Parse(dbTimeLayout, c.Created); err == nil {
				when = t.Format("2 Jan 15:04 UTC")
			}
			d.Commissions = append(d.Commissions, mailCommission{Amount: formatMoney(c.Amount, c.Currency), Kind: c.Kind, When: when})
		}
	}
	d.More = max(0, len(rows)-mailListMax)
	d.Total = formatTotals(totals)
	return "", nil
}

// dbTimeLayout is how PocketBase stores date fields.
const dbTimeLayout = "2006-01-02 15:04:05.000Z"

// formatMoney renders minor units with their currency: "12.50 USD".
func formatMoney(amount int64, currency string) string {
	return money.Format(amount, currency) + " " + strings.ToUpper(currency)
}

// formatTotals renders per-currency sums, joined in a stable order.
func formatTotals(totals map[string]int64) string {
	curs := make([]string, 0, len(totals))
	for c := range totals {
		curs = append(curs, c)
	}
	sort.Strings(curs)
	parts := make([]string, len(curs))
	for i, c := range curs {
		parts[i] = formatMoney(totals[c], c)
	}
	return strings.Join(parts, ", ")
}

// queueTierLogged queues the tier_changed mail once per recorded move (tier_changes rows are
// saved as records, so this runs after their transaction committed).
func (e *messagingEngine) queueTierLogged(app core.App, move *core.Record) {
	affiliate, err := app.FindRecordById(collections.Affiliates, move.GetString(collections.FieldAffiliate))
	if err == nil && affiliate.Email() != "" {
		_, err = insertDelivery(app.DB(), deliveryRow{
			Affiliate: affiliate.Id, Email: affiliate.Email(), Template: templateTierChanged, Status: collections.DeliveryQueued,
			IdempotencyKey: tierKeyPrefix + move.Id,
		}, e.now())
	}
	if err != nil {
		app.Logger().Error("queue tier email", "tier_change", move.Id, "error", err)
		return
	}
	e.signal()
}

// tierMailData fills in the move of the key: tier names and whether it was a move up.
func (e *messagingEngine) tierMailData(r deliveryRow, d *mailData) error {
	id := strings.TrimPrefix(r.IdempotencyKey, tierKeyPrefix)
	move, err := e.app.FindRecordById(collections.TierChanges, id)
	if err != nil {
		return fmt.Errorf("tier change %s of a tier mail: %w", id, err)
	}
	fromName, fromRank := e.tierInfo(move.GetString(collections.TierChangeFromTier))
	toName, toRank := e.tierInfo(move.GetString(collections.TierChangeToTier))
	d.FromTier, d.ToTier, d.Reason = fromName, toName, move.GetString(collections.TierChangeReason)
	d.Promoted = toRank > fromRank
	return nil
}

// tierInfo is a tier's name and rank; no tier (or a deleted one) is "Standard", below all.
func (e *messagingEngine) tierInfo(id string) (string, int) {
	if id == "" {
		return "Standard", -1
	}
	t, err := e.app.FindRecordById(collections.Tiers, id)
	if err != nil {
		return "Standard", -1
	}
	return t.GetString(collections.FieldName), t.GetInt(collections.TierRank)
}

// digestMailData reads the report frozen on the delivery.
func digestMailData(r deliveryRow, d *mailData) error {
	if err := json.Unmarshal([]byte(r.Data), &d.Digest); err != nil {
		return fmt.Errorf("digest figures of %s: %w", r.IdempotencyKey, err)
	}
	return nil
}

// templateMailData adds what a delivery's template reports to d; a non-empty reason means
// the mail has nothing to say any more and is skipped.
func (e *messagingEngine) templateMailData(r deliveryRow, d *mailData) (string, error) {
	switch {
	case strings.HasPrefix(r.IdempotencyKey, payoutKeyPrefix):
		return "", e.payoutMailData(r.IdempotencyKey, d)
	case strings.HasPrefix(r.IdempotencyKey, commissionKeyPrefix):
		return e.commissionMailData(r, d)
	case strings.HasPrefix(r.IdempotencyKey, tierKeyPrefix):
		return "", e.tierMailData(r, d)
	case strings.HasPrefix(r.IdempotencyKey, digestKeyPrefix):
		return "", digestMailData(r, d)
	case strings.HasPrefix(r.IdempotencyKey, actionKeyPrefix):
		var a actionNeeded
		if err := json.Unmarshal([]byte(r.Data), &a); err != nil {
			return "", fmt.Errorf("figures of %s: %w", r.IdempotencyKey, err)
		}
		d.Amount, d.Reason = a.Amount, a.Reason
	}
	return "", nil
}

// mailContext caches what the mails of one batch share (programs, templates).
type mailContext struct {
	templates map[string]lifecycleTemplate
	programs  map[string]*core.Record
}

// newMailContext loads the current templates.
func (e *messagingEngine) newMailContext() (*mailContext, error) {
	set, err := loadMailTemplates(e.app)
	if err != nil {
		return nil, err
	}
	return &mailContext{templates: set, programs: map[string]*core.Record{}}, nil
}

// program returns the affiliate's program, nil when it is gone.
func (c *mailContext) program(app core.App, id string) *core.Record {
	if p, ok := c.programs[id]; ok {
		return p
	}
	p, err := app.FindRecordById(collections.Programs, id)
	if err != nil {
		p = nil
	}
	c.programs[id] = p
	return p
}

// affiliateMailData is what every template sees of an affiliate: identity, links, program
// and balance.
func (e *messagingEngine) affiliateMailData(c *mailContext, a *core.Record) (mailData, error) {
	d := e.mailData(a)
	currency := ""
	if p := c.program(e.app, a.GetString(collections.FieldProgram)); p != nil {
		d.Program = p.GetString(collections.FieldName)
		currency = p.GetString(collections.FieldCurrency)
	}
	var links []struct {
		Code  string `db:"code"`
		Label string `db:"label"`
	}
	err := e.app.DB().Select("code", "label").From(collections.Links).
		Where(dbx.HashExp{"affiliate": a.Id}).OrderBy("created", "id").Limit(mailListMax).All(&links)
	if err != nil {
		return d, fmt.Errorf("links of %s: %w", a.Id, err)
	}
	base := strings.TrimSuffix(d.Link, "/r/"+d.Code)
	for _, l := range links {
		label := l.Label
		if label == "" {
			label = l.Code
		}
		d.Links = append(d.Links, mailLink{Label: label, URL: base + "/r/" + l.Code})
	}
	var sums []struct {
		Status   string `db:"status"`
		Currency string `db:"currency"`
		Total    int64  `db:"total"`
	}
	err = e.app.DB().Select("status", "currency", "SUM(amount) AS total").From(collections.Commissions).
		Where(dbx.HashExp{"affiliate": a.Id, "status": []any{collections.CommissionPending, collections.CommissionPayable}}).
		GroupBy("status", "currency").All(&sums)
	if err != nil {
		return d, fmt.Errorf("balance of %s: %w", a.Id, err)
	}
	pending, payable := map[string]int64{}, map[string]int64{}
	for _, s := range sums {
		if s.Status == collections.CommissionPending {
			pending[s.Currency] += s.Total
		} else {
			payable[s.Currency] += s.Total
		}
	}
	d.Balance = mailBalance{Pending: balanceText(pending, currency), Payable: balanceText(payable, currency)}
	return d, nil
}

// balanceText is a balance with a zero in the program's currency when there is none.
func balanceText(totals map[string]int64, currency string) string {
	if len(totals) == 0 {
		if currency == "" {
			return "0"
		}
		return formatMoney(0, currency)
	}
	return formatTotals(totals)
}
