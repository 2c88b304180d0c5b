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
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// mailContent is what the mails say, read when a delivery is sent: the affiliate's identity,
// links and balance that every template sees, and what the delivery's key points at (a
// payout, the commissions of an hour, a tier move, frozen digest figures). It only reads.
type mailContent struct {
	app       core.App
	publicURL string // PBA_PUBLIC_URL; empty: the dashboard's application URL
}

// newMailContent returns the content source of an app's mails.
func newMailContent(app core.App, publicURL string) *mailContent {
	return &mailContent{app: app, publicURL: publicURL}
}

// publicBase is the server's public URL without a trailing slash: PBA_PUBLIC_URL, else the
// dashboard's application URL.
func (mc *mailContent) publicBase() string {
	if mc.publicURL != "" {
		return strings.TrimRight(mc.publicURL, "/")
	}
	return strings.TrimRight(mc.app.Settings().Meta.AppURL, "/")
}

// mailData is the affiliate's identity as the templates see it.
func (mc *mailContent) mailData(a *core.Record) mailData {
	base := mc.publicBase()
	code := a.GetString(collections.FieldCode)
	return mailData{
		Name: a.GetString(collections.FieldName), Code: code, Email: a.Email(),
		Link: base + "/r/" + code, PortalURL: base + "/portal/",
	}
}

// mailContext caches what the mails of one batch share (programs, templates).
type mailContext struct {
	templates map[string]lifecycleTemplate
	programs  map[string]*core.Record
}

// newMailContext loads the current templates.
func (mc *mailContent) newMailContext() (*mailContext, error) {
	set, err := loadMailTemplates(mc.app)
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
func (mc *mailContent) affiliateMailData(c *mailContext, a *core.Record) (mailData, error) {
	d := mc.mailData(a)
	currency := ""
	if p := c.program(mc.app, a.GetString(collections.FieldProgram)); p != nil {
		d.Program = p.GetString(collections.FieldName)
		currency = p.GetString(collections.FieldCurrency)
	}
	var links []struct {
		Code  string `db:"code"`
		Label string `db:"label"`
	}
	err := mc.app.DB().Select("code", "label").From(collections.Links).
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
	balances, err := store.Balances(mc.app.DB(), a.Id)
	if err != nil {
		return d, err
	}
	pending, payable := map[string]int64{}, map[string]int64{}
	for _, b := range balances {
		if b.PendingN > 0 {
			pending[b.Currency] = b.Pending
		}
		if b.PayableN > 0 {
			payable[b.Currency] = b.Payable
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
		return money.FormatWithCode(0, currency)
	}
	return formatTotals(totals)
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
		parts[i] = money.FormatWithCode(totals[c], c)
	}
	return strings.Join(parts, ", ")
}

// templateMailData adds what a delivery's template reports to d; a non-empty reason means
// the mail has nothing to say any more and is skipped.
func (mc *mailContent) templateMailData(r deliveryRow, d *mailData) (string, error) {
	switch {
	case strings.HasPrefix(r.IdempotencyKey, payoutKeyPrefix):
		return "", mc.payoutMailData(r.IdempotencyKey, d)
	case strings.HasPrefix(r.IdempotencyKey, commissionKeyPrefix):
		return mc.commissionMailData(r, d)
	case strings.HasPrefix(r.IdempotencyKey, tierKeyPrefix):
		return "", mc.tierMailData(r, d)
	case strings.HasPrefix(r.IdempotencyKey, incentiveKeyPrefix):
		return mc.incentiveMailData(r, d)
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

// payoutMailData adds the payout's figures to d when the delivery is about a payout.
func (mc *mailContent) payoutMailData(key string, d *mailData) error {
	rest, ok := strings.CutPrefix(key, payoutKeyPrefix)
	if !ok {
		return nil
	}
	_, payoutID, _ := strings.Cut(rest, ":")
	p, err := mc.app.FindRecordById(collections.Payouts, payoutID)
	if err != nil {
		return fmt.Errorf("payout %s of a payout mail: %w", payoutID, err)
	}
	cur := p.GetString(collections.FieldCurrency)
	d.Amount = money.Format(int64(p.GetInt(collections.FieldAmount)), cur) + " " + strings.ToUpper(cur)
	d.Reference = p.GetString(collections.PayoutStripeTransferID)
	if d.Reference == "" {
		d.Reference = p.GetString("reference")
	}
	d.Reason = p.GetString(collections.PayoutError)
	return nil
}

// commissionMailData lists the affiliate's commissions of the hour in the key; it returns a
// skip reason when none is left (all voided since).
func (mc *mailContent) commissionMailData(r deliveryRow, d *mailData) (string, error) {
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
	err = mc.app.DB().NewQuery(
		"SELECT [[amount]], [[currency]], [[kind]], [[created]] FROM {{commissions}} " +
			"WHERE [[affiliate]] = {:a} AND [[created]] >= {:from} AND [[created]] < {:to} AND [[kind]] IN (" + earnedKinds + ") " +
			"AND [[amount]] > 0 AND [[status]] != {:void} ORDER BY [[created]], [[id]]").
		Bind(dbx.Params{"a": r.Affiliate, "from": store.DBTime(hour), "to": store.DBTime(hour.Add(time.Hour)), "void": collections.CommissionVoid}).
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
			if t, err := store.ParseDBTime(c.Created); err == nil {
				when = t.Format("2 Jan 15:04 UTC")
			}
			d.Commissions = append(d.Commissions, mailCommission{Amount: money.FormatWithCode(c.Amount, c.Currency), Kind: c.Kind, When: when})
		}
	}
	d.More = max(0, len(rows)-mailListMax)
	d.Total = formatTotals(totals)
	return "", nil
}

// tierMailData fills in the move of the key: tier names and whether it was a move up.
func (mc *mailContent) tierMailData(r deliveryRow, d *mailData) error {
	id := strings.TrimPrefix(r.IdempotencyKey, tierKeyPrefix)
	move, err := mc.app.FindRecordById(collections.TierChanges, id)
	if err != nil {
		return fmt.Errorf("tier change %s of a tier mail: %w", id, err)
	}
	fromName, fromRank := mc.tierInfo(move.GetString(collections.TierChangeFromTier))
	toName, toRank := mc.tierInfo(move.GetString(collections.TierChangeToTier))
	d.FromTier, d.ToTier, d.Reason = fromName, toName, move.GetString(collections.TierChangeReason)
	d.Promoted = toRank > fromRank
	return nil
}

// tierInfo is a tier's name and rank; no tier (or a deleted one) is "Standard", below all.
func (mc *mailContent) tierInfo(id string) (string, int) {
	if id == "" {
		return "Standard", -1
	}
	t, err := mc.app.FindRecordById(collections.Tiers, id)
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
