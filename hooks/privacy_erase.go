package hooks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// eraseSummary is the answer of POST /api/pba/affiliates/{id}/erase and the summary of its
// privacy_requests row: what changed, in counts, and what is still owed.
type eraseSummary struct {
	Affiliate     string `json:"affiliate"`
	ErasedAt      string `json:"erased_at"`
	AlreadyErased bool   `json:"already_erased"`
	// Rows changed per collection: the affiliate's own rows (links, coupons, feedback,
	// deliveries, webhook deliveries, conversions' customers, suppressions, sign-in rows),
	// then what the sweep found elsewhere (swept).
	Changed map[string]int `json:"changed"`
	Swept   map[string]int `json:"swept"`
	// DeliveriesCanceled and WebhooksCanceled are queued mails and pending webhooks that will
	// not go.
	DeliveriesCanceled int `json:"deliveries_canceled"`
	WebhooksCanceled   int `json:"webhooks_canceled"`
	// LogRows are request-log rows (_logs) that named the affiliate, deleted.
	LogRows int `json:"log_rows"`
	// Owed are the affiliate's balances with pending or payable commission, and PayoutsOpen its
	// payouts not yet paid, canceled or failed: the ledger keeps them; while either is non-zero
	// the Stripe Connect account id is kept (StripeAccountKept) so the debt can be settled.
	Owed              []store.Balance `json:"owed"`
	PayoutsOpen       int             `json:"payouts_open"`
	StripeAccountKept bool            `json:"stripe_account_kept"`
}

// eraseBody is the erase request: confirm must be the affiliate's email (or its id).
type eraseBody struct {
	Confirm string `json:"confirm"`
}

// handleErase is POST /api/pba/affiliates/{id}/erase (superusers).
func (p *privacy) handleErase(e *core.RequestEvent) error {
	aff, err := e.App.FindRecordById(collections.Affiliates, e.Request.PathValue("id"))
	if err != nil {
		return e.NotFoundError("No such affiliate.", fieldError("id", "not_found", "No affiliate has this id."))
	}
	raw, err := io.ReadAll(e.Request.Body)
	if err != nil {
		return e.BadRequestError("Could not read the body.", err)
	}
	var body eraseBody
	if len(bytes.TrimSpace(raw)) > 0 {
		if errs := decodeStrict(raw, &body); errs != nil {
			return e.BadRequestError(`The body must be JSON: {"confirm": "<the affiliate's email>"}.`, errs)
		}
	}
	confirm := strings.TrimSpace(body.Confirm)
	switch {
	case confirm == "":
		return e.BadRequestError("Confirm the erasure.", fieldError("confirm", "required", "Type the affiliate's email (or its id) to confirm the erasure."))
	case !strings.EqualFold(confirm, aff.Email()) && confirm != aff.Id:
		return e.BadRequestError("Confirm the erasure.", fieldError("confirm", "mismatch", "This is not the affiliate's email (or id)."))
	}
	summary, err := p.eraseAffiliate(aff.Id)
	if err != nil {
		return e.InternalServerError("", err)
	}
	if err := recordRequest(e.App, e, collections.PrivacyErase, aff.Id, summary); err != nil {
		return e.InternalServerError("", err)
	}
	return e.JSON(http.StatusOK, summary)
}

