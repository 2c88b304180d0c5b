package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Feedback, surveys, application questions and email preferences:
//   - programs.questions: the program's own application questions (validated by hooks);
//   - affiliates.answers: an applicant's answers to them;
//   - affiliates.mail_opt_out: categories of non-transactional mail the affiliate declines;
//   - messages.category: which of those categories a broadcast belongs to (empty: broadcast);
//   - surveys: NPS surveys an admin schedules to an audience; superusers only;
//   - feedback: ratings 0–10 with a topic and a comment; an affiliate creates and reads its own
//     and edits the rating, topic and comment of its own; one answer per affiliate, survey and
//     round (the survey's sending) when a survey is set.
func init() {
	const own = `@request.auth.collectionName = "affiliates" && affiliate = @request.auth.id`
	m.Register(func(app core.App) error {
		programs, err := app.FindCollectionByNameOrId("programs")
		if err != nil {
			return err
		}
		programs.Fields.Add(&core.JSONField{Name: "questions", MaxSize: 64 << 10, Help: "Application questions: [{id, label, kind text|choice|url, required, choices}]."})
		if err := app.Save(programs); err != nil {
			return err
		}

		affiliates, err := app.FindCollectionByNameOrId("affiliates")
		if err != nil {
			return err
		}
		affiliates.Fields.Add(
			&core.JSONField{Name: "answers", MaxSize: 64 << 10, Help: "Answers to the program's questions, by question id."},
			&core.JSONField{Name: "mail_opt_out", MaxSize: 1 << 10, Help: "Mail categories declined: broadcast, digest, survey, incentive, material."},
		)
		if err := app.Save(affiliates); err != nil {
			return err
		}

		messages, err := app.FindCollectionByNameOrId("messages")
		if err != nil {
			return err
		}
		messages.Fields.Add(&core.SelectField{Name: "category", MaxSelect: 1, Values: []string{"broadcast", "incentive", "material"},
			Help: "Mail category affiliates may opt out of; empty is broadcast."})
		if err := app.Save(messages); err != nil {
			return err
		}

		surveys := core.NewBaseCollection("surveys")
		surveys.Fields.Add(
			&core.TextField{Name: "name", Required: true, Max: 200},
			&core.TextField{Name: "question", Required: true, Max: 500, Help: "The 0–10 question, e.g. How likely are you to recommend our program to a friend?"},
			&core.RelationField{Name: "program", CollectionId: programs.Id, MaxSelect: 1, CascadeDelete: true},
			&core.JSONField{Name: "audience", MaxSize: 4 << 10, Help: "As messages.audience: status, tier, tags."},
			&core.TextField{Name: "schedule", Max: 120, Help: "Cron spec of recurring sends (e.g. quarterly 0 9 1 1,4,7,10 *); empty: once at send_at."},
			&core.DateField{Name: "send_at", Help: "One-off send time, or the time before which a schedule does not start."},
			&core.BoolField{Name: "active"},
			&core.DateField{Name: "last_sent", Help: "The round last sent (server-owned)."},
			&core.AutodateField{Name: "created", OnCreate: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		if err := app.Save(surveys); err != nil {
			return err
		}

		feedback := core.NewBaseCollection("feedback")
		feedback.ListRule = types.Pointer(own)
		feedback.ViewRule = feedback.ListRule
		feedback.CreateRule = types.Pointer(`@request.auth.collectionName = "affiliates" && @request.body.survey:isset = false && @request.body.round:isset = false`)
		feedback.UpdateRule = types.Pointer(own + ` && @request.body.affiliate:isset = false && @request.body.program:isset = false && @request.body.survey:isset = false && @request.body.round:isset = false`)
		feedback.Fields.Add(
			&core.RelationField{Name: "affiliate", Required: true, CollectionId: affiliates.Id, MaxSelect: 1, CascadeDelete: true},
			&core.RelationField{Name: "program", Required: true, CollectionId: programs.Id, MaxSelect: 1, CascadeDelete: true},
			&core.NumberField{Name: "rating", OnlyInt: true, Min: types.Pointer(0.0), Max: types.Pointer(10.0), Help: "0–10 (NPS)."},
			&core.SelectField{Name: "topic", MaxSelect: 1, Values: []string{"general", "program", "portal", "payouts", "materials", "support", "other"}},
			&core.TextField{Name: "comment", Max: 2000},
			&core.RelationField{Name: "survey", CollectionId: surveys.Id, MaxSelect: 1, CascadeDelete: true},
			&core.TextField{Name: "round", Max: 32, Help: "The survey's sending this answers (server-owned)."},
			&core.AutodateField{Name: "created", OnCreate: true},
			&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true},
		)
		feedback.AddIndex("idx_feedback_survey_answer", true, "affiliate, survey, round", "survey != ''")
		feedback.AddIndex("idx_feedback_created", false, "created", "")
		feedback.AddIndex("idx_feedback_survey", false, "survey, round", "")
		return app.Save(feedback)
	}, func(app core.App) error {
		for _, name := range []string{"feedback", "surveys"} {
			c, err := app.FindCollectionByNameOrId(name)
			if err != nil {
				return err
			}
			if err := app.Delete(c); err != nil {
				return err
			}
		}
		for name, fields := range map[string][]string{"programs": {"questions"}, "affiliates": {"answers", "mail_opt_out"}, "messages": {"category"}} {
			c, err := app.FindCollectionByNameOrId(name)
			if err != nil {
				return err
			}
			for _, f := range fields {
				c.Fields.RemoveByName(f)
			}
			if err := app.Save(c); err != nil {
				return err
			}
		}
		return nil
	})
}
