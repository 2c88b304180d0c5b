package hooks

import (
	"database/sql"
	"errors"
	"fmt"
	"html"
	htmltemplate "html/template"
	"image"
	_ "image/gif" // image.DecodeConfig of uploaded banners
	_ "image/jpeg"
	_ "image/png"
	"net/http"
	"net/url"
	"slices"
	"strings"
	texttemplate "text/template"
	"text/template/parse"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"
	_ "golang.org/x/image/webp"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/urlpolicy"
)

// assetData is what an asset's body sees: the mail templates' names for the affiliate's
// identity (mailData's Name, Code, Link, Program) and its coupon. Nothing else, so that a
// template meant for a public post cannot print the affiliate's email or balance.
type assetData struct {
	Name    string
	Code    string
	Link    string // the affiliate's tracked link, to the asset's destination when it has one
	Program string // the program's name
	Coupon  string // the affiliate's active coupon code in the program; '' when none
}

// assetVariables are assetData's fields, the only variables an asset body may use.
var assetVariables = []string{"Link", "Code", "Name", "Program", "Coupon"}

// assetSamples render a body on save: every field set, then every field empty, so that both
// sides of an {{if .Coupon}} run once before any affiliate opens the asset.
func assetSamples() []assetData {
	return []assetData{
		{Name: "Ada Lovelace", Code: "ada", Link: "https://example.com/r/ada", Program: "Example partners", Coupon: "ada10"},
		{},
	}
}

// checkAssetBody refuses a body that does not parse, names a variable assetData lacks (in any
// branch, found by walking the parse tree), or fails to render as text or as HTML with the
// samples. It is the mail templates' machinery (bodyTemplates, execText, execHTML) with the
// asset's variables.
func checkAssetBody(body string) error {
	htmlSrc, textSrc := bodyTemplates(body)
	t, err := texttemplate.New("body").Parse(textSrc)
	if err != nil {
		return fmt.Errorf("the template does not parse: %w", err)
	}
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		if err := checkTemplateNode(tt.Tree.Root); err != nil {
			return err
		}
	}
	for _, d := range assetSamples() {
		if _, err := execText("body", textSrc, d); err != nil {
			return err
		}
		if _, err := execHTML("body", htmlSrc, d); err != nil {
			return err
		}
	}
	return nil
}

// errUnknownVariable names what an asset body may use.
var errUnknownVariable = errors.New("use only {{.Link}} {{.Code}} {{.Name}} {{.Program}} {{.Coupon}}")

