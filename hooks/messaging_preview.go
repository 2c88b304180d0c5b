package hooks

import (
	"net/http"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// mailPreview renders a broadcast or a lifecycle template as it would be sent, for the back
// office's composer and template editor: with a chosen affiliate's identity, links and
// balance, or the sample data the template validation uses. It writes nothing.
type mailPreview struct {
	content *mailContent
}

func newMailPreview(content *mailContent) *mailPreview { return &mailPreview{content: content} }

// previewRequest is the body of POST /api/pba/messages/preview: a broadcast (subject, body)
// or a template (subject, html, text), and the affiliate to render it for.
type previewRequest struct {
	Subject   string `json:"subject"`
	Body      string `json:"body"`
	HTML      string `json:"html"`
	Text      string `json:"text"`
	Template  bool   `json:"template"`
	Affiliate string `json:"affiliate"`
}

// handle answers {"subject", "html", "text"}, or a 400 naming the part that does not render.
func (p *mailPreview) handle(re *core.RequestEvent) error {
	var req previewRequest
	if err := re.BindBody(&req); err != nil {
		return re.BadRequestError("Invalid body.", err)
	}
	d := sampleMailData()
	d.UnsubscribeURL = ""
	if req.Affiliate != "" {
		a, err := re.App.FindRecordById(collections.Affiliates, req.Affiliate)
		if err != nil {
			return re.BadRequestError("Unknown affiliate.", fieldError("affiliate", "not_found", "No affiliate has this id."))
		}
		ctx, err := p.content.newMailContext()
		if err != nil {
			return re.InternalServerError("", err)
		}
		own, err := p.content.affiliateMailData(ctx, a)
		if err != nil {
			return re.InternalServerError("", err)
		}
		// The affiliate's identity, links and balance; the template's own figures (a payout,
		// commissions, a digest) stay the sample's.
		d.Name, d.Code, d.Email, d.Link, d.Links, d.Program, d.PortalURL, d.Balance =
			own.Name, own.Code, own.Email, own.Link, own.Links, own.Program, own.PortalURL, own.Balance
	}
	if !req.Template {
		d.UnsubscribeURL = p.content.publicBase() + "/api/pba/unsubscribe?token=…"
		out, err := renderBroadcast(req.Subject, req.Body, d)
		if err != nil {
			field := collections.MessageBody
			if _, serr := execText("subject", req.Subject, d); serr != nil {
				field = collections.MessageSubject
			}
			return re.BadRequestError("The message does not render.", validation.Errors{field: validation.NewError("invalid_template", err.Error())})
		}
		return previewJSON(re, out)
	}
	errs := validation.Errors{}
	if _, err := execText("subject", req.Subject, d); err != nil {
		errs[collections.MailTemplateSubject] = validation.NewError("invalid_template", err.Error())
	}
	if _, err := execText("text", req.Text, d); err != nil {
		errs[collections.MailTemplateText] = validation.NewError("invalid_template", err.Error())
	}
	if _, err := renderMail("subject", req.HTML, "text", d); err != nil {
		errs[collections.MailTemplateHTML] = validation.NewError("invalid_template", err.Error())
	}
	if len(errs) > 0 {
		return re.BadRequestError("The template does not render.", errs)
	}
	out, err := renderMail(req.Subject, req.HTML, req.Text, d)
	if err != nil {
		return re.InternalServerError("", err)
	}
	return previewJSON(re, out)
}

func previewJSON(re *core.RequestEvent, m renderedMail) error {
	return re.JSON(http.StatusOK, map[string]string{"subject": m.Subject, "html": m.HTML, "text": m.Text})
}
