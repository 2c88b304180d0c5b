package hooks

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/questions"
)

// registerFeedback validates the program's application questions and the answers to them,
// the affiliates' mail preferences, and feedback: an affiliate's answer belongs to itself and
// its program whatever the body says, and carries a rating.
func registerFeedback(app core.App) {
	app.OnRecordValidate(collections.Programs).BindFunc(func(e *core.RecordEvent) error {
		if errs := normalizeQuestions(e.Record); len(errs) > 0 {
			return errs
		}
		return e.Next()
	})

	app.OnRecordValidate(collections.Affiliates).BindFunc(func(e *core.RecordEvent) error {
		errs := validation.Errors{}
		if err := normalizeAnswers(e.App, e.Record, errs); err != nil {
			return err
		}
		normalizeMailOptOut(e.Record, errs)
		if len(errs) > 0 {
			return errs
		}
		return e.Next()
	})

	// The application is what an admin decided on: once it is no longer pending, its answers
	// stay as they were (superusers may still correct them).
	app.OnRecordUpdateRequest(collections.Affiliates).BindFunc(func(e *core.RecordRequestEvent) error {
		if e.HasSuperuserAuth() || e.Record.Original().GetString(collections.FieldStatus) == collections.AffiliatePending {
			return e.Next()
		}
		before, _ := questions.ParseAnswers([]byte(e.Record.Original().GetString(collections.AffiliateAnswers)))
		after, err := questions.ParseAnswers([]byte(e.Record.GetString(collections.AffiliateAnswers)))
		if err == nil && !answersEqual(before, after) {
			return e.BadRequestError("Failed to update record.", fieldError(collections.AffiliateAnswers, "application_decided",
				"Your application has been decided; its answers can no longer change."))
		}
		return e.Next()
	})

	app.OnRecordCreateRequest(collections.Feedback).BindFunc(func(e *core.RecordRequestEvent) error {
		info, err := e.RequestInfo()
		if err != nil {
			return e.BadRequestError("Could not read the request body.", err)
		}
		if v, ok := info.Body[collections.FeedbackRating]; !ok || v == nil || v == "" {
			return e.BadRequestError("Failed to create record.", fieldError(collections.FeedbackRating, "required", "Rate from 0 to 10."))
		}
		if info.Auth != nil && info.Auth.Collection().Name == collections.Affiliates {
			e.Record.Set(collections.FieldAffiliate, info.Auth.Id)
			e.Record.Set(collections.FieldProgram, info.Auth.GetString(collections.FieldProgram))
		}
		return e.Next()
	})

	app.OnRecordValidate(collections.Feedback).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		if r.GetString(collections.FeedbackTopic) == "" {
			r.Set(collections.FeedbackTopic, collections.FeedbackTopicGeneral)
		}
		if r.GetString(collections.FieldProgram) == "" && r.GetString(collections.FieldAffiliate) != "" {
			if a, err := e.App.FindRecordById(collections.Affiliates, r.GetString(collections.FieldAffiliate)); err == nil {
				r.Set(collections.FieldProgram, a.GetString(collections.FieldProgram))
			}
		}
		return e.Next()
	})
}

// normalizeQuestions checks programs.questions and stores them normalized; errors are keyed
// questions[i].field.
func normalizeQuestions(r *core.Record) validation.Errors {
	qs, err := questions.Parse([]byte(r.GetString(collections.ProgramQuestions)))
	if err != nil {
		return fieldError(collections.ProgramQuestions, "invalid_questions", err.Error())
	}
	if ferrs := questions.Check(qs); len(ferrs) > 0 {
		return fieldErrors(ferrs, "", "invalid_question")
	}
	if qs == nil {
		qs = []questions.Question{}
	}
	r.Set(collections.ProgramQuestions, qs)
	return nil
}

// programQuestions reads a program's questions (none when it has none or cannot be read:
// they were validated when saved).
func programQuestions(app core.App, programID string) ([]questions.Question, error) {
	if programID == "" {
		return nil, nil
	}
	p, err := app.FindRecordById(collections.Programs, programID)
	if err != nil {
		return nil, fmt.Errorf("find program %s: %w", programID, err)
	}
	qs, _ := questions.Parse([]byte(p.GetString(collections.ProgramQuestions)))
	return qs, nil
}

// normalizeAnswers checks affiliates.answers against the program's questions when an affiliate
// is created or its answers change (questions edited later do not invalidate old answers), and
// stores them trimmed. Errors go into errs keyed answers.<id>; a database failure is returned.
func normalizeAnswers(app core.App, r *core.Record, errs validation.Errors) error {
	raw := r.GetString(collections.AffiliateAnswers)
	answers, err := questions.ParseAnswers([]byte(raw))
	if err != nil {
		errs[collections.AffiliateAnswers] = validation.NewError("invalid_answers", err.Error())
		return nil
	}
	if !r.IsNew() {
		before, _ := questions.ParseAnswers([]byte(r.Original().GetString(collections.AffiliateAnswers)))
		if answersEqual(before, answers) {
			return nil
		}
	}
	qs, err := programQuestions(app, r.GetString(collections.FieldProgram))
	if err != nil {
		return err
	}
	ferrs := questions.CheckAnswers(qs, answers)
	maps.Copy(errs, fieldErrors(ferrs, collections.AffiliateAnswers+".", "invalid_answer"))
	if len(ferrs) == 0 {
		r.Set(collections.AffiliateAnswers, answers)
	}
	return nil
}

// answersEqual compares two sets of answers, ignoring surrounding blanks and empty answers.
func answersEqual(a, b map[string]string) bool {
	clean := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if v = strings.TrimSpace(v); v != "" {
				out[k] = v
			}
		}
		return out
	}
	return maps.Equal(clean(a), clean(b))
}

// normalizeMailOptOut checks affiliates.mail_opt_out (known categories, each once) and stores
// it sorted in the order of collections.MailCategories.
func normalizeMailOptOut(r *core.Record, errs validation.Errors) {
	raw := strings.TrimSpace(r.GetString(collections.AffiliateMailOptOut))
	if raw == "" || raw == "null" {
		return
	}
	var given []string
	if err := json.Unmarshal([]byte(raw), &given); err != nil {
		errs[collections.AffiliateMailOptOut] = validation.NewError("invalid_opt_out", `Must be a list of mail categories, e.g. ["digest","survey"].`)
		return
	}
	var out []string
	for _, c := range collections.MailCategories() {
		if slices.Contains(given, c) {
			out = append(out, c)
		}
	}
	for _, c := range given {
		if !slices.Contains(out, c) {
			errs[collections.AffiliateMailOptOut] = validation.NewError("unknown_category",
				fmt.Sprintf("%q is not a mail category (%s).", c, strings.Join(collections.MailCategories(), ", ")))
			return
		}
	}
	if out == nil {
		out = []string{}
	}
	r.Set(collections.AffiliateMailOptOut, out)
}

// fieldErrors turns pure field errors into PocketBase's, each key prefixed.
func fieldErrors(ferrs map[string]string, prefix, code string) validation.Errors {
	out := validation.Errors{}
	for k, msg := range ferrs {
		out[prefix+k] = validation.NewError(code, msg)
	}
	return out
}
