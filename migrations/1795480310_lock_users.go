package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// PocketBase creates a `users` auth collection with open signup; pbaffiliate uses `affiliates`
// and nothing reads `users`, so anyone could create accounts (and have mail sent) for nothing.
// It is locked, not deleted, so an installation that put rows in it keeps them: superusers
// only, and nobody can sign in to it. An admin who wants it can reopen it in the dashboard.
func init() {
	m.Register(lockUsersUp, lockUsersDown)
}

func lockUsersUp(app core.App) error {
	users, err := app.FindCollectionByNameOrId("users")
	if err != nil {
		return nil // already removed by an admin
	}
	users.ListRule, users.ViewRule, users.CreateRule, users.UpdateRule, users.DeleteRule = nil, nil, nil, nil, nil
	users.AuthRule, users.ManageRule = nil, nil // nil AuthRule: no sign-in of any kind
	users.PasswordAuth.Enabled, users.OAuth2.Enabled, users.OTP.Enabled, users.MFA.Enabled = false, false, false, false
	return app.Save(users)
}

// lockUsersDown restores PocketBase's defaults for the collection.
func lockUsersDown(app core.App) error {
	users, err := app.FindCollectionByNameOrId("users")
	if err != nil {
		return nil
	}
	owner := "id = @request.auth.id"
	users.ListRule, users.ViewRule, users.UpdateRule, users.DeleteRule = types.Pointer(owner), types.Pointer(owner), types.Pointer(owner), types.Pointer(owner)
	users.CreateRule, users.AuthRule = types.Pointer(""), types.Pointer("")
	users.PasswordAuth.Enabled = true
	return app.Save(users)
}
