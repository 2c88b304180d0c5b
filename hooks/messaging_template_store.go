package hooks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// mailTemplateRow is a mail_templates row as the worker reads it.
type mailTemplateRow struct {
	Name    string `db:"name"`
	Subject string `db:"subject"`
	HTML    string `db:"html"`
	Text    string `db:"text"`
}

// loadMailTemplates returns the shipped defaults overlaid with the admins' edits (mail_templates
// rows; a name without a row keeps its default). Read once per batch, so an edit applies to
// the next mail without a restart.
func loadMailTemplates(app core.App) (map[string]lifecycleTemplate, error) {
	set := lifecycleTemplates()
	var rows []mailTemplateRow
	err := app.DB().Select(collections.FieldName, collections.MailTemplateSubject, collections.MailTemplateHTML, collections.MailTemplateText).
		From(collections.MailTemplates).All(&rows)
	if err != nil {
		return nil, fmt.Errorf("load mail templates: %w", err)
	}
	for _, r := range rows {
		if _, known := set[r.Name]; known && r.Subject != "" && r.HTML != "" && r.Text != "" {
			set[r.Name] = lifecycleTemplate{subject: r.Subject, html: r.HTML, text: r.Text}
		}
	}
	return set, nil
}

// ensureMailTemplates writes the shipped default of every template without a row, so admins
// find each one in the dashboard ready to edit; deleting a row restores the default at the
// next start. A row still equal to a superseded default gets the current one.
func ensureMailTemplates(app core.App) error {
	col, err := app.FindCachedCollectionByNameOrId(collections.MailTemplates)
	if err != nil {
		return fmt.Errorf("mail templates collection: %w", err)
	}
	var have []mailTemplateRow
	err = app.DB().Select(collections.FieldName, collections.MailTemplateSubject, collections.MailTemplateHTML, collections.MailTemplateText).
		From(collections.MailTemplates).All(&have)
	if err != nil {
		return fmt.Errorf("list mail templates: %w", err)
	}
	defaults := lifecycleTemplates()
	exists := make(map[string]bool, len(have))
	for _, row := range have {
		exists[row.Name] = true
		if !slices.Contains(supersededDefaults()[row.Name], templateDigest(row.Subject, row.HTML, row.Text)) {
			continue
		}
		t := defaults[row.Name]
		_, err := app.DB().Update(collections.MailTemplates, dbx.Params{
			collections.MailTemplateSubject: t.subject, collections.MailTemplateHTML: t.html, collections.MailTemplateText: t.text,
		}, dbx.HashExp{collections.FieldName: row.Name}).Execute()
		if err != nil {
			return fmt.Errorf("update default mail template %s: %w", row.Name, err)
		}
	}
	names := make([]string, 0, len(defaults))
	for n := range defaults {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if exists[n] {
			continue
		}
		t := defaults[n]
		r := core.NewRecord(col)
		r.Load(map[string]any{
			collections.FieldName: n, collections.MailTemplateSubject: t.subject, collections.MailTemplateHTML: t.html,
			collections.MailTemplateText: t.text, collections.MailTemplateVariables: templateVariables(n),
		})
		if err := app.Save(r); err != nil {
			return fmt.Errorf("save default mail template %s: %w", n, err)
		}
	}
	return nil
}

// supersededDefaults are the digests (templateDigest) of shipped defaults that a later
// version changed, by template name. A row still equal to one was never edited by an admin,
// so ensureMailTemplates replaces it with the current default; an edited row is left alone.
func supersededDefaults() map[string][]string {
	return map[string][]string{
		// Before mail to unverified addresses left out the referral link (operations.md).
		templateApproved:     {"70b9ed5e0320fb54d2b0c5ce220b5573d525d4ff35d88f388ab856b20adbf6fe"},
		templateWeeklyDigest: {"9d13c4a1d52391b175b0372545684aaca5cbbf8de991e1c44debfe87f35ab909"},
	}
}

// templateDigest identifies a template's three parts.
func templateDigest(subject, html, text string) string {
	sum := sha256.Sum256([]byte(subject + "\x00" + html + "\x00" + text))
	return hex.EncodeToString(sum[:])
}

