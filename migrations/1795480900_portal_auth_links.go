package migrations

import (
	"strings"

	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// The affiliates' verification and password reset mails link to the portal's own pages
// (/portal/#/verify/{TOKEN}, /portal/#/reset/{TOKEN}) instead of PocketBase's dashboard, so an
// affiliate never lands in the admin UI. Only the action URL changes; text an admin edited stays.
func init() {
	const (
		dashVerify = "{APP_URL}/_/#/auth/confirm-verification/{TOKEN}"
		dashReset  = "{APP_URL}/_/#/auth/confirm-password-reset/{TOKEN}"
		portVerify = "{APP_URL}/portal/#/verify/{TOKEN}"
		portReset  = "{APP_URL}/portal/#/reset/{TOKEN}"
	)
	swap := func(app core.App, verifyFrom, verifyTo, resetFrom, resetTo string) error {
		c, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		c.VerificationTemplate.Body = strings.ReplaceAll(c.VerificationTemplate.Body, verifyFrom, verifyTo)
		c.ResetPasswordTemplate.Body = strings.ReplaceAll(c.ResetPasswordTemplate.Body, resetFrom, resetTo)
		return app.Save(c)
	}
	m.Register(func(app core.App) error {
		return swap(app, dashVerify, portVerify, dashReset, portReset)
	}, func(app core.App) error {
		return swap(app, portVerify, dashVerify, portReset, dashReset)
	})
}