// eraseAffiliate anonymises an affiliate and everything that holds its personal data, keeping
// every id and amount of the ledger: one transaction for its own rows, then a sweep of every
// other collection for its old values (sweepPersonal), then the request log. Running it again
// changes nothing more (and clears the Stripe account once nothing is owed).
func (p *privacy) eraseAffiliate(id string) (eraseSummary, error) {
	s := eraseSummary{Affiliate: id, Changed: map[string]int{}, Swept: map[string]int{}, Owed: []store.Balance{}}
	var old personalValues
	err := p.app.RunInTransaction(func(tx core.App) error {
		aff, err := tx.FindRecordById(collections.Affiliates, id)
		if err != nil {
			return err
		}
		old = personalValuesOf(aff)
		if err := p.moneyOwed(tx, &s); err != nil {
			return err
		}
		oldCode := aff.GetString(collections.FieldCode)
		if err := eraseAffiliateRecord(tx, aff, &s); err != nil {
			return err
		}
		s.ErasedAt = aff.GetDateTime(collections.AffiliateErasedAt).Time().UTC().Format(time.RFC3339)
		return eraseOwnRows(tx, aff, oldCode, old, &s)
	})
	if err != nil {
		return s, fmt.Errorf("erase affiliate %s: %w", id, err)
	}
	if s.Swept, err = sweepPersonal(p.app, old.needles()); err != nil {
		return s, fmt.Errorf("erase affiliate %s: %w", id, err)
	}
	if s.LogRows, err = eraseLogs(p.app, id, old.needles()); err != nil {
		return s, fmt.Errorf("erase affiliate %s: %w", id, err)
	}
	return s, nil
}

// moneyOwed fills what the ledger still owes the affiliate: balances with pending or payable
// commission, and payouts neither paid nor over.
func (p *privacy) moneyOwed(tx core.App, s *eraseSummary) error {
	balances, err := store.Balances(tx.DB(), s.Affiliate)
	if err != nil {
		return err
	}
	for _, b := range balances {
		if b.Pending != 0 || b.Payable != 0 {
			s.Owed = append(s.Owed, b)
		}
	}
	var open int
	err = tx.DB().NewQuery(`SELECT COUNT(*) FROM {{payouts}} WHERE affiliate = {:a} AND status IN ({:pending}, {:processing})`).
		Bind(dbx.Params{"a": s.Affiliate, "pending": collections.PayoutPending, "processing": collections.PayoutProcessing}).Row(&open)
	if err != nil {
		return fmt.Errorf("open payouts: %w", err)
	}
	s.PayoutsOpen = open
	return nil
}

// eraseAffiliateRecord anonymises the affiliate itself: placeholder email and name, codes no
// longer derived from the name, every profile field emptied, all marketing mail declined,
// suspended (its links stop crediting, runs stop paying), a random password and a new token
// key (every session and token it had is refused). The Stripe account stays while money is
// owed or a payout is open.
func eraseAffiliateRecord(tx core.App, aff *core.Record, s *eraseSummary) error {
	if !aff.GetDateTime(collections.AffiliateErasedAt).IsZero() {
		s.AlreadyErased = true
	} else {
		aff.Set(collections.AffiliateErasedAt, time.Now().UTC())
	}
	aff.SetEmail(collections.ErasedEmail(aff.Id))
	aff.SetEmailVisibility(false)
	aff.Set(collections.FieldName, collections.ErasedName)
	aff.Set(collections.FieldCode, erasedCode(aff.Id))
	for _, f := range []string{collections.AffiliatePayoutEmail, collections.AffiliateWebhookURL, collections.AffiliateWebhookSecret,
		collections.AffiliateTimezone, collections.AffiliateNotes} {
		aff.Set(f, "")
	}
	aff.Set(collections.AffiliateAnswers, map[string]string{})
	aff.Set(collections.AffiliateTags, []string{})
	aff.Set(collections.AffiliatePreferredChannel, collections.ChannelNone)
	aff.Set(collections.AffiliateMailOptOut, collections.MailCategories())
	aff.Set(collections.FieldStatus, collections.AffiliateSuspended)
	s.StripeAccountKept = aff.GetString(collections.AffiliateStripeAccountID) != "" && (len(s.Owed) > 0 || s.PayoutsOpen > 0)
	if !s.StripeAccountKept {
		aff.Set(collections.AffiliateStripeAccountID, "")
		aff.Set(collections.AffiliatePayoutsEnabled, false)
	}
	for _, f := range aff.Collection().Fields {
		if f.Type() == core.FieldTypeFile {
			aff.Set(f.GetName(), nil) // PocketBase deletes the files after the save
		}
	}
	aff.SetRandomPassword()
	aff.RefreshTokenKey()
	// Validation would hold the placeholder values to the rules of a signup (answers to
	// required questions, a typed name); what is saved here is the server's own.
	if err := tx.SaveNoValidate(aff); err != nil {
		return fmt.Errorf("save erased affiliate: %w", err)
	}
	return nil
}

