package hooks

import (
	"bytes"
	"fmt"
	"html"
	htmltemplate "html/template"
	"regexp"
	"strings"
	texttemplate "text/template"
)

// Template names stored on deliveries.template.
const (
	templateApplicationReceived = "application_received"
	templateApproved            = "approved"
	templateRejected            = "rejected"
	templateBroadcast           = "broadcast"
	templatePayoutSent          = "payout_sent"
	templatePayoutFailed        = "payout_failed"
)

// mailData is what every template sees. Name, Code and Email are affiliate-controlled, so the
// HTML part is rendered with html/template, which escapes them for their context.
type mailData struct {
	Name           string
	Code           string
	Email          string
	Link           string // the affiliate's referral link, PublicURL/r/code
	PortalURL      string
	UnsubscribeURL string // only on marketing mail

	// Payout mails only: the amount formatted with its currency ("60.00 USD"), the payment's
	// reference (Stripe transfer id or the admin's bank reference) and why a payout failed.
	Amount    string
	Reference string
	Reason    string
}

// lifecycleTemplate is a shipped default: subject and text are text/template, HTML is
// html/template (the body only; mailLayout wraps it).
type lifecycleTemplate struct {
	subject, text, html string
}

// lifecycleTemplates returns the shipped defaults by name; a function, not a package var, so
// nothing can mutate them.
func lifecycleTemplates() map[string]lifecycleTemplate {
	return map[string]lifecycleTemplate{
		templateApplicationReceived: {
			subject: "We received your application",
			text:    "Hi {{.Name}},\n\nthanks for applying to our affiliate program. We review every application and will write to you once it is decided.\n",
			html:    `<p>Hi {{.Name}},</p><p>thanks for applying to our affiliate program. We review every application and will write to you once it is decided.</p>`,
		},
		templateApproved: {
			subject: "You're in: your affiliate account is approved",
			text:    "Hi {{.Name}},\n\nyour application is approved. Your referral link:\n{{.Link}}\n\nSign in to the portal for links, stats and payouts: {{.PortalURL}}\n",
			html:    `<p>Hi {{.Name}},</p><p>your application is approved. Your referral link:</p><p><a href="{{.Link}}">{{.Link}}</a></p><p><a href="{{.PortalURL}}">Open the portal</a> for links, stats and payouts.</p>`,
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
			text:    "Hi {{.Name}},\n\nthank you for your interest. We are not able to accept your application at this time.\n",
			html:    `<p>Hi {{.Name}},</p><p>thank you for your interest. We are not able to accept your application at this time.</p>`,
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
	t, ok := lifecycleTemplates()[name]
	if !ok {
		return renderedMail{}, fmt.Errorf("unknown mail template %q", name)
	}
	return renderMail(t.subject, t.html, t.text, d)
}

// renderBroadcast renders a message written by an admin. Its body is trusted markup (only
// superusers write messages) but a template over affiliate values, which are escaped. Plain
// text bodies (no tags) become paragraphs; the text part is the body without tags.
func renderBroadcast(subject, body string, d mailData) (renderedMail, error) {
	htmlBody := body
	if !looksLikeHTML(body) {
		htmlBody = textToHTMLTemplate(body)
	}
	return renderMail(subject, htmlBody, stripTags(body), d)
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

// execText renders a text/template part.
func execText(name, src string, d mailData) (string, error) {
	t, err := texttemplate.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("parse %s template: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return buf.String(), nil
}

// tagPattern matches markup tags for the text part of an HTML body.
const tagPattern = `<[^>]*>`

// looksLikeHTML tells an HTML body from plain text.
func looksLikeHTML(s string) bool {
	return regexp.MustCompile(tagPattern).MatchString(s)
}

// stripTags is a small html-to-text for the text part: block ends become newlines, tags go,
// entities are decoded.
func stripTags(s string) string {
	s = regexp.MustCompile(`(?i)<br\s*/?>|</p>|</div>|</h[1-6]>|</li>`).ReplaceAllString(s, "$0\n")
	s = regexp.MustCompile(tagPattern).ReplaceAllString(s, "")
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
