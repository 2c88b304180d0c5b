package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"

	validation "github.com/pocketbase/ozzo-validation/v4"
)

// decodeStrict decodes raw, which must be exactly one JSON object, into the struct v: an
// unknown field, a value of the wrong type (an integer sent as "1999" or 19.99) and anything
// after the object are refused, each named (the whole body as "body"), for a 400 in
// PocketBase's shape. A lenient decoder would take the first object of `{…}{…}` and drop the
// rest, or take "1999" for a number, and the sender would never learn it sent nonsense.
func decodeStrict(raw []byte, v any) validation.Errors {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFieldError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fieldError("body", "trailing_data", "Nothing may follow the JSON object.")
	}
	return nil
}

// jsonFieldError names the field a decoding error is about.
func jsonFieldError(err error) validation.Errors {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return fieldError(typeErr.Field, "invalid_type", "Must be "+jsonKind(typeErr.Type)+".")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if unquoted, uerr := strconv.Unquote(name); uerr == nil {
			name = unquoted
		}
		return fieldError(name, "unknown_field", "Not a field of this request.")
	}
	return fieldError("body", "invalid_json", "A JSON object of the documented fields.")
}

// jsonKind says what JSON a Go type takes.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer (a JSON number without quotes or decimals)"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}
