package hooks

import (
	"bytes"
	"fmt"
	"html"
	htmltemplate "html/template"
	"io"
	"regexp"
	"strings"
	texttemplate "text/template"
)

// Template names stored on deliveries.template; the lifecycle ones are also the names of
// mail_templates rows.
const (
	templateApplicationReceived = "application_received"
	templateApproved            = "approved"
	templateRejected            = "rejected"
	templateBroadcast           = "broadcast"
	templatePayoutSent          = "payout_sent"
	templatePayoutFailed        = "payout_failed"
	templateNewCommission       = "new_commission"
	templateTierChanged         = "tier_changed"
	templateWeeklyDigest        = "weekly_digest"
	templateSurvey              = "survey"
	templateIncentiveStarted    = "incentive_started"
)

// mailData is what every template sees. Name, Code and Email are affiliate-controlled, so the
// HTML part is rendered with html/template, which escapes them for their context. Fields a
// template does not concern stay empty.
type mailData struct {
	Name           string
	Code           string
	Email          string
	Link           string     // the affiliate's referral link, PublicURL/r/code
	Links          []mailLink // the affiliate's own tracked links
	Program        string     // the program's name
	PortalURL      string
	UnsubscribeURL string      // only on marketing mail
	Balance        mailBalance // unpaid commissions, as of sending

	// Payout mails: the amount formatted with its currency ("60.00 USD"), the payment's
	// reference (Stripe transfer id or the admin's bank reference) and why a payout failed.
	// Tier mails use Reason for why the tier changed.
	Amount    string
	Reference string
	Reason    string

	// tier_changed: the tier names ("Standard" for no tier) and whether it was a move up.
	FromTier string
	ToTier   string
	Promoted bool

	// new_commission: the commissions of the hour (at most mailListMax), how many more there
	// were, and their total.
	Commissions []mailCommission
	More        int
	Total       string

	// weekly_digest: the figures of the affiliate's past week.
	Digest digestReport

	// survey: the question and the signed rating links.
	Survey mailSurvey
	// incentive_started: the campaign that started.
	Incentive mailIncentive
	// webhook_disabled (to superusers): the endpoint and why it was disabled.
	Webhook mailWebhook
}

// unverifiedName stands in for the name in mail to an unverified address, so that every
// template's "Hi {{.Name}}," still reads well ("Hi there,").
const unverifiedName = "there"

// withoutSignerText removes from d what the account's owner typed (name, codes, link labels)
// for mail to an address nobody has proven to own: whoever signs up chooses both the address
// and this text, so it must not carry a message of theirs into a stranger's inbox. What the
// program's admins and the server wrote stays.
func (d *mailData) withoutSignerText() {
	d.Name, d.Code, d.Link, d.Links = unverifiedName, "", "", nil
	d.Digest.BestLink, d.Digest.BestLinkURL = "", ""
}

// mailLink is one tracked link as templates show it.
type mailLink struct {
	Label string
	URL   string
}

// mailBalance is an affiliate's unpaid commission, formatted with currency ("12.50 USD").
type mailBalance struct {
	Pending string // still in the hold period
	Payable string // goes out with the next payout
}

// mailCommission is one line of the new-commission mail.
type mailCommission struct {
	Amount string
	Kind   string
	When   string
}

// digestReport is a weekly digest's content, computed when the digest is queued and stored
// on its delivery, so a resend after a crash says the same.
type digestReport struct {
	Period       string `json:"period"` // "16 Nov – 22 Nov 2026"
	Clicks       int    `json:"clicks"`
	Conversions  int    `json:"conversions"`
	Commission   string `json:"commission"` // earned in the week, formatted
	BestLink     string `json:"best_link"`  // label or code of the link with most clicks
	BestLinkURL  string `json:"best_link_url"`
	BestClicks   int    `json:"best_clicks"`
	Rank         int    `json:"rank"`          // by commission in the program this week; 0: unranked
	PreviousRank int    `json:"previous_rank"` // the week before; 0: unranked
	RankChange   int    `json:"rank_change"`   // places moved up (negative: down); 0 when either week is unranked
	Ranked       int    `json:"ranked"`        // how many affiliates had commission this week
}

