package hooks

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/nps"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/surveyround"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// surveyKeyPrefix starts the idempotency key of a survey mail: survey:<survey>:<round>:<affiliate>.
const surveyKeyPrefix = "survey:"

// surveyTokenPurpose signs the rating links of survey mail (the unsubscribe key and scheme).
const surveyTokenPurpose = "survey"

// surveyMails sends the surveys admins schedule: each round of an active survey becomes one
// marketing delivery (category survey) per member of its audience, whose mail carries one
// signed link per score 0–10. The links record the affiliate's answer for that survey and
// round (one answer, changed by a later click) and open a page asking for a comment. Queued by
// the mail worker under its lease, like broadcasts.
type surveyMails struct {
	app    core.App
	outbox *mailOutbox
	signer *unsubscribes
	now    func() time.Time
	signal func()
}

// newSurveyMails returns the surveys of an app, queued through outbox and signed by signer.
func newSurveyMails(app core.App, outbox *mailOutbox, signer *unsubscribes, now func() time.Time, signal func()) *surveyMails {
	return &surveyMails{app: app, outbox: outbox, signer: signer, now: now, signal: signal}
}

// bind validates surveys and wakes the worker when one is saved active.
func (s *surveyMails) bind() {
	s.app.OnRecordValidate(collections.Surveys).BindFunc(func(e *core.RecordEvent) error {
		if errs := validateSurvey(e.Record); len(errs) > 0 {
			return errs
		}
		return e.Next()
	})
	kick := func(e *core.RecordEvent) error {
		if e.Record.GetBool(collections.SurveyActive) {
			s.signal()
		}
		return e.Next()
	}
	s.app.OnRecordAfterCreateSuccess(collections.Surveys).BindFunc(kick)
	s.app.OnRecordAfterUpdateSuccess(collections.Surveys).BindFunc(kick)
}

// validateSurvey checks the schedule, the audience and that an active survey without a
// schedule has a send time.
func validateSurvey(r *core.Record) validation.Errors {
	errs := validation.Errors{}
	spec := strings.TrimSpace(r.GetString(collections.SurveySchedule))
	r.Set(collections.SurveySchedule, spec)
	if err := surveyround.Check(spec); err != nil {
		errs[collections.SurveySchedule] = validation.NewError("invalid_cron", "The schedule "+err.Error())
	}
	if spec == "" && r.GetBool(collections.SurveyActive) && r.GetDateTime(collections.SurveySendAt).IsZero() {
		errs[collections.SurveySendAt] = validation.NewError("required", "A survey without a schedule is sent once at send_at: set it.")
	}
	if _, err := surveyAudience(r); err != nil {
		errs[collections.SurveyAudience] = validation.NewError("invalid_audience", err.Error())
	}
	return errs
}

// surveyAudience is the survey's audience filter (the broadcasts' own), its program the
// survey's when set.
func surveyAudience(r *core.Record) (audienceFilter, error) {
	var f audienceFilter
	if raw := strings.TrimSpace(r.GetString(collections.SurveyAudience)); raw != "" && raw != "null" {
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			return f, errors.New(`must be an object like {"status":"approved","tier":"","tags":["vip"]}`)
		}
	}
	if _, err := f.statuses(); err != nil {
		return f, err
	}
	if p := r.GetString(collections.FieldProgram); p != "" {
		f.Program = p
	}
	return f, nil
}

// queueDue queues the due round of every active survey. A crash after some deliveries is
// harmless: last_sent is written after them and the keys make the next pass a no-op for rows
// already written.
func (s *surveyMails) queueDue() error {
	var ids []string
	err := s.app.DB().Select(core.FieldNameId).From(collections.Surveys).Where(dbx.HashExp{collections.SurveyActive: true}).OrderBy(core.FieldNameId).Column(&ids)
	if err != nil {
		return fmt.Errorf("list active surveys: %w", err)
	}
	now := s.now()
	for _, id := range ids {
		r, err := s.app.FindRecordById(collections.Surveys, id)
		if err != nil {
			return fmt.Errorf("find survey %s: %w", id, err)
		}
		round, due, err := surveyround.Due(r.GetString(collections.SurveySchedule), r.GetDateTime(collections.SurveySendAt).Time(),
			r.GetDateTime(collections.SurveyLastSent).Time(), r.GetDateTime("created").Time(), now)
		if err != nil || !due {
			continue // a spec that no longer parses was valid when saved: nothing to send
		}
		if err := s.queueRound(r, round); err != nil {
			return err
		}
	}
	return nil
}

