package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// assets are a program's promotional materials: banners (an image), texts, emails and social
// posts whose body is a template over the affiliate's link, code, name, program and coupon
// (hooks/assets.go validates it on save and renders it per affiliate). Optional tier targeting
// (empty: every affiliate of the program). No rules: superusers write them in the back office;
// affiliates read them rendered through GET /api/pba/assets, never as raw records. The image
// itself is public (not protected): banners are pasted into affiliates' sites.
func init() {
	m.Register(func(app core.App) error {
		programs, err := app.FindCollectionByNameOrId("programs")
		if err != nil {
			return err
		}
		tiers, err := app.FindCollectionByNameOrId("tiers")
		if err != nil {
			return err
		}
		c := core.NewBaseCollection("assets")
		c.Fields.Add(
			&core.RelationField{Name: "program", Required: true, MaxSelect: 1, CollectionId: programs.Id, CascadeDelete: true},
			&core.RelationField{Name: "tiers", MaxSelect: 50, CollectionId: tiers.Id, Help: "Empty: every affiliate of the program."},
			&core.SelectField{Name: "kind", Required: true, MaxSelect: 1, Values: []string{"banner", "text", "email", "social"}},
			&core.TextField{Name: "title", Required: true, Max: 200},
			&core.FileField{Name: "file", MaxSelect: 1, MaxSize: 5 << 20,
				MimeTypes: []string{"image/png", "image/jpeg", "image/gif", "image/webp"}, Thumbs: []string{"100x100", "300x0"}},
			&core.TextField{Name: "body", Max: 20000, Help: "Template: {{.Link}} {{.Code}} {{.Name}} {{.Program}} {{.Coupon}}"},
			&core.TextField{Name: "destination", Max: 2048, Help: "Optional deep link on the program's allowed domains."},
			&core.BoolField{Name: "active"},
			&core.NumberField{Name: "order", OnlyInt: true},
			&core.NumberField{Name: "width", OnlyInt: true, Min: types.Pointer(0.0)},
			&core.NumberField{Name: "height", OnlyInt: true, Min: types.Pointer(0.0)},
			&core.AutodateField{Name: "created", OnCreate: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		c.AddIndex("idx_assets_program", false, "program, active, `order`", "")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("assets")
		if err != nil {
			return err
		}
		return app.Delete(c)
	})
}