// Places is how many places the rank moved, either way.
func (r digestReport) Places() int {
	if r.RankChange < 0 {
		return -r.RankChange
	}
	return r.RankChange
}

// mailListMax is how many commissions a new-commission mail lists.
const mailListMax = 20

// lifecycleTemplate is a template's source: subject and text are text/template, HTML is
// html/template (the body only; mailLayout wraps it).
type lifecycleTemplate struct {
	subject, text, html string
}

// lifecycleTemplates returns the shipped defaults by name; a function, not a package var, so
// nothing can mutate them. Admins override them in mail_templates.
func lifecycleTemplates() map[string]lifecycleTemplate {
	return map[string]lifecycleTemplate{
		templateApplicationReceived: {
			subject: "We received your application",
			text:    "Hi {{.Name}},\n\nthanks for applying to {{.Program}}. We review every application and will write to you once it is decided.\n",
			html:    `<p>Hi {{.Name}},</p><p>thanks for applying to {{.Program}}. We review every application and will write to you once it is decided.</p>`,
		},
		templateApproved: {
			subject: "You're in: your affiliate account is approved",
			text: "Hi {{.Name}},\n\nyour application to {{.Program}} is approved. {{if .Link}}Your referral link:\n{{.Link}}\n\n" +
				"Sign in to the portal for links, stats and payouts: {{.PortalURL}}{{else}}Sign in to the portal for your referral link, stats and payouts: {{.PortalURL}}{{end}}\n",
			html: `<p>Hi {{.Name}},</p><p>your application to {{.Program}} is approved.{{if .Link}} Your referral link:</p><p><a href="{{.Link}}">{{.Link}}</a></p>` +
				`<p><a href="{{.PortalURL}}">Open the portal</a> for links, stats and payouts.</p>{{else}}</p><p><a href="{{.PortalURL}}">Open the portal</a> for your referral link, stats and payouts.</p>{{end}}`,
		},
		templatePayoutSent: {
			subject: "Your payout of {{.Amount}} is on its way",
			text:    "Hi {{.Name}},\n\nwe sent you {{.Amount}}.{{if .Reference}} Reference: {{.Reference}}.{{end}}\n\nDetails in the portal: {{.PortalURL}}\n",
			html:    `<p>Hi {{.Name}},</p><p>we sent you <strong>{{.Amount}}</strong>.{{if .Reference}} Reference: {{.Reference}}.{{end}}</p><p><a href="{{.PortalURL}}">Details in the portal</a></p>`,
		},
		templatePayoutFailed: {
			subject: "Action needed: we could not pay out {{.Amount}}",
			text:    "Hi {{.Name}},\n\nyour payout of {{.Amount}} could not be sent{{if .Reason}} ({{.Reason}}){{end}}. Please check your payout details in the portal (Stripe onboarding may be incomplete): {{.PortalURL}}\n\nThe amount stays in your balance and is paid with the next run.\n",
			html:    `<p>Hi {{.Name}},</p><p>your payout of <strong>{{.Amount}}</strong> could not be sent{{if .Reason}} ({{.Reason}}){{end}}.</p><p>Please check your payout details in the <a href="{{.PortalURL}}">portal</a> (Stripe onboarding may be incomplete). The amount stays in your balance and is paid with the next run.</p>`,
		},
		templateRejected: {
			subject: "About your affiliate application",
			text:    "Hi {{.Name}},\n\nthank you for your interest in {{.Program}}. We are not able to accept your application at this time.\n",
			html:    `<p>Hi {{.Name}},</p><p>thank you for your interest in {{.Program}}. We are not able to accept your application at this time.</p>`,
		},
		templateNewCommission: {
			subject: "You earned {{.Total}} in new commissions",
			text: "Hi {{.Name}},\n\nnew commissions came in:\n{{range .Commissions}}- {{.Amount}} ({{.Kind}}, {{.When}})\n{{end}}{{if .More}}… and {{.More}} more\n{{end}}\n" +
				"Total: {{.Total}}\nPending: {{.Balance.Pending}}\nPayable: {{.Balance.Payable}}\n\nDetails in the portal: {{.PortalURL}}\n",
			html: `<p>Hi {{.Name}},</p><p>new commissions came in:</p><ul>{{range .Commissions}}<li><strong>{{.Amount}}</strong> ({{.Kind}}, {{.When}})</li>{{end}}</ul>` +
				`{{if .More}}<p>… and {{.More}} more.</p>{{end}}<p>Total: <strong>{{.Total}}</strong><br>Pending: {{.Balance.Pending}}<br>Payable: {{.Balance.Payable}}</p>` +
				`<p><a href="{{.PortalURL}}">Details in the portal</a></p>`,
		},
		templateTierChanged: {
			subject: "{{if .Promoted}}You moved up to {{.ToTier}}{{else}}Your tier is now {{.ToTier}}{{end}}",
			text: "Hi {{.Name}},\n\nyour tier in {{.Program}} changed from {{.FromTier}} to {{.ToTier}}.{{if .Reason}}\n({{.Reason}}){{end}}\n\n" +
				"{{if .Promoted}}Congratulations: your new rate applies to the commissions you earn from now on.{{else}}Your rate follows the new tier from now on; a stronger month moves you up again.{{end}}\n\nThe portal: {{.PortalURL}}\n",
			html: `<p>Hi {{.Name}},</p><p>your tier in {{.Program}} changed from <strong>{{.FromTier}}</strong> to <strong>{{.ToTier}}</strong>.{{if .Reason}}<br><small>{{.Reason}}</small>{{end}}</p>` +
				`<p>{{if .Promoted}}Congratulations: your new rate applies to the commissions you earn from now on.{{else}}Your rate follows the new tier from now on; a stronger month moves you up again.{{end}}</p>` +
				`<p><a href="{{.PortalURL}}">Open the portal</a></p>`,
		},
		templateIncentiveStarted: {
			subject: "New campaign: {{.Incentive.Name}}",
			text: "Hi {{.Name}},\n\na campaign of {{.Program}} has started: {{.Incentive.Name}}.\n{{if .Incentive.Description}}{{.Incentive.Description}}\n{{end}}\n" +
				"What you get: {{.Incentive.Offer}}.\nFrom {{.Incentive.Starts}} until {{.Incentive.Ends}}.\n\n{{if .Link}}Your link: {{.Link}}\n{{end}}Your progress in the portal: {{.PortalURL}}\n",
			html: `<p>Hi {{.Name}},</p><p>a campaign of {{.Program}} has started: <strong>{{.Incentive.Name}}</strong>.</p>{{if .Incentive.Description}}<p>{{.Incentive.Description}}</p>{{end}}` +
				`<p>What you get: <strong>{{.Incentive.Offer}}</strong>.<br>From {{.Incentive.Starts}} until {{.Incentive.Ends}}.</p>` +
				`<p>{{if .Link}}Your link: <a href="{{.Link}}">{{.Link}}</a><br>{{end}}<a href="{{.PortalURL}}">Your progress in the portal</a></p>`,
		},
		templateWeeklyDigest: {
			subject: "Your week: {{.Digest.Clicks}} clicks, {{.Digest.Conversions}} sales, {{.Digest.Commission}} earned",
			text: "Hi {{.Name}},\n\nyour week ({{.Digest.Period}}):\n- Clicks: {{.Digest.Clicks}}\n- Sales: {{.Digest.Conversions}}\n- Commission earned: {{.Digest.Commission}}\n" +
				"{{if .Digest.BestLink}}- Best link: {{.Digest.BestLink}} ({{.Digest.BestClicks}} clicks) {{.Digest.BestLinkURL}}\n{{end}}" +
				"{{if .Digest.Rank}}- Rank: {{.Digest.Rank}} of {{.Digest.Ranked}}{{if gt .Digest.RankChange 0}}, up {{.Digest.Places}}{{else if lt .Digest.RankChange 0}}, down {{.Digest.Places}}{{end}}\n{{end}}" +
				"\nBalance: {{.Balance.Payable}} payable, {{.Balance.Pending}} pending.\n\n{{if .Link}}Your link: {{.Link}}\n{{end}}The portal: {{.PortalURL}}\n",
			html: `<p>Hi {{.Name}},</p><p>your week ({{.Digest.Period}}):</p><table cellpadding="4">` +
				`<tr><td>Clicks</td><td><strong>{{.Digest.Clicks}}</strong></td></tr><tr><td>Sales</td><td><strong>{{.Digest.Conversions}}</strong></td></tr>` +
				`<tr><td>Commission earned</td><td><strong>{{.Digest.Commission}}</strong></td></tr>` +
				`{{if .Digest.BestLink}}<tr><td>Best link</td><td><a href="{{.Digest.BestLinkURL}}">{{.Digest.BestLink}}</a> ({{.Digest.BestClicks}} clicks)</td></tr>{{end}}` +
				`{{if .Digest.Rank}}<tr><td>Rank</td><td>{{.Digest.Rank}} of {{.Digest.Ranked}}{{if gt .Digest.RankChange 0}} (up {{.Digest.Places}}){{else if lt .Digest.RankChange 0}} (down {{.Digest.Places}}){{end}}</td></tr>{{end}}` +
				`</table><p>Balance: {{.Balance.Payable}} payable, {{.Balance.Pending}} pending.</p><p>{{if .Link}}Your link: <a href="{{.Link}}">{{.Link}}</a><br>{{end}}<a href="{{.PortalURL}}">Open the portal</a></p>`,
		},
	}
}

