package hooks

import (
	"net/http"
	"slices"
	"sort"
	"strings"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// writePolicy lists the fields an affiliate (or a guest signing up) may send to the records API
// of one collection. Anything else is refused with 403 naming the field, before PocketBase's
// own API rules run; the rules repeat the most important refusals so the dashboard shows them
// and a batch request cannot slip past.
type writePolicy struct {
	create []string
	update []string
}

// writePolicies is per collection; collections not listed are written by superusers only
// (their create/update rules are nil).
func writePolicies() map[string]writePolicy {
	profile := []string{
		collections.FieldName,
		collections.AffiliatePayoutEmail,
		collections.AffiliatePayoutMethod,
		collections.AffiliatePreferredChannel,
		collections.AffiliateWebhookURL,
		collections.AffiliateTimezone,
		collections.AffiliateAnswers,
		collections.AffiliateMailOptOut,
		core.FieldNamePassword, "passwordConfirm", "oldPassword", core.FieldNameEmailVisibility,
	}
	return map[string]writePolicy{
		collections.Affiliates: {
			create: append(slices.Clone(profile), core.FieldNameEmail, collections.FieldCode, collections.FieldProgram),
			update: profile,
		},
		collections.Links: {
			create: []string{collections.FieldAffiliate, collections.FieldProgram, collections.FieldCode,
				collections.LinkDestination, collections.LinkLabel, collections.LinkSubID},
			update: []string{collections.LinkDestination, collections.LinkLabel, collections.LinkSubID, collections.LinkArchived},
		},
		// An affiliate's own feedback: the server sets affiliate and program; survey answers come
		// from the signed links of survey mail.
		collections.Feedback: {
			create: []string{collections.FeedbackRating, collections.FeedbackTopic, collections.FeedbackComment},
			update: []string{collections.FeedbackRating, collections.FeedbackTopic, collections.FeedbackComment},
		},
		// Superusers only (the rules say so too); listed so a refusal names the field, e.g. imported.
		collections.Conversions: {},
	}
}

func registerWriteGuards(app core.App) {
	policies := writePolicies()
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		se.Router.BindFunc(func(e *core.RequestEvent) error {
			isCreate := e.Request.Method == http.MethodPost && strings.HasSuffix(e.Request.Pattern, "/records")
			isUpdate := e.Request.Method == http.MethodPatch && strings.HasSuffix(e.Request.Pattern, "/records/{id}")
			if !isCreate && !isUpdate || e.HasSuperuserAuth() {
				return e.Next()
			}
			collection, err := e.App.FindCachedCollectionByNameOrId(e.Request.PathValue("collection"))
			if err != nil {
				return e.Next() // PocketBase answers the 404
			}
			policy, ok := policies[collection.Name]
			if !ok {
				return e.Next()
			}
			allowed := policy.update
			if isCreate {
				allowed = policy.create
			}
			info, err := e.RequestInfo()
			if err != nil {
				return e.BadRequestError("Could not read the request body.", err)
			}
			if errs := forbiddenFields(info.Body, allowed); len(errs) > 0 {
				return e.ForbiddenError("You may not set these fields.", errs)
			}
			return e.Next()
		})
		return se.Next()
	})
}

// forbiddenFields returns a validation error per body key that is not in allowed.
// PocketBase's modifiers (`field+`, `+field`, `field-`) count as the field itself.
func forbiddenFields(body map[string]any, allowed []string) validation.Errors {
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	errs := validation.Errors{}
	for _, k := range keys {
		field := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(k, "+"), "+"), "-")
		if !slices.Contains(allowed, field) {
			errs[field] = validation.NewError("forbidden_field", "This field can only be changed by an admin.")
		}
	}
	return errs
}