// surveyDelivery is what a survey mail's delivery row carries.
type surveyDelivery struct {
	Survey string `json:"survey"`
	Round  string `json:"round"`
}

// queueRound writes one delivery per audience member for a survey's round and marks it sent.
func (s *surveyMails) queueRound(r *core.Record, round time.Time) error {
	filter, err := surveyAudience(r)
	if err != nil {
		return nil // validated on save
	}
	members, err := audienceMembers(s.app, filter)
	if err != nil {
		return fmt.Errorf("resolve audience of survey %s: %w", r.Id, err)
	}
	key := surveyround.Key(round)
	data, err := json.Marshal(surveyDelivery{Survey: r.Id, Round: key})
	if err != nil {
		return fmt.Errorf("encode survey delivery: %w", err)
	}
	err = s.outbox.enqueueAudience(members, collections.MailSurvey, func(m audienceMember) deliveryRow {
		return deliveryRow{Affiliate: m.ID, Email: m.Email, Template: templateSurvey, Status: collections.DeliveryQueued,
			IdempotencyKey: surveyKeyPrefix + r.Id + ":" + key + ":" + m.ID, Marketing: true, Data: string(data)}
	})
	if err != nil {
		return fmt.Errorf("write deliveries of survey %s: %w", r.Id, err)
	}
	_, err = s.app.DB().NewQuery("UPDATE {{surveys}} SET [[last_sent]] = {:round}, [[updated]] = {:now} WHERE [[id]] = {:id}").
		Bind(dbx.Params{"round": store.DBTime(round), "now": store.DBTime(s.now()), "id": r.Id}).Execute()
	if err != nil {
		return fmt.Errorf("mark survey %s sent: %w", r.Id, err)
	}
	return nil
}

// surveyToken signs "<affiliate>.<survey>.<round>": the answer a rating link records.
func (s *surveyMails) surveyToken(affiliate, survey, round string) (string, error) {
	return s.signer.signed(surveyTokenPurpose, affiliate+"."+survey+"."+round)
}

// surveyAnswerKey is what a valid token names.
type surveyAnswerKey struct {
	Affiliate, Survey, Round string
}

// parseSurveyToken checks a rating link's token.
func (s *surveyMails) parseSurveyToken(token string) (surveyAnswerKey, bool) {
	payload, ok := s.signer.verified(surveyTokenPurpose, token)
	if !ok {
		return surveyAnswerKey{}, false
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return surveyAnswerKey{}, false
	}
	return surveyAnswerKey{Affiliate: parts[0], Survey: parts[1], Round: parts[2]}, true
}

// surveyURL is the rating link of one score ("" score: the comment form's action base).
func (s *surveyMails) surveyURL(token string, score int) string {
	return s.signer.publicBase() + "/api/pba/survey?token=" + url.QueryEscape(token) + "&score=" + strconv.Itoa(score)
}

// mailSurvey is what a survey mail shows: the question and one link per score.
type mailSurvey struct {
	Name     string
	Question string
	Ratings  []mailRating
}

// mailRating is one score's link.
type mailRating struct {
	Score int
	URL   string
}

// surveyMailData adds the survey's question and the affiliate's signed rating links to d; a
// survey deleted or paused since it was queued is skipped.
func (s *surveyMails) surveyMailData(r deliveryRow, d *mailData) (string, error) {
	var sd surveyDelivery
	if err := json.Unmarshal([]byte(r.Data), &sd); err != nil {
		return "", fmt.Errorf("survey of %s: %w", r.IdempotencyKey, err)
	}
	sv, err := s.app.FindRecordById(collections.Surveys, sd.Survey)
	if errors.Is(err, sql.ErrNoRows) {
		return "survey deleted", nil
	} else if err != nil {
		return "", fmt.Errorf("find survey %s: %w", sd.Survey, err)
	}
	if !sv.GetBool(collections.SurveyActive) {
		return "survey inactive", nil
	}
	token, err := s.surveyToken(r.Affiliate, sd.Survey, sd.Round)
	if err != nil {
		return "", err
	}
	d.Survey = mailSurvey{Name: sv.GetString(collections.FieldName), Question: sv.GetString(collections.SurveyQuestion)}
	for score := nps.MinRating; score <= nps.MaxRating; score++ {
		d.Survey.Ratings = append(d.Survey.Ratings, mailRating{Score: score, URL: s.surveyURL(token, score)})
	}
	return "", nil
}

