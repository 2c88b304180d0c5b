package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// code_aliases: the legacy codes `pbaffiliate import` brought from another platform (a
// Rewardful ?via= token, a FirstPromoter ref_id, a Tapfiliate referral code), each mapped to
// its affiliate, so the old links keep crediting them. Lowercase, URL-safe, wider than our own
// code pattern (underscores, dots, short codes). Superusers only (no rules).
func init() {
	m.Register(func(app core.App) error {
		affiliates, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		c := core.NewBaseCollection("code_aliases")
		c.Fields.Add(
			&core.TextField{Name: "code", Required: true, Max: 64, Pattern: `^[a-z0-9][a-z0-9_.~-]{0,63}$`,
				Help: "The legacy code, lowercased: old links with ?via=, ?ref=, ?fpr=, ?tap_a= … or /r/{code} credit the affiliate."},
			&core.RelationField{Name: "affiliate", Required: true, MaxSelect: 1, CollectionId: affiliates.Id, CascadeDelete: true},
			&core.TextField{Name: "source", Required: true, Max: 32, Help: "Platform the code came from: rewardful, firstpromoter, tapfiliate, csv."},
			&core.AutodateField{Name: "created", OnCreate: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		c.AddIndex("idx_code_aliases_code", true, "code", "")
		c.AddIndex("idx_code_aliases_affiliate", false, "affiliate", "")
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("code_aliases")
		if err != nil {
			return err
		}
		return app.Delete(c)
	})
}
