package migrations

import (
	"strings"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// The affiliates' email change mail links to the portal's own page
// (/portal/#/email-change/{TOKEN}) instead of PocketBase's dashboard, like the verification and
// reset mails (1795480900). Only the action URL changes; text an admin edited stays.
func init() {
	const (
		dashChange = "{APP_URL}/_/#/auth/confirm-email-change/{TOKEN}"
		portChange = "{APP_URL}/portal/#/email-change/{TOKEN}"
	)
	swap := func(app core.App, from, to string) error {
		c, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		c.ConfirmEmailChangeTemplate.Body = strings.ReplaceAll(c.ConfirmEmailChangeTemplate.Body, from, to)
		return app.Save(c)
	}
	m.Register(func(app core.App) error {
		return swap(app, dashChange, portChange)
	}, func(app core.App) error {
		return swap(app, portChange, dashChange)
	})
}