// erasedCode is the code of an erased affiliate, link or coupon: its id, which names nobody.
func erasedCode(id string) string { return "erased-" + strings.ToLower(id) }

// eraseOwnRows anonymises the rows the affiliate owns: links and coupons (renamed, archived
// or deactivated), feedback comments, mail (address and content; queued mail canceled),
// webhook deliveries (address and payload; pending ones canceled), customers named by email on
// its sales, suppressions of its addresses, legacy codes from imports, and PocketBase's sign-in rows (devices, OAuth2
// links, MFA, one-time passwords).
func eraseOwnRows(tx core.App, aff *core.Record, oldCode string, old personalValues, s *eraseSummary) error {
	id := aff.Id
	for _, spec := range []struct {
		collection string
		change     func(r *core.Record)
	}{
		{collections.Links, func(r *core.Record) {
			r.Set(collections.FieldCode, erasedCode(r.Id))
			r.Set(collections.LinkLabel, "")
			r.Set(collections.LinkSubID, "")
			r.Set(collections.LinkArchived, true)
		}},
		{collections.Coupons, func(r *core.Record) {
			r.Set(collections.FieldCode, erasedCode(r.Id))
			r.Set(collections.CouponActive, false)
		}},
	} {
		rows, err := tx.FindAllRecords(spec.collection, dbx.HashExp{collections.FieldAffiliate: id})
		if err != nil {
			return fmt.Errorf("%s of %s: %w", spec.collection, id, err)
		}
		for _, r := range rows {
			spec.change(r)
			// Saved as records so the code cache forgets the old codes (resolver.go).
			if err := tx.SaveNoValidate(r); err != nil {
				return fmt.Errorf("erase %s %s: %w", spec.collection, r.Id, err)
			}
		}
		s.Changed[spec.collection] = len(rows)
	}

	now := store.DBTime(time.Now())
	params := dbx.Params{"a": id, "email": collections.ErasedEmail(id), "now": now, "code": erasedCode(id), "old": oldCode,
		"queued": collections.DeliveryQueued, "skipped": collections.DeliverySkipped,
		"pending": collections.WebhookDeliveryPending, "failed": collections.WebhookDeliveryFailed,
		"collection": aff.Collection().Id, "reason": "affiliate erased"}
	for _, u := range []struct {
		key, sql string
		into     *int
	}{
		{"deliveries_canceled", `UPDATE {{deliveries}} SET status = {:skipped}, error = {:reason}, updated = {:now}
			WHERE affiliate = {:a} AND status = {:queued}`, &s.DeliveriesCanceled},
		{collections.Deliveries, `UPDATE {{deliveries}} SET email = {:email}, data = '{}', updated = {:now}
			WHERE affiliate = {:a} AND (email != {:email} OR data NOT IN ('', '{}', 'null'))`, nil},
		{"webhooks_canceled", `UPDATE {{webhook_deliveries}} SET status = {:failed}, reason = {:reason}, updated = {:now}
			WHERE affiliate = {:a} AND status = {:pending}`, &s.WebhooksCanceled},
		{collections.WebhookDeliveries, `UPDATE {{webhook_deliveries}} SET url = '', payload = '{}', last_error = '', updated = {:now}
			WHERE affiliate = {:a} AND (url != '' OR payload NOT IN ('', '{}', 'null') OR last_error != '')`, nil},
		{collections.Feedback, `UPDATE {{feedback}} SET comment = '', updated = {:now} WHERE affiliate = {:a} AND comment != ''`, nil},
		// A customer named by an email address is a person; opaque references (Stripe's cus_…)
		// stay for refunds and renewals.
		{collections.Conversions, `UPDATE {{conversions}} SET customer = '', updated = {:now} WHERE affiliate = {:a} AND customer LIKE '%@%'`, nil},
		// Legacy codes an import brought are often the person's handle; old links stop
		// crediting with the affiliate's suspension anyway.
		{collections.CodeAliases, `DELETE FROM {{code_aliases}} WHERE affiliate = {:a}`, nil},
		{collections.StripeAttributions, `UPDATE {{stripe_attributions}} SET affiliate_code = {:code}, updated = {:now}
			WHERE affiliate_code = {:old} AND {:old} != {:code}`, nil},
	} {
		res, err := tx.DB().NewQuery(u.sql).Bind(params).Execute()
		if err != nil {
			return fmt.Errorf("erase %s of %s: %w", u.key, id, err)
		}
		n, _ := res.RowsAffected()
		if u.into != nil {
			*u.into = int(n)
		} else {
			s.Changed[u.key] = int(n)
		}
	}
	// Suppressions hold addresses, not ids; the affiliate's address is gone, so no mail can
	// reach it whatever the list says.
	var addresses []any
	for _, a := range []string{old.email, old.payoutEmail} {
		if a != "" {
			addresses = append(addresses, strings.ToLower(a))
		}
	}
	if len(addresses) > 0 {
		res, err := tx.DB().Delete(collections.Suppressions, dbx.In("lower(email)", addresses...)).Execute()
		if err != nil {
			return fmt.Errorf("erase suppressions of %s: %w", id, err)
		}
		n, _ := res.RowsAffected()
		s.Changed[collections.Suppressions] = int(n)
	}
	signIn := 0
	for _, c := range []string{core.CollectionNameAuthOrigins, core.CollectionNameExternalAuths, core.CollectionNameMFAs, core.CollectionNameOTPs} {
		res, err := tx.DB().Delete(c, dbx.HashExp{"collectionRef": aff.Collection().Id, "recordRef": id}).Execute()
		if err != nil {
			return fmt.Errorf("erase %s of %s: %w", c, id, err)
		}
		n, _ := res.RowsAffected()
		signIn += int(n)
	}
	s.Changed["sign_in"] = signIn
	return nil
}

