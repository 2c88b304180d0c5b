package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// The affiliates' create rule (signup) also refuses webhook_secret, as the update rule does
// since 1795478900, so a signup cannot choose the secret its webhooks are signed with even in
// a batch request, which skips the write guard.
func init() {
	const before = `@request.body.status:isset = false && @request.body.tier:isset = false && @request.body.commission_override:isset = false && @request.body.stripe_account_id:isset = false && @request.body.payouts_enabled:isset = false && @request.body.notes:isset = false && @request.body.tags:isset = false`
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		c.CreateRule = types.Pointer(before + ` && @request.body.webhook_secret:isset = false`)
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		c.CreateRule = types.Pointer(before)
		return app.Save(c)
	})
}