// checkTemplateNode walks a parse tree and refuses a field that is not one of assetVariables
// (.Email, .Name.X, $.Balance, $x.Y, (.Name).Len).
func checkTemplateNode(n parse.Node) error {
	known := func(ident []string) error {
		if len(ident) != 1 || !slices.Contains(assetVariables, ident[0]) {
			return fmt.Errorf("unknown variable .%s: %w", strings.Join(ident, "."), errUnknownVariable)
		}
		return nil
	}
	switch n := n.(type) {
	case nil:
		return nil
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkTemplateNode(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return checkTemplateNode(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := checkTemplateNode(c); err != nil {
				return err
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := checkTemplateNode(a); err != nil {
				return err
			}
		}
	case *parse.FieldNode:
		return known(n.Ident)
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			if n.Ident[0] != "$" {
				return fmt.Errorf("unknown variable %s: %w", strings.Join(n.Ident, "."), errUnknownVariable)
			}
			return known(n.Ident[1:])
		}
	case *parse.ChainNode:
		return fmt.Errorf("unknown variable .%s: %w", strings.Join(n.Field, "."), errUnknownVariable)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.RangeNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	case *parse.TemplateNode:
		return checkTemplateNode(n.Pipe)
	}
	return nil
}

func checkBranch(b *parse.BranchNode) error {
	for _, n := range []parse.Node{b.Pipe, b.List, b.ElseList} {
		if err := checkTemplateNode(n); err != nil {
			return err
		}
	}
	return nil
}

// bannerTemplate is a banner's ready-to-paste HTML; html/template escapes each value for its
// attribute.
var bannerTemplate = htmltemplate.Must(htmltemplate.New("banner").Parse(
	`<a href="{{.Link}}"><img src="{{.Image}}" alt="{{.Title}}"{{if .Width}} width="{{.Width}}"{{end}}{{if .Height}} height="{{.Height}}"{{end}}></a>`))

// assetItem is one asset rendered for one affiliate, as the routes answer it.
type assetItem struct {
	ID      string `json:"id"`
	Program string `json:"program"`
	Kind    string `json:"kind"`
	Title   string `json:"title"`
	Order   int    `json:"order"`
	Image   string `json:"image"`
	Thumb   string `json:"thumb"`
	Link    string `json:"link"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
	Updated string `json:"updated"`
	// Visible is set on a superuser's preview of one asset: whether the affiliate sees it
	// (it is active and targeted at the affiliate's tier).
	Visible *bool `json:"visible,omitempty"`
}

// assetService validates assets on save and renders them for affiliates
// (GET /api/pba/assets, /api/pba/assets/{id}); it announces one by broadcast.
type assetService struct {
	app     core.App
	content *mailContent // the public URL and the affiliate's identity, as mail has them
}

// registerAssets binds the assets' validation and returns the routes' handlers.
func registerAssets(app core.App, content *mailContent) *assetService {
	s := &assetService{app: app, content: content}
	app.OnRecordValidate(collections.Assets).BindFunc(s.validate)
	// A tier's deletion removes it from the assets that target it; one that targeted only
	// that tier would reach every affiliate, so it is switched off instead.
	app.OnRecordDelete(collections.Tiers).BindFunc(func(e *core.RecordEvent) error {
		assets, err := e.App.FindRecordsByFilter(collections.Assets, "tiers ~ {:tier}", "", 0, 0, dbx.Params{"tier": e.Record.Id})
		if err != nil {
			return fmt.Errorf("assets of tier %s: %w", e.Record.Id, err)
		}
		for _, a := range assets {
			if tiers := a.GetStringSlice(collections.AssetTiers); len(tiers) == 1 && tiers[0] == e.Record.Id && a.GetBool(collections.AssetActive) {
				a.Set(collections.AssetActive, false)
				if err := e.App.SaveNoValidate(a); err != nil {
					return fmt.Errorf("deactivate asset %s: %w", a.Id, err)
				}
			}
		}
		return e.Next()
	})
	return s
}

// validate refuses, naming the field, a body that is not a valid template, a destination off
// the program's allowed domains, tiers of another program, a banner without an image or a
// text without a body; it reads the image's size.
func (s *assetService) validate(e *core.RecordEvent) error {
	r := e.Record
	errs := validation.Errors{}
	kind := r.GetString(collections.AssetKind)
	body := r.GetString(collections.AssetBody)
	if strings.TrimSpace(body) == "" {
		if kind != collections.AssetBanner && kind != "" {
			errs[collections.AssetBody] = validation.NewError("required", "A "+kind+" needs a body.")
		}
	} else if err := checkAssetBody(body); err != nil {
		errs[collections.AssetBody] = validation.NewError("invalid_template", err.Error())
	}
	if kind == collections.AssetBanner && !hasImage(r) {
		errs[collections.AssetFile] = validation.NewError("required", "A banner needs an image.")
	}
	if p, err := collections.FindProgram(e.App, r.GetString(collections.FieldProgram)); err == nil {
		if dest := r.GetString(collections.AssetDestination); dest != "" {
			if _, err := urlpolicy.Check(dest, p.AllowedDomains()); err != nil {
				errs[collections.AssetDestination] = validation.NewError("invalid_destination",
					"The destination "+err.Error()+" (allowed: "+strings.Join(p.AllowedDomains(), ", ")+").")
			}
		}
		if ids := r.GetStringSlice(collections.AssetTiers); len(ids) > 0 {
			var n int
			err := e.App.DB().Select("COUNT(*)").From(collections.Tiers).
				Where(dbx.In("id", toAny(ids)...)).AndWhere(dbx.HashExp{collections.FieldProgram: p.Id}).Row(&n)
			if err != nil {
				return fmt.Errorf("tiers of asset: %w", err)
			}
			if n != len(ids) {
				errs[collections.AssetTiers] = validation.NewError("program_mismatch", "Target tiers of the asset's program only.")
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if err := readImageSize(r); err != nil {
		return fieldError(collections.AssetFile, "invalid_image", err.Error())
	}
	return e.Next()
}

// readImageSize stores the new image's pixel size (zero without an image); an unchanged
// image keeps the stored size.
func readImageSize(r *core.Record) error {
	if !hasImage(r) {
		r.Set(collections.AssetWidth, 0)
		r.Set(collections.AssetHeight, 0)
		return nil
	}
	files := r.GetUnsavedFiles(collections.AssetFile)
	if len(files) == 0 {
		return nil
	}
	f, err := files[0].Reader.Open()
	if err != nil {
		return fmt.Errorf("open the image: %w", err)
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return fmt.Errorf("the image cannot be read (%v)", err)
	}
	r.Set(collections.AssetWidth, cfg.Width)
	r.Set(collections.AssetHeight, cfg.Height)
	return nil
}

// hasImage reports whether the asset has an image, stored or being uploaded.
func hasImage(r *core.Record) bool {
	return r.GetString(collections.AssetFile) != "" || len(r.GetUnsavedFiles(collections.AssetFile)) > 0
}

// viewer is whom a request renders assets for: the signed-in affiliate, or the affiliate a
// superuser previews as.
func (s *assetService) viewer(re *core.RequestEvent) (*core.Record, bool, error) {
	named := re.Request.URL.Query().Get("affiliate")
	if re.HasSuperuserAuth() {
		if named == "" {
			return nil, false, re.BadRequestError("Name the affiliate to preview as.", fieldError("affiliate", "required", "Required for superusers."))
		}
		a, err := re.App.FindRecordById(collections.Affiliates, named)
		if err != nil {
			return nil, false, re.BadRequestError("Unknown affiliate.", fieldError("affiliate", "not_found", "No affiliate has this id."))
		}
		return a, true, nil
	}
	a := re.Auth
	if named != "" && named != a.Id {
		return nil, false, re.ForbiddenError("Affiliates see their own materials only.", fieldError("affiliate", "forbidden", "Not you."))
	}
	if a.GetString(collections.FieldStatus) != collections.AffiliateApproved {
		return nil, false, re.ForbiddenError("Promotional materials are for approved affiliates.", nil)
	}
	return a, false, nil
}

// handleList answers GET /api/pba/assets: the active assets of the affiliate's program
// targeted at its tier, in order.
func (s *assetService) handleList(re *core.RequestEvent) error {
	a, _, err := s.viewer(re)
	if err != nil {
		return err
	}
	assets, err := re.App.FindRecordsByFilter(collections.Assets, "program = {:p} && active = true",
		"order,created,id", 0, 0, dbx.Params{"p": a.GetString(collections.FieldProgram)})
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("assets: %w", err))
	}
	r, err := s.renderer(a)
	if err != nil {
		return re.InternalServerError("", err)
	}
	items := make([]assetItem, 0, len(assets))
	for _, asset := range assets {
		if !targets(asset, a) {
			continue
		}
		item, err := r.render(asset)
		if err != nil { // checked on save; a template that still fails is left out, not shown broken
			re.App.Logger().Warn("asset does not render", "asset", asset.Id, "affiliate", a.Id, "error", err)
			continue
		}
		items = append(items, item)
	}
	return re.JSON(http.StatusOK, map[string]any{"items": items})
}

// handleView answers GET /api/pba/assets/{id}: one asset, 404 when the affiliate does not see
// it. A superuser's preview renders an inactive or untargeted asset of the affiliate's
// program too, saying whether the affiliate sees it (visible).
func (s *assetService) handleView(re *core.RequestEvent) error {
	a, preview, err := s.viewer(re)
	if err != nil {
		return err
	}
	asset, err := re.App.FindRecordById(collections.Assets, re.Request.PathValue("id"))
	if err != nil || asset.GetString(collections.FieldProgram) != a.GetString(collections.FieldProgram) {
		return re.NotFoundError("", nil)
	}
	visible := asset.GetBool(collections.AssetActive) && targets(asset, a)
	if !visible && !preview {
		return re.NotFoundError("", nil)
	}
	r, err := s.renderer(a)
	if err != nil {
		return re.InternalServerError("", err)
	}
	item, err := r.render(asset)
	if err != nil {
		return re.InternalServerError("The asset does not render.", err)
	}
	if preview {
		item.Visible = &visible
	}
	return re.JSON(http.StatusOK, item)
}

// targets reports whether an asset is meant for the affiliate's tier.
func targets(asset, a *core.Record) bool {
	tiers := asset.GetStringSlice(collections.AssetTiers)
	return len(tiers) == 0 || slices.Contains(tiers, a.GetString(collections.AffiliateTier))
}

// assetRenderer renders assets for one affiliate.
type assetRenderer struct {
	base    string // public URL, no trailing slash
	data    assetData
	link    string   // the affiliate's own link, PublicURL/r/code
	domains []string // the program's allowed domains
}

// renderer loads what every asset of the affiliate shares: identity, program, coupon.
func (s *assetService) renderer(a *core.Record) (*assetRenderer, error) {
	md := s.content.mailData(a)
	r := &assetRenderer{base: s.content.publicBase(), link: md.Link,
		data: assetData{Name: md.Name, Code: md.Code, Link: md.Link}}
	if p, err := collections.FindProgram(s.app, a.GetString(collections.FieldProgram)); err == nil {
		r.data.Program = p.GetString(collections.FieldName)
		r.domains = p.AllowedDomains()
	}
	var coupon string
	err := s.app.DB().Select(collections.FieldCode).From(collections.Coupons).
		Where(dbx.HashExp{collections.FieldAffiliate: a.Id, collections.FieldProgram: a.GetString(collections.FieldProgram), collections.CouponActive: true}).
		OrderBy("created", "id").Limit(1).Row(&coupon)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("coupon of %s: %w", a.Id, err)
	}
	r.data.Coupon = coupon
	return r, nil
}

// render is one asset for the renderer's affiliate. The link leads to the asset's destination
// through the redirector's deep link (?to=, which it follows only on the program's allowed
// domains: no open redirect); the text part is text/template (raw values), the HTML part
// html/template (escaped).
func (r *assetRenderer) render(asset *core.Record) (assetItem, error) {
	item := assetItem{
		ID: asset.Id, Program: asset.GetString(collections.FieldProgram), Kind: asset.GetString(collections.AssetKind),
		Title: asset.GetString(collections.AssetTitle), Order: asset.GetInt(collections.AssetOrder),
		Updated: asset.GetDateTime(collections.FieldUpdated).Time().UTC().Format("2006-01-02T15:04:05.000Z"),
		Link:    r.link,
	}
	if dest := asset.GetString(collections.AssetDestination); dest != "" {
		if _, err := urlpolicy.Check(dest, r.domains); err == nil {
			item.Link = r.link + "?to=" + url.QueryEscape(dest)
		}
	}
	if file := asset.GetString(collections.AssetFile); file != "" {
		item.Image = r.base + "/api/files/" + asset.BaseFilesPath() + "/" + url.PathEscape(file)
		item.Thumb = item.Image + "?thumb=" + collections.AssetThumb
	}
	d := r.data
	d.Link = item.Link
	body := asset.GetString(collections.AssetBody)
	if strings.TrimSpace(body) != "" {
		htmlSrc, textSrc := bodyTemplates(body)
		var err error
		if item.Text, err = execText("body", textSrc, d); err != nil {
			return item, err
		}
		if item.HTML, err = execHTML("body", htmlSrc, d); err != nil {
			return item, err
		}
	}
	if item.Kind == collections.AssetBanner {
		if item.Text == "" {
			item.Text = item.Link
		}
		var b strings.Builder
		err := bannerTemplate.Execute(&b, map[string]any{
			"Link": item.Link, "Image": item.Image, "Title": item.Title,
			"Width": asset.GetInt(collections.AssetWidth), "Height": asset.GetInt(collections.AssetHeight),
		})
		if err != nil {
			return item, fmt.Errorf("banner html: %w", err)
		}
		item.HTML = b.String()
	}
	return item, nil
}

// handleAnnounce answers POST /api/pba/assets/{id}/announce: a broadcast, sent now, telling
// the asset's audience (approved affiliates of its program, of its tiers when it targets
// some) that new material is ready in the portal. The title is text the admin typed, not a
// template: it is quoted so that braces in it print as they are.
func (s *assetService) handleAnnounce(re *core.RequestEvent) error {
	asset, err := re.App.FindRecordById(collections.Assets, re.Request.PathValue("id"))
	if err != nil {
		return re.NotFoundError("", nil)
	}
	if !asset.GetBool(collections.AssetActive) {
		return re.BadRequestError("Activate the asset before announcing it: affiliates cannot see it yet.",
			fieldError(collections.AssetActive, "inactive", "The asset is not active."))
	}
	messages, err := re.App.FindCachedCollectionByNameOrId(collections.Messages)
	if err != nil {
		return re.InternalServerError("", err)
	}
	title := asset.GetString(collections.AssetTitle)
	audience := map[string]any{"program": asset.GetString(collections.FieldProgram), "status": collections.AffiliateApproved}
	if tiers := asset.GetStringSlice(collections.AssetTiers); len(tiers) > 0 {
		audience["tiers"] = tiers
	}
	m := core.NewRecord(messages)
	m.Load(map[string]any{
		collections.MessageSubject: "New promotional material: " + templateLiteral(title),
		collections.MessageBody: "<p>Hi {{.Name}},</p><p>new promotional material is ready for you in {{.Program}}: <strong>" +
			templateLiteral(html.EscapeString(title)) + "</strong>.</p>" +
			`<p><a href="{{.PortalURL}}">Open the portal</a> to copy it with your own link.</p>`,
		collections.MessageKind:     collections.MessageKindBroadcast,
		collections.FieldStatus:     collections.MessageScheduled,
		collections.MessageAudience: audience,
		collections.MessageCategory: collections.MailMaterial, // affiliates may opt out of material news
	})
	if err := re.App.Save(m); err != nil {
		return re.BadRequestError("The announcement could not be saved.", err)
	}
	return re.JSON(http.StatusCreated, map[string]string{"broadcast": m.Id})
}

// templateLiteral quotes text for a Go template so that it prints as it is: "{{" becomes an
// action printing "{{".
func templateLiteral(s string) string {
	return strings.ReplaceAll(s, "{{", `{{"{{"}}`)
}
