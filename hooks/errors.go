package hooks

import validation "github.com/pocketbase/ozzo-validation/v4"

// fieldError is the error data of a 4xx that names the field at fault, in PocketBase's shape
// ({"field": {"code": …, "message": …}}), so clients handle ours like the records API's.
func fieldError(field, code, message string) validation.Errors {
	return validation.Errors{field: validation.NewError(code, message)}
}
