package hooks

import (
	"strings"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// registerCodeAliases keeps code_aliases in the one /r/{code} namespace whoever saves a row
// (the import, or an admin in the dashboard): the code is lowercased and may not be a link's
// code or another affiliate's code or alias. An alias equal to its own affiliate's code is
// allowed: the import records every legacy code it brought, also the ones it kept as codes.
func registerCodeAliases(app core.App) {
	app.OnRecordValidate(collections.CodeAliases).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		code := strings.ToLower(strings.TrimSpace(r.GetString(collections.FieldCode)))
		r.Set(collections.FieldCode, code)
		if code != "" {
			taken, err := collections.CodeTaken(e.App, code, r.GetString(collections.FieldAffiliate))
			if err != nil {
				return err
			}
			if taken {
				return validation.Errors{collections.FieldCode: validation.NewError("code_taken", "This code is already in use by another affiliate or a link.")}
			}
		}
		return e.Next()
	})
}
