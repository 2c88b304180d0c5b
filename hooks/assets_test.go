package hooks_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/tests"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// assetsPublicURL is the public address the asset tests render links and images with.
const assetsPublicURL = "https://partners.example.net"

// assetsApp is a clone of the fixture's world whose public URL is assetsPublicURL, served.
func assetsApp(t *testing.T) (*tests.TestApp, http.Handler) {
	t.Helper()
	cfg := fx.Config
	cfg.PublicURL = assetsPublicURL
	app := fx.AppWith(t, cfg)
	t.Cleanup(app.Cleanup)
	return app, pbatest.Serve(t, app)
}

// postAsset creates an asset through the records API as the superuser.
func postAsset(h http.Handler, body map[string]any) *pbatest.Response {
	raw, _ := json.Marshal(body)
	return pbatest.Request(h, http.MethodPost, "/api/collections/assets/records", fx.Superuser.Token, string(raw))
}

// fieldCode is data.<field>.code of an error answer.
func fieldCode(res *pbatest.Response, field string) string {
	data, _ := res.JSON["data"].(map[string]any)
	f, _ := data[field].(map[string]any)
	code, _ := f["code"].(string)
	return code
}

// A body that does not parse or names a variable asset templates do not have is refused when
// the admin saves it (400 naming body), in any branch; each of the five variables is accepted;
// a refused edit leaves the stored asset as it was.
func TestAssetTemplateValidation(t *testing.T) {
	app, h := assetsApp(t)
	refused := []struct{ name, body string }{
		{"does not parse", "Hi {{.Name"},
		{"unknown variable", "Write to {{.Email}}"},
		{"a mail-only variable", "Balance: {{.Balance.Payable}}"},
		{"unknown in an else branch", "{{if .Coupon}}{{.Coupon}}{{else}}{{.Secret}}{{end}}"},
		{"unknown in a branch no sample takes", "{{if .Coupon}}{{if not .Name}}{{.Secret}}{{end}}{{end}}"},
		{"unknown in a defined template", `{{define "x"}}{{.Secret}}{{end}}{{.Name}}`},
		{"unknown in a range", "{{range .Links}}{{.URL}}{{end}}"},
		{"a field of a variable", "{{.Name.First}}"},
		{"through the root variable", "{{$.Portal}}"},
		{"through a chain", "{{(.Name).Len}}"},
		{"an unknown function", "{{shout .Name}}"},
		{"HTML that ends inside an attribute", `<a href="{{.Link}}>go</a>`},
	}
	for _, c := range refused {
		res := postAsset(h, map[string]any{"program": fx.ProgramP, "kind": "text", "title": c.name, "body": c.body})
		if res.Code != 400 || fieldCode(res, "body") != "invalid_template" {
			t.Errorf("%s: %d %s, want 400 naming body", c.name, res.Code, res.Body)
		}
	}
	for _, v := range []string{"Link", "Code", "Name", "Program", "Coupon"} {
		res := postAsset(h, map[string]any{"program": fx.ProgramP, "kind": "social", "title": v, "body": "Try it: {{." + v + "}} {{if ." + v + "}}yes{{end}} {{$." + v + "}}"})
		if res.Code != 200 {
			t.Errorf("{{.%s}}: %d %s", v, res.Code, res.Body)
		}
	}
	other := []struct {
		name, field, code string
		body              map[string]any
	}{
		{"a destination off the allowed domains", "destination", "invalid_destination",
			map[string]any{"program": fx.ProgramP, "kind": "text", "title": "x", "body": "{{.Link}}", "destination": "https://evil.example.org/"}},
		{"a destination that is no URL", "destination", "invalid_destination",
			map[string]any{"program": fx.ProgramP, "kind": "text", "title": "x", "body": "{{.Link}}", "destination": "javascript:alert(1)"}},
		{"a tier of another program", "tiers", "program_mismatch",
			map[string]any{"program": fx.ProgramQ, "kind": "text", "title": "x", "body": "{{.Link}}", "tiers": []string{fx.TierP}}},
		{"a banner without an image", "file", "required", map[string]any{"program": fx.ProgramP, "kind": "banner", "title": "x"}},
		{"a text without a body", "body", "required", map[string]any{"program": fx.ProgramP, "kind": "email", "title": "x", "body": "  "}},
		{"an unknown kind", "kind", "validation_invalid_value", map[string]any{"program": fx.ProgramP, "kind": "video", "title": "x", "body": "x"}},
		{"a bidi override in the title", "title", "invalid_characters", map[string]any{"program": fx.ProgramP, "kind": "text", "title": "a\u202eb", "body": "x"}},
	}
	for _, c := range other {
		if res := postAsset(h, c.body); res.Code != 400 || fieldCode(res, c.field) != c.code {
			t.Errorf("%s: %d %s, want 400 naming %s (%s)", c.name, res.Code, res.Body, c.field, c.code)
		}
	}

	res := postAsset(h, map[string]any{"program": fx.ProgramP, "kind": "text", "title": "kept", "body": "Buy: {{.Link}}",
		"destination": "https://www.example.com/spring"})
	if res.Code != 200 {
		t.Fatalf("valid asset: %d %s", res.Code, res.Body)
	}
	id := res.JSON["id"].(string)
	res = pbatest.Request(h, http.MethodPatch, "/api/collections/assets/records/"+id, fx.Superuser.Token, `{"body":"{{.Nope}}"}`)
	if res.Code != 400 || fieldCode(res, "body") != "invalid_template" {
		t.Fatalf("bad edit: %d %s", res.Code, res.Body)
	}
	stored, err := app.FindRecordById(collections.Assets, id)
	if err != nil || stored.GetString("body") != "Buy: {{.Link}}" {
		t.Fatalf("the refused edit changed the asset: %v %v", stored, err)
	}
}