// validateMailTemplate renders an edited template with sample data and refuses it, naming the
// field, when a part does not parse or uses a variable that does not exist; a broken template
// would otherwise fail every mail that uses it.
func validateMailTemplate(ev *core.RecordEvent) error {
	r := ev.Record
	d := sampleMailData()
	errs := validation.Errors{}
	if _, err := execText("subject", r.GetString(collections.MailTemplateSubject), d); err != nil {
		errs[collections.MailTemplateSubject] = validation.NewError("invalid_template", err.Error())
	}
	if _, err := execText("text", r.GetString(collections.MailTemplateText), d); err != nil {
		errs[collections.MailTemplateText] = validation.NewError("invalid_template", err.Error())
	}
	if _, err := renderMail("Subject", r.GetString(collections.MailTemplateHTML), "text", d); err != nil {
		errs[collections.MailTemplateHTML] = validation.NewError("invalid_template", err.Error())
	}
	if len(errs) > 0 {
		return errs
	}
	if r.GetString(collections.MailTemplateVariables) == "" {
		r.Set(collections.MailTemplateVariables, templateVariables(r.GetString(collections.FieldName)))
	}
	return ev.Next()
}

// templateVariables lists what a template can use, for the dashboard.
func templateVariables(name string) string {
	common := "{{.Name}} {{.Code}} {{.Email}} {{.Link}} {{.Program}} {{.PortalURL}} {{.Balance.Pending}} {{.Balance.Payable}} " +
		"{{range .Links}}{{.Label}} {{.URL}}{{end}}"
	switch name {
	case templatePayoutSent, templatePayoutFailed:
		return common + " {{.Amount}} {{.Reference}} {{.Reason}}"
	case templateNewCommission:
		return common + " {{range .Commissions}}{{.Amount}} {{.Kind}} {{.When}}{{end}} {{.More}} {{.Total}}"
	case templateTierChanged:
		return common + " {{.FromTier}} {{.ToTier}} {{.Promoted}} {{.Reason}}"
	case templateIncentiveStarted:
		return common + " {{.Incentive.Name}} {{.Incentive.Description}} {{.Incentive.Offer}} {{.Incentive.Starts}} {{.Incentive.Ends}}"
	case templateWeeklyDigest:
		return common + " {{.Digest.Period}} {{.Digest.Clicks}} {{.Digest.Conversions}} {{.Digest.Commission}} {{.Digest.BestLink}} " +
			"{{.Digest.BestLinkURL}} {{.Digest.BestClicks}} {{.Digest.Rank}} {{.Digest.PreviousRank}} {{.Digest.RankChange}} {{.Digest.Places}} {{.Digest.Ranked}}"
	default:
		return common
	}
}

// sampleMailData has every field set, so validation exercises every branch a template may take.
func sampleMailData() mailData {
	return mailData{
		Name: "Ada Lovelace", Code: "ada", Email: "ada@example.com", Link: "https://example.com/r/ada",
		Links:   []mailLink{{Label: "Spring sale", URL: "https://example.com/r/ada-spring"}},
		Program: "Example partners", PortalURL: "https://example.com/portal/",
		UnsubscribeURL: "https://example.com/api/pba/unsubscribe?token=sample",
		Balance:        mailBalance{Pending: "12.00 USD", Payable: "30.00 USD"},
		Amount:         "60.00 USD", Reference: "tr_123", Reason: "sample reason",
		FromTier: "Standard", ToTier: "Gold", Promoted: true,
		Commissions: []mailCommission{{Amount: "4.00 USD", Kind: "sale", When: "24 Nov 14:05 UTC"}},
		More:        1, Total: "8.00 USD",
		Digest: digestReport{Period: "16 Nov – 22 Nov 2026", Clicks: 120, Conversions: 3, Commission: "24.00 USD",
			BestLink: "Spring sale", BestLinkURL: "https://example.com/r/ada-spring", BestClicks: 80,
			Rank: 2, PreviousRank: 4, RankChange: 2, Ranked: 10},
		Incentive: mailIncentive{Name: "Spring boost", Description: "Double down this spring.", Offer: "+5 percentage points on your commission rate",
			Starts: "1 Mar 2027 00:00 CET", Ends: "1 Apr 2027 00:00 CEST"},
	}
}