// mailLayout wraps every HTML body; the unsubscribe footer appears on marketing mail only.
const mailLayout = `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"></head>` +
	`<body style="font-family:system-ui,sans-serif;line-height:1.5;color:#222;max-width:600px;margin:0 auto;padding:16px">` +
	`{{template "body" .}}` +
	`{{if .UnsubscribeURL}}<hr style="border:0;border-top:1px solid #ddd;margin-top:32px"><p style="font-size:12px;color:#777">` +
	`You receive this as a partner of our affiliate program. <a href="{{.UnsubscribeURL}}">Unsubscribe</a></p>{{end}}` +
	`</body></html>`

// renderedMail is a template's output.
type renderedMail struct {
	Subject, HTML, Text string
}

// renderLifecycle renders a shipped template.
func renderLifecycle(name string, d mailData) (renderedMail, error) {
	return renderFrom(lifecycleTemplates(), name, d)
}

// renderFrom renders the named template of a set (the defaults overlaid by admin edits).
func renderFrom(set map[string]lifecycleTemplate, name string, d mailData) (renderedMail, error) {
	t, ok := set[name]
	if !ok {
		return renderedMail{}, fmt.Errorf("unknown mail template %q", name)
	}
	return renderMail(t.subject, t.html, t.text, d)
}

