package hooks

import (
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
)

// textFields are the fields of a collection that people type: one-line ones refuse every
// control character, multi-line ones allow tabs and line breaks; both refuse the
// bidirectional controls. Codes, slugs, emails and URLs have their own patterns.
type textFields struct {
	line, multiline []string
}

// plainTextFields lists them per collection (docs/operations.md, "Strict input").
func plainTextFields() map[string]textFields {
	return map[string]textFields{
		collections.Affiliates:  {line: []string{collections.FieldName}, multiline: []string{collections.AffiliateNotes}},
		collections.Links:       {line: []string{collections.LinkLabel, collections.LinkSubID}},
		collections.Programs:    {line: []string{collections.FieldName}},
		collections.Tiers:       {line: []string{collections.FieldName}},
		collections.Conversions: {line: []string{collections.ConversionExternalID, collections.ConversionCustomer, collections.ConversionReason, collections.ConversionSubscriptionID}},
		collections.Commissions: {multiline: []string{"note"}},
		collections.Payouts:     {line: []string{"reference"}},
		collections.Messages:    {line: []string{collections.MessageSubject}},
		collections.Assets:      {line: []string{collections.AssetTitle}, multiline: []string{collections.AssetBody}},
		collections.Feedback:    {multiline: []string{collections.FeedbackComment}},
		collections.Surveys:     {line: []string{collections.FieldName, collections.SurveyQuestion}},
	}
}

// registerPlainText refuses, with a 400 naming the field, text that does not display as what
// it contains (NUL, escapes, U+202E RIGHT-TO-LEFT OVERRIDE, …) in those fields, whoever saves
// the record: an affiliate's signup or profile, a link, a superuser in the dashboard.
func registerPlainText(app core.App) {
	for collection, fields := range plainTextFields() {
		app.OnRecordValidate(collection).BindFunc(func(e *core.RecordEvent) error {
			errs := validation.Errors{}
			for _, f := range fields.line {
				if !textcheck.Line(e.Record.GetString(f)) {
					errs[f] = validation.NewError("invalid_characters", textcheck.Message)
				}
			}
			for _, f := range fields.multiline {
				if !textcheck.Text(e.Record.GetString(f)) {
					errs[f] = validation.NewError("invalid_characters", textcheck.Message)
				}
			}
			if len(errs) > 0 {
				return errs
			}
			return e.Next()
		})
	}
}