// personalValues are an affiliate's values before erasure, which no collection may keep.
type personalValues struct {
	email, payoutEmail, name, webhookURL string
	answers                              []string
}

func personalValuesOf(aff *core.Record) personalValues {
	v := personalValues{
		email:       aff.Email(),
		payoutEmail: aff.GetString(collections.AffiliatePayoutEmail),
		name:        aff.GetString(collections.FieldName),
		webhookURL:  aff.GetString(collections.AffiliateWebhookURL),
	}
	var answers map[string]any
	_ = json.Unmarshal([]byte(aff.GetString(collections.AffiliateAnswers)), &answers)
	for _, a := range answers {
		if s, ok := a.(string); ok {
			v.answers = append(v.answers, s)
		}
	}
	slices.Sort(v.answers)
	return v
}

// needles are what the sweep looks for, each with what replaces it.
func (v personalValues) needles() []needle {
	var out []needle
	add := func(value, with string, whole bool) {
		value = strings.TrimSpace(value)
		if value == "" || strings.EqualFold(value, with) || strings.HasSuffix(strings.ToLower(value), "@"+collections.ErasedDomain) {
			return
		}
		out = append(out, needle{find: strings.ToLower(value), with: with, whole: whole})
	}
	// Addresses and URLs name one person wherever they stand.
	add(v.email, "erased@"+collections.ErasedDomain, false)
	add(v.payoutEmail, "erased@"+collections.ErasedDomain, false)
	add(v.webhookURL, "", false)
	// A name or an answer may also be someone else's words: only values that are exactly it.
	// Short answers are the program's choices ("blog"), not the person's.
	add(v.name, collections.ErasedName, true)
	for _, a := range v.answers {
		if len(a) >= minAnswerNeedle {
			add(a, "", true)
		}
	}
	return out
}

// minAnswerNeedle is the shortest answer the sweep looks for elsewhere.
const minAnswerNeedle = 8