// renderBroadcast renders a message written by an admin. Its body is trusted markup (only
// superusers write messages) but a template over affiliate values, which are escaped. Plain
// text bodies (no tags) become paragraphs; the text part is the body without tags.
func renderBroadcast(subject, body string, d mailData) (renderedMail, error) {
	htmlBody, textBody := bodyTemplates(body)
	return renderMail(subject, htmlBody, textBody, d)
}

// bodyTemplates are the HTML and text templates of one body an admin wrote (a broadcast, a
// promotional asset): markup is kept for HTML and stripped for text; plain text becomes
// paragraphs for HTML and stays text (entities decoded) for text.
func bodyTemplates(body string) (htmlSrc, textSrc string) {
	if !looksLikeHTML(body) {
		return textToHTMLTemplate(body), stripTags(body)
	}
	return body, stripTags(body)
}

// renderMail runs the three parts: subject and text with text/template, the HTML body with
// html/template inside mailLayout.
func renderMail(subject, htmlBody, text string, d mailData) (renderedMail, error) {
	var out renderedMail
	var err error
	if out.Subject, err = execText("subject", subject, d); err != nil {
		return out, err
	}
	out.Subject = strings.Join(strings.Fields(out.Subject), " ") // no header injection via newlines
	if out.Text, err = execText("text", text, d); err != nil {
		return out, err
	}
	if d.UnsubscribeURL != "" {
		out.Text += "\n--\nUnsubscribe: " + d.UnsubscribeURL + "\n"
	}
	// The layout calls the body as a template, so both are escaped in context.
	t, err := htmltemplate.New("layout").Parse(mailLayout)
	if err == nil {
		_, err = t.New("body").Parse(htmlBody)
	}
	if err != nil {
		return out, fmt.Errorf("parse html template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		return out, fmt.Errorf("render html: %w", err)
	}
	out.HTML = buf.String()
	return out, nil
}

// execHTML renders an html/template fragment (no mail layout), escaping every value for its
// context.
func execHTML(name, src string, d any) (string, error) {
	t, err := htmltemplate.New(name).Option("missingkey=error").Parse(src)
	return execParsed(name, t, err, d)
}

// execText renders a text/template part. d is mailData for mail, or another struct of the
// same field names (assetData), whose missing fields are errors.
func execText(name, src string, d any) (string, error) {
	t, err := texttemplate.New(name).Option("missingkey=error").Parse(src)
	return execParsed(name, t, err, d)
}

// execParsed renders a template of either package once its parse (err) succeeded.
func execParsed(name string, t interface{ Execute(io.Writer, any) error }, err error, d any) (string, error) {
	if err != nil {
		return "", fmt.Errorf("parse %s template: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return buf.String(), nil
}

// tagRe matches markup tags for the text part of an HTML body; blockEndRe the ends of blocks
// that become line breaks. Compiled once: every broadcast mail and asset render uses them.
var (
	tagRe      = regexp.MustCompile(`<[^>]*>`)
	blockEndRe = regexp.MustCompile(`(?i)<br\s*/?>|</p>|</div>|</h[1-6]>|</li>`)
)

// looksLikeHTML tells an HTML body from plain text.
func looksLikeHTML(s string) bool {
	return tagRe.MatchString(s)
}

// stripTags is a small html-to-text for the text part: block ends become newlines, tags go,
// entities are decoded.
func stripTags(s string) string {
	s = blockEndRe.ReplaceAllString(s, "$0\n")
	s = tagRe.ReplaceAllString(s, "")
	return html.UnescapeString(s)
}

// textToHTMLTemplate turns a plain-text body into paragraphs, escaping the admin's text but
// keeping template actions ({{.Name}}) intact.
func textToHTMLTemplate(s string) string {
	var b strings.Builder
	for _, para := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n\n") {
		if strings.TrimSpace(para) == "" {
			continue
		}
		b.WriteString("<p>")
		b.WriteString(strings.ReplaceAll(escapeOutsideActions(para), "\n", "<br>"))
		b.WriteString("</p>")
	}
	return b.String()
}

// escapeOutsideActions HTML-escapes text but leaves {{ … }} actions for the template engine.
func escapeOutsideActions(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(html.EscapeString(s))
			return b.String()
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			b.WriteString(html.EscapeString(s))
			return b.String()
		}
		b.WriteString(html.EscapeString(s[:i]))
		b.WriteString(s[i : i+j+2])
		s = s[i+j+2:]
	}
}