// affiliateAssets lists the assets a token sees (query: "?affiliate=…" or "").
func affiliateAssets(t *testing.T, h http.Handler, token, query string) map[string]map[string]any {
	t.Helper()
	res := pbatest.Request(h, http.MethodGet, "/api/pba/assets"+query, token, "")
	if res.Code != 200 {
		t.Fatalf("list assets%s: %d %s", query, res.Code, res.Body)
	}
	out := map[string]map[string]any{}
	items, _ := res.JSON["items"].([]any)
	for _, it := range items {
		m := it.(map[string]any)
		out[m["title"].(string)] = m
	}
	return out
}

// Every affiliate gets the asset with its own link (to the asset's destination through the
// redirector), code, name, program and coupon: raw in the text render, escaped in the HTML
// render; the link leads to the destination.
func TestAssetRenderedPerAffiliate(t *testing.T) {
	app, h := assetsApp(t)
	const evilName = `<script>alert("x")</script> & 'Co'`
	const evilProgram = `Acme & "Sons" <b>`
	a, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	a.Set("name", evilName)
	if err := app.Save(a); err != nil {
		t.Fatal(err)
	}
	p, err := app.FindRecordById(collections.Programs, fx.ProgramP)
	if err != nil {
		t.Fatal(err)
	}
	p.Set("name", evilProgram)
	if err := app.Save(p); err != nil {
		t.Fatal(err)
	}
	if _, err := pbatest.Save(app, collections.Coupons, map[string]any{"code": "a-save10", "affiliate": fx.A.ID, "program": fx.ProgramP, "active": true}); err != nil {
		t.Fatal(err)
	}
	if _, err := pbatest.Save(app, collections.Coupons, map[string]any{"code": "b-old", "affiliate": fx.B.ID, "program": fx.ProgramP, "active": false}); err != nil {
		t.Fatal(err)
	}
	const dest = "https://www.example.com/spring?x=1&y=2"
	for _, body := range []map[string]any{
		{"title": "plain", "kind": "social", "body": "{{.Name}} loves {{.Program}}: {{.Link}} (code {{.Code}}){{if .Coupon}}, coupon {{.Coupon}}{{end}}", "destination": dest, "order": 2},
		{"title": "markup", "kind": "email", "body": `<p>From {{.Name}}: <a href="{{.Link}}">{{.Program}}</a></p>`, "order": 1},
	} {
		body["program"], body["active"] = fx.ProgramP, true
		if res := postAsset(h, body); res.Code != 200 {
			t.Fatalf("create %v: %d %s", body["title"], res.Code, res.Body)
		}
	}
	codeOf := func(id string) string {
		r, err := app.FindRecordById(collections.Affiliates, id)
		if err != nil {
			t.Fatal(err)
		}
		return r.GetString("code")
	}
	codeA, codeB := codeOf(fx.A.ID), codeOf(fx.B.ID)
	deep := "?to=" + url.QueryEscape(dest)

	gotA := affiliateAssets(t, h, fx.A.Token, "")
	plain, markup := gotA["plain"], gotA["markup"]
	if plain == nil || markup == nil {
		t.Fatalf("A's assets: %v", gotA)
	}
	linkA := assetsPublicURL + "/r/" + codeA + deep
	if plain["link"] != linkA {
		t.Errorf("A's link %v, want %s", plain["link"], linkA)
	}
	wantText := evilName + " loves " + evilProgram + ": " + linkA + " (code " + codeA + "), coupon a-save10"
	if plain["text"] != wantText {
		t.Errorf("A's text\n%v\nwant\n%s", plain["text"], wantText)
	}
	html := plain["html"].(string)
	if strings.Contains(html, "<script>") || strings.Contains(html, "<b>") || !strings.Contains(html, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;Co&#39;") ||
		!strings.Contains(html, "Acme &amp; &#34;Sons&#34; &lt;b&gt;") || !strings.HasPrefix(html, "<p>") {
		t.Errorf("A's html not escaped: %s", html)
	}
	mhtml := markup["html"].(string)
	if !strings.Contains(mhtml, `<a href="`+assetsPublicURL+"/r/"+codeA+`">Acme &amp; &#34;Sons&#34; &lt;b&gt;</a>`) || strings.Contains(mhtml, "<script>") {
		t.Errorf("A's markup html: %s", mhtml)
	}
	if markup["text"] != "From "+evilName+": "+evilProgram+"\n" {
		t.Errorf("A's markup text %q", markup["text"])
	}
	if markup["order"].(float64) != 1 || plain["order"].(float64) != 2 {
		t.Errorf("order: %v %v", markup["order"], plain["order"])
	}
	res := pbatest.Request(h, http.MethodGet, "/api/pba/assets", fx.A.Token, "")
	if i, j := strings.Index(res.Body.String(), `"markup"`), strings.Index(res.Body.String(), `"plain"`); i < 0 || j < i {
		t.Errorf("not in order: %s", res.Body)
	}

	gotB := affiliateAssets(t, h, fx.B.Token, "")
	linkB := assetsPublicURL + "/r/" + codeB + deep
	if gotB["plain"]["text"] != "Affiliate B loves "+evilProgram+": "+linkB+" (code "+codeB+")" {
		t.Errorf("B's text %v", gotB["plain"]["text"])
	}
	if strings.Contains(res.Body.String(), codeB) || strings.Contains(pbatest.Request(h, http.MethodGet, "/api/pba/assets", fx.B.Token, "").Body.String(), codeA) {
		t.Error("an affiliate's answer holds the other's code")
	}

	// The superuser's preview as A is A's view.
	if preview := affiliateAssets(t, h, fx.Superuser.Token, "?affiliate="+fx.A.ID); preview["plain"]["text"] != wantText {
		t.Errorf("preview as A: %v", preview["plain"])
	}

	// The link is a tracked click that lands on the deep destination.
	click := pbatest.Request(h, http.MethodGet, strings.TrimPrefix(linkA, assetsPublicURL), "", "")
	if loc := click.Header().Get("Location"); click.Code != 302 || !strings.HasPrefix(loc, dest+"&pba_click=") {
		t.Errorf("following A's link: %d %s", click.Code, loc)
	}
}

// pngBytes is a w×h PNG.
func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		img.Set(x, 0, color.RGBA{R: 200, A: 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// uploadBanner creates a banner through the records API as the superuser (multipart, as the
// back office's SDK sends it).
func uploadBanner(t *testing.T, h http.Handler, fields map[string]string, file []byte) *pbatest.Response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	part, err := mw.CreateFormFile("file", "banner 728.png")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = part.Write(file)
	_ = mw.Close()
	return pbatest.Request(h, http.MethodPost, "/api/collections/assets/records", fx.Superuser.Token, body.String(),
		pbatest.Header("Content-Type", mw.FormDataContentType()))
}

// A banner uploaded as an image gets its size read and ready-to-paste HTML with the
// affiliate's link, the absolute image URL and the title as alt text, escaped; the image and
// its thumb are public.
func TestAssetBanner(t *testing.T) {
	app, h := assetsApp(t)
	res := uploadBanner(t, h, map[string]string{"program": fx.ProgramP, "kind": "banner", "title": `Spring "sale" & <more>`, "active": "true"}, pngBytes(t, 120, 60))
	if res.Code != 200 {
		t.Fatalf("upload: %d %s", res.Code, res.Body)
	}
	id := res.JSON["id"].(string)
	stored, err := app.FindRecordById(collections.Assets, id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetInt("width") != 120 || stored.GetInt("height") != 60 {
		t.Errorf("size %dx%d, want 120x60", stored.GetInt("width"), stored.GetInt("height"))
	}
	if res := uploadBanner(t, h, map[string]string{"program": fx.ProgramP, "kind": "banner", "title": "cut short"}, pngBytes(t, 10, 10)[:20]); res.Code != 400 || fieldCode(res, "file") != "invalid_image" {
		t.Errorf("a broken image: %d %s", res.Code, res.Body)
	}

	a, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	item := affiliateAssets(t, h, fx.A.Token, "")[`Spring "sale" & <more>`]
	if item == nil {
		t.Fatal("A does not see the banner")
	}
	image := assetsPublicURL + "/api/files/" + stored.BaseFilesPath() + "/" + url.PathEscape(stored.GetString("file"))
	if item["image"] != image || item["thumb"] != image+"?thumb=300x0" {
		t.Errorf("image %v thumb %v, want %s", item["image"], item["thumb"], image)
	}
	link := assetsPublicURL + "/r/" + a.GetString("code")
	want := `<a href="` + link + `"><img src="` + image + `" alt="Spring &#34;sale&#34; &amp; &lt;more&gt;" width="120" height="60"></a>`
	if item["html"] != want {
		t.Errorf("banner html\n%v\nwant\n%s", item["html"], want)
	}
	if item["text"] != link {
		t.Errorf("banner text %v", item["text"])
	}
	for _, u := range []string{image, image + "?thumb=300x0"} {
		got := pbatest.Request(h, http.MethodGet, strings.TrimPrefix(u, assetsPublicURL), "", "")
		if got.Code != 200 || !strings.HasPrefix(got.Header().Get("Content-Type"), "image/") {
			t.Errorf("GET %s as a guest: %d %s", u, got.Code, got.Header().Get("Content-Type"))
		}
	}
}

// Who sees what: the active assets of the affiliate's program targeted at its tier (or at
// every tier); another tier's, another program's and drafts are 404 to the affiliate; pending
// and suspended affiliates get 403; a superuser previews as anyone, drafts included.
func TestAssetTargeting(t *testing.T) {
	app, h := assetsApp(t)
	a, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	a.Set("tier", fx.TierP)
	if err := app.Save(a); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, body := range []map[string]any{
		{"title": "all", "program": fx.ProgramP, "active": true},
		{"title": "gold", "program": fx.ProgramP, "active": true, "tiers": []string{fx.TierP}},
		{"title": "draft", "program": fx.ProgramP, "active": false},
		{"title": "q", "program": fx.ProgramQ, "active": true},
	} {
		body["kind"], body["body"] = "text", "{{.Link}}"
		res := postAsset(h, body)
		if res.Code != 200 {
			t.Fatalf("create %v: %d %s", body["title"], res.Code, res.Body)
		}
		ids[body["title"].(string)] = res.JSON["id"].(string)
	}
	titles := func(m map[string]map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if got := titles(affiliateAssets(t, h, fx.A.Token, "")); !slices.Equal(got, []string{"all", "gold"}) {
		t.Errorf("A (Gold) sees %v", got)
	}
	if got := titles(affiliateAssets(t, h, fx.B.Token, "")); !slices.Equal(got, []string{"all"}) {
		t.Errorf("B (no tier) sees %v", got)
	}
	if got := titles(affiliateAssets(t, h, fx.Superuser.Token, "?affiliate="+fx.B.ID)); !slices.Equal(got, []string{"all"}) {
		t.Errorf("preview as B: %v", got)
	}
	view := func(token, id, query string) *pbatest.Response {
		return pbatest.Request(h, http.MethodGet, "/api/pba/assets/"+id+query, token, "")
	}
	for _, c := range []struct {
		who, token, asset, query string
		want                     int
	}{
		{"A", fx.A.Token, "gold", "", 200},
		{"B", fx.B.Token, "gold", "", 404},
		{"B", fx.B.Token, "all", "", 200},
		{"B", fx.B.Token, "draft", "", 404},
		{"B", fx.B.Token, "q", "", 404},
		{"B", fx.B.Token, "nope", "", 404},
		{"B naming A", fx.B.Token, "all", "?affiliate=" + fx.A.ID, 403},
		{"pending", fx.Pending.Token, "all", "", 403},
		{"superuser without affiliate", fx.Superuser.Token, "all", "", 400},
		{"superuser as an unknown affiliate", fx.Superuser.Token, "all", "?affiliate=nobody", 400},
		{"superuser as B, Q's asset", fx.Superuser.Token, "q", "?affiliate=" + fx.B.ID, 404},
	} {
		id := ids[c.asset]
		if id == "" {
			id = "doesnotexist123"
		}
		if res := view(c.token, id, c.query); res.Code != c.want {
			t.Errorf("%s opens %s: %d %s, want %d", c.who, c.asset, res.Code, res.Body, c.want)
		}
	}
	// The preview of one asset also renders what the affiliate does not see, and says so.
	for asset, visible := range map[string]bool{"draft": false, "gold": false, "all": true} {
		res := view(fx.Superuser.Token, ids[asset], "?affiliate="+fx.B.ID)
		if res.Code != 200 || res.JSON["visible"] != visible {
			t.Errorf("preview %s as B: %d %s, want visible %v", asset, res.Code, res.Body, visible)
		}
	}
	if res := view(fx.A.Token, ids["all"], ""); res.Code != 200 || res.JSON["visible"] != nil {
		t.Errorf("an affiliate's view says visible: %s", res.Body)
	}

	// Pending and suspended affiliates get no material, not even a list.
	if res := pbatest.Request(h, http.MethodGet, "/api/pba/assets", fx.Pending.Token, ""); res.Code != 403 {
		t.Errorf("pending: %d", res.Code)
	}
	b, err := app.FindRecordById(collections.Affiliates, fx.B.ID)
	if err != nil {
		t.Fatal(err)
	}
	b.Set("status", collections.AffiliateSuspended)
	if err := app.Save(b); err != nil {
		t.Fatal(err)
	}
	if res := pbatest.Request(h, http.MethodGet, "/api/pba/assets", fx.B.Token, ""); res.Code != 403 {
		t.Errorf("suspended: %d %s", res.Code, res.Body)
	}
	// The superuser still previews as B.
	if got := titles(affiliateAssets(t, h, fx.Superuser.Token, "?affiliate="+fx.B.ID)); !slices.Equal(got, []string{"all"}) {
		t.Errorf("preview as suspended B: %v", got)
	}

	// Deleting Gold does not widen the Gold-only asset to everyone: it is switched off.
	tier, err := app.FindRecordById(collections.Tiers, fx.TierP)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Delete(tier); err != nil {
		t.Fatal(err)
	}
	gold, err := app.FindRecordById(collections.Assets, ids["gold"])
	if err != nil {
		t.Fatal(err)
	}
	if gold.GetBool("active") || len(gold.GetStringSlice("tiers")) != 0 {
		t.Errorf("after deleting its tier: active %v tiers %v", gold.GetBool("active"), gold.GetStringSlice("tiers"))
	}
}

// Announcing an asset queues one broadcast to its audience (approved affiliates of its program
// in its tiers) whose mail names the asset's title as typed; a draft cannot be announced.
func TestAssetAnnounce(t *testing.T) {
	app, h := assetsApp(t)
	app.Settings().SMTP.Enabled = true // the test app's mailer captures what is sent
	app.Settings().SMTP.Host = "127.0.0.1"
	for _, id := range []string{fx.A.ID, fx.Pending.ID} {
		r, err := app.FindRecordById(collections.Affiliates, id)
		if err != nil {
			t.Fatal(err)
		}
		r.Set("tier", fx.TierP)
		if err := app.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	const title = `Spring {{.Email}} & <b>deal</b>`
	res := postAsset(h, map[string]any{"program": fx.ProgramP, "kind": "text", "title": title, "body": "{{.Link}}", "tiers": []string{fx.TierP}, "active": true})
	if res.Code != 200 {
		t.Fatal(res.Body)
	}
	id := res.JSON["id"].(string)
	draft := postAsset(h, map[string]any{"program": fx.ProgramP, "kind": "text", "title": "draft", "body": "{{.Link}}"})
	if res := pbatest.Request(h, http.MethodPost, "/api/pba/assets/"+draft.JSON["id"].(string)+"/announce", fx.Superuser.Token, ""); res.Code != 400 || fieldCode(res, "active") != "inactive" {
		t.Errorf("announce a draft: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(h, http.MethodPost, "/api/pba/assets/nope/announce", fx.Superuser.Token, ""); res.Code != 404 {
		t.Errorf("announce nothing: %d", res.Code)
	}

	res = pbatest.Request(h, http.MethodPost, "/api/pba/assets/"+id+"/announce", fx.Superuser.Token, "")
	if res.Code != 201 {
		t.Fatalf("announce: %d %s", res.Code, res.Body)
	}
	msgID, _ := res.JSON["broadcast"].(string)
	msg, err := app.FindRecordById(collections.Messages, msgID)
	if err != nil {
		t.Fatalf("broadcast %q: %v", msgID, err)
	}
	// Material news is its own mail category: affiliates who opted out of it are skipped.
	if msg.GetString("kind") != "broadcast" || msg.GetString("status") == "draft" || msg.GetString("category") != collections.MailMaterial {
		t.Errorf("message %s %s %q", msg.GetString("kind"), msg.GetString("status"), msg.GetString("category"))
	}
	var audience map[string]any
	_ = json.Unmarshal([]byte(msg.GetString("audience")), &audience)
	if audience["program"] != fx.ProgramP || audience["status"] != "approved" || len(audience["tiers"].([]any)) != 1 {
		t.Errorf("audience %v", audience)
	}

	// The mail worker (started with the server) resolves it: only A, approved and Gold.
	var recipients []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		recipients = nil
		err := app.DB().Select("affiliate").From(collections.Deliveries).
			Where(dbx.HashExp{"message": msgID, "status": collections.DeliverySent}).Column(&recipients)
		if err != nil {
			t.Fatal(err)
		}
		if len(recipients) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var all []string
	if err := app.DB().Select("affiliate").From(collections.Deliveries).Where(dbx.HashExp{"message": msgID}).Column(&all); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recipients, []string{fx.A.ID}) || !slices.Equal(all, []string{fx.A.ID}) {
		t.Fatalf("delivered to %v (all %v), want A only", recipients, all)
	}
	var found bool
	for _, m := range app.TestMailer.Messages() {
		if m.To[0].Address != fx.A.Email || !strings.HasPrefix(m.Subject, "New promotional material") {
			continue
		}
		found = true
		if m.Subject != "New promotional material: "+title {
			t.Errorf("subject %q", m.Subject)
		}
		if !strings.Contains(m.HTML, "<strong>Spring {{.Email}} &amp; &lt;b&gt;deal&lt;/b&gt;</strong>") || strings.Contains(m.HTML, fx.A.Email) {
			t.Errorf("html %s", m.HTML)
		}
		if !strings.Contains(m.Text, "Spring {{.Email}} & <b>deal</b>") {
			t.Errorf("text %s", m.Text)
		}
	}
	if !found {
		t.Error("no mail to A")
	}
}
