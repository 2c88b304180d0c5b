package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// The affiliates' update rule also refuses webhook_secret (added with the conversions), so
// the refusal holds even for requests that bypass the write guard (batch requests).
func init() {
	m.Register(func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		c.UpdateRule = types.Pointer(`id = @request.auth.id && @request.body.status:isset = false && @request.body.code:isset = false && @request.body.program:isset = false && @request.body.tier:isset = false && @request.body.commission_override:isset = false && @request.body.stripe_account_id:isset = false && @request.body.payouts_enabled:isset = false && @request.body.notes:isset = false && @request.body.tags:isset = false && @request.body.webhook_secret:isset = false`)
		return app.Save(c)
	}, func(app core.App) error {
		c, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		c.UpdateRule = types.Pointer(`id = @request.auth.id && @request.body.status:isset = false && @request.body.code:isset = false && @request.body.program:isset = false && @request.body.tier:isset = false && @request.body.commission_override:isset = false && @request.body.stripe_account_id:isset = false && @request.body.payouts_enabled:isset = false && @request.body.notes:isset = false && @request.body.tags:isset = false`)
		return app.Save(c)
	})
}