// surveyTemplate is the survey mail. Not an editable template: the links are the point.
var surveyTemplate = lifecycleTemplate{
	subject: "{{.Survey.Question}}",
	text: "Hi {{.Name}},\n\n{{.Survey.Question}}\n\nClick a score from 0 (not at all likely) to 10 (extremely likely):\n" +
		"{{range .Survey.Ratings}}{{.Score}}: {{.URL}}\n{{end}}\nOne click records your answer; you can change it or add a comment on the page that opens.\n",
	html: `<p>Hi {{.Name}},</p><p><strong>{{.Survey.Question}}</strong></p><p>0 = not at all likely, 10 = extremely likely</p>` +
		`<table role="presentation" cellpadding="0" cellspacing="4"><tr>{{range .Survey.Ratings}}` +
		`<td><a href="{{.URL}}" style="display:inline-block;min-width:28px;padding:6px 4px;border:1px solid #1d4ed8;border-radius:4px;text-align:center;text-decoration:none">{{.Score}}</a></td>` +
		`{{end}}</tr></table><p>One click records your answer; you can change it or add a comment on the page that opens.</p>`,
}

// surveyPage is the landing page of a rating link: the answer recorded and a comment form.
// No script, no inline style (the Content-Security-Policy allows neither): pba.css styles it.
const surveyPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Thank you</title>` +
	`<link rel="stylesheet" href="/pba.css"></head><body class="notice"><main>` +
	`{{if .Error}}<h1>Something is wrong</h1><p role="alert">{{.Error}}</p>{{else}}<h1>Thank you!</h1>` +
	`<p>You answered <strong>{{.Score}} out of 10</strong> to “{{.Question}}”.</p>{{end}}` +
	`{{if .Commented}}<p>Your comment is saved. You can change it below.</p>{{end}}` +
	`{{if .Action}}<form method="post" action="{{.Action}}"><label for="comment">Anything you would like to add?</label>` +
	`<textarea id="comment" name="comment" rows="5" maxlength="2000">{{.Comment}}</textarea><button type="submit">Send comment</button></form>` +
	`<p>Changed your mind? Pick another score:</p><p class="scores">{{range .Ratings}}<a href="{{.URL}}" aria-label="Score {{.Score}}">{{.Score}}</a> {{end}}</p>{{end}}` +
	`</main></body></html>`

// surveyPageData is what surveyPage shows.
type surveyPageData struct {
	Error, Question, Comment, Action string
	Score                            int
	Commented                        bool
	Ratings                          []mailRating
}

// renderSurveyPage writes the page with status.
func renderSurveyPage(e *core.RequestEvent, status int, d surveyPageData) error {
	t, err := template.New("survey").Parse(surveyPage)
	if err != nil {
		return e.InternalServerError("", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return e.InternalServerError("", err)
	}
	return e.HTML(status, buf.String())
}

// surveyRequest reads a rating link: a valid token and a score 0–10; otherwise it answers 400
// with the page and reports false.
func (s *surveyMails) surveyRequest(e *core.RequestEvent) (surveyAnswerKey, string, int, bool, error) {
	q := e.Request.URL.Query()
	token := q.Get("token")
	key, ok := s.parseSurveyToken(token)
	if !ok {
		return key, "", 0, false, renderSurveyPage(e, http.StatusBadRequest, surveyPageData{Error: "This survey link is invalid."})
	}
	score, err := strconv.Atoi(q.Get("score"))
	if err != nil || score < nps.MinRating || score > nps.MaxRating {
		return key, "", 0, false, renderSurveyPage(e, http.StatusBadRequest, surveyPageData{Error: "A score is a number from 0 to 10."})
	}
	return key, token, score, true, nil
}

// handleSurveyPage is GET /api/pba/survey?token=…&score=N: the one-click answer. It records
// the score (again: a repeated click sets the same answer) and shows the comment form.
func (s *surveyMails) handleSurveyPage(e *core.RequestEvent) error {
	key, token, score, ok, err := s.surveyRequest(e)
	if !ok {
		return err
	}
	return s.answer(e, key, token, score, nil)
}

// handleSurveyComment is POST /api/pba/survey?token=…&score=N with a form field comment: the
// score and the comment (at most 2000 characters, no control characters).
func (s *surveyMails) handleSurveyComment(e *core.RequestEvent) error {
	key, token, score, ok, err := s.surveyRequest(e)
	if !ok {
		return err
	}
	comment := strings.TrimSpace(e.Request.PostFormValue("comment"))
	if utf8.RuneCountInString(comment) > collections.FeedbackCommentMax || !textcheck.Text(comment) {
		return renderSurveyPage(e, http.StatusBadRequest, surveyPageData{
			Error: fmt.Sprintf("A comment has at most %d characters and no control characters.", collections.FeedbackCommentMax)})
	}
	return s.answer(e, key, token, score, &comment)
}

// answer records the score (and comment) and renders the page.
func (s *surveyMails) answer(e *core.RequestEvent, key surveyAnswerKey, token string, score int, comment *string) error {
	sv, err := s.app.FindRecordById(collections.Surveys, key.Survey)
	if errors.Is(err, sql.ErrNoRows) {
		return renderSurveyPage(e, http.StatusNotFound, surveyPageData{Error: "This survey is closed."})
	} else if err != nil {
		return e.InternalServerError("", err)
	}
	fb, err := s.recordAnswer(key, score, comment)
	if errors.Is(err, sql.ErrNoRows) {
		return renderSurveyPage(e, http.StatusNotFound, surveyPageData{Error: "This account no longer exists."})
	} else if err != nil {
		return e.InternalServerError("", err)
	}
	d := surveyPageData{Question: sv.GetString(collections.SurveyQuestion), Score: score, Comment: fb.GetString(collections.FeedbackComment),
		Commented: comment != nil, Action: "/api/pba/survey?token=" + url.QueryEscape(token) + "&score=" + strconv.Itoa(score)}
	for n := nps.MinRating; n <= nps.MaxRating; n++ {
		d.Ratings = append(d.Ratings, mailRating{Score: n, URL: "/api/pba/survey?token=" + url.QueryEscape(token) + "&score=" + strconv.Itoa(n)})
	}
	return renderSurveyPage(e, http.StatusOK, d)
}

// recordAnswer creates or changes the affiliate's one answer to the survey's round. A
// concurrent first click loses the unique index and changes the row the other one made.
func (s *surveyMails) recordAnswer(key surveyAnswerKey, score int, comment *string) (*core.Record, error) {
	a, err := s.app.FindRecordById(collections.Affiliates, key.Affiliate)
	if err != nil {
		return nil, err
	}
	var fb *core.Record
	for attempt := 0; attempt < 2; attempt++ {
		fb, err = s.app.FindFirstRecordByFilter(collections.Feedback, "affiliate = {:a} && survey = {:s} && round = {:r}",
			dbx.Params{"a": key.Affiliate, "s": key.Survey, "r": key.Round})
		if errors.Is(err, sql.ErrNoRows) {
			col, cerr := s.app.FindCachedCollectionByNameOrId(collections.Feedback)
			if cerr != nil {
				return nil, cerr
			}
			fb = core.NewRecord(col)
			fb.Load(map[string]any{collections.FieldAffiliate: a.Id, collections.FieldProgram: a.GetString(collections.FieldProgram),
				collections.FeedbackSurvey: key.Survey, collections.FeedbackRound: key.Round, collections.FeedbackTopic: collections.FeedbackTopicGeneral})
		} else if err != nil {
			return nil, fmt.Errorf("find answer: %w", err)
		}
		fb.Set(collections.FeedbackRating, score)
		if comment != nil {
			fb.Set(collections.FeedbackComment, *comment)
		}
		if err = s.app.Save(fb); err == nil {
			return fb, nil
		}
	}
	return nil, fmt.Errorf("save answer: %w", err)
}
