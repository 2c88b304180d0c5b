package hooks

import (
	"fmt"
	"net/http"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/nps"
)

// feedbackRecentComments is how many comments the summary lists.
const feedbackRecentComments = 20

// surveyReached are the delivery statuses of a survey mail that left the server.
var surveyReached = []any{collections.DeliverySent, collections.DeliveryDelivered, collections.DeliveryDelayed,
	collections.DeliveryComplained, collections.DeliveryBounced}

// feedbackFigures is one set of ratings as the summary reports it: integers only (average in
// hundredths, NPS in basis points, both rounded half to even) beside the counts they come from.
type feedbackFigures struct {
	Responses   int64 `json:"responses"`
	AverageX100 int64 `json:"average_x100"`
	NPSBP       int64 `json:"nps_bp"`
	Promoters   int64 `json:"promoters"`
	Passives    int64 `json:"passives"`
	Detractors  int64 `json:"detractors"`
}

func figuresOf(t nps.Tally) feedbackFigures {
	return feedbackFigures{Responses: t.Responses(), AverageX100: t.AverageX100(), NPSBP: t.ScoreBP(),
		Promoters: t.Promoters(), Passives: t.Passives(), Detractors: t.Detractors()}
}

// handleFeedbackSummary is GET /api/pba/feedback/summary (superusers): the ratings chosen by
// program, tier (the affiliate's current one), survey and UTC days from/to (inclusive), with
// their average, NPS and distribution, the trend by UTC month, each survey's response rate
// and the recent comments.
func handleFeedbackSummary(re *core.RequestEvent) error {
	q := re.Request.URL.Query()
	where := "1 = 1"
	params := dbx.Params{}
	for _, f := range []struct{ name, column string }{{"program", "f.program"}, {"tier", "a.tier"}, {"survey", "f.survey"}} {
		if v := q.Get(f.name); v != "" {
			where += " AND " + f.column + " = {:" + f.name + "}"
			params[f.name] = v
		}
	}
	for _, f := range []struct{ name, op string }{{"from", ">="}, {"to", "<"}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		day, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return re.BadRequestError("Invalid "+f.name+".", fieldError(f.name, "invalid_date", "Use a day like 2026-01-31 (UTC)."))
		}
		if f.name == "to" {
			day = day.AddDate(0, 0, 1)
		}
		where += " AND f.created " + f.op + " {:" + f.name + "}"
		params[f.name] = day.Format(time.DateOnly)
	}
	from := " FROM {{" + collections.Feedback + "}} f JOIN {{" + collections.Affiliates + "}} a ON a.id = f.affiliate WHERE " + where

	var cells []struct {
		Month  string `db:"month"`
		Rating int    `db:"rating"`
		N      int64  `db:"n"`
	}
	err := re.App.DB().NewQuery("SELECT substr(f.created, 1, 7) AS month, f.rating AS rating, COUNT(*) AS n" + from +
		" GROUP BY month, rating ORDER BY month").Bind(params).All(&cells)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("feedback summary: %w", err))
	}
	var total nps.Tally
	type monthFigures struct {
		Month string `json:"month"`
		feedbackFigures
	}
	trend := []monthFigures{}
	var month nps.Tally
	for i, c := range cells {
		total.Counts[c.Rating] += c.N
		month.Counts[c.Rating] += c.N
		if i == len(cells)-1 || cells[i+1].Month != c.Month {
			trend = append(trend, monthFigures{Month: c.Month, feedbackFigures: figuresOf(month)})
			month = nps.Tally{}
		}
	}

	type comment struct {
		ID            string `db:"id" json:"id"`
		Affiliate     string `db:"affiliate" json:"affiliate"`
		AffiliateName string `db:"affiliate_name" json:"affiliate_name"`
		Rating        int    `db:"rating" json:"rating"`
		Topic         string `db:"topic" json:"topic"`
		Comment       string `db:"comment" json:"comment"`
		Survey        string `db:"survey" json:"survey"`
		Created       string `db:"created" json:"created"`
	}
	comments := []comment{}
	err = re.App.DB().NewQuery("SELECT f.id, f.affiliate, a.name AS affiliate_name, f.rating, f.topic, f.comment, f.survey, f.created" + from +
		" AND f.comment != '' ORDER BY f.updated DESC, f.id DESC LIMIT {:limit}").Bind(merge(params, dbx.Params{"limit": feedbackRecentComments})).All(&comments)
	if err != nil {
		return re.InternalServerError("", fmt.Errorf("feedback comments: %w", err))
	}

	surveys, err := surveyRates(re.App, where, params)
	if err != nil {
		return re.InternalServerError("", err)
	}
	return re.JSON(http.StatusOK, map[string]any{
		"filters": map[string]string{"program": q.Get("program"), "tier": q.Get("tier"), "survey": q.Get("survey"), "from": q.Get("from"), "to": q.Get("to")},
		"total":   figuresOf(total), "distribution": total.Counts, "trend": trend, "surveys": surveys, "comments": comments,
	})
}

// surveyRate is one survey's response rate: answers over mails that left the server, both
// under the summary's filters (the days apply to when each was made).
type surveyRate struct {
	ID             string `db:"id" json:"id"`
	Name           string `db:"name" json:"name"`
	Schedule       string `db:"schedule" json:"schedule"`
	Active         bool   `db:"active" json:"active"`
	LastSent       string `db:"last_sent" json:"last_sent"`
	Sent           int64  `db:"-" json:"sent"`
	ResponseRateBP int64  `db:"-" json:"response_rate_bp"`
	feedbackFigures
}

// surveyRates lists every survey with its figures under the feedback filter where (over f,
// the feedback, and a, its affiliate); deliveries are filtered alike (d, a).
func surveyRates(app core.App, where string, params dbx.Params) ([]surveyRate, error) {
	out := []surveyRate{}
	sq := "SELECT s.id, s.name, s.schedule, s.active, s.last_sent FROM {{" + collections.Surveys + "}} s"
	sp := dbx.Params{}
	if v, ok := params["survey"]; ok {
		sq += " WHERE s.id = {:survey}"
		sp["survey"] = v
	}
	if err := app.DB().NewQuery(sq + " ORDER BY s.created DESC, s.id").Bind(sp).All(&out); err != nil {
		return nil, fmt.Errorf("list surveys: %w", err)
	}
	dwhere := "d.template = {:template} AND d.status IN ({:s0}, {:s1}, {:s2}, {:s3}, {:s4})"
	dparams := dbx.Params{"template": templateSurvey}
	for i, s := range surveyReached {
		dparams[fmt.Sprintf("s%d", i)] = s
	}
	for _, f := range []struct{ name, clause string }{{"program", "a.program = {:program}"}, {"tier", "a.tier = {:tier}"},
		{"from", "d.created >= {:from}"}, {"to", "d.created < {:to}"}} {
		if v, ok := params[f.name]; ok {
			dwhere += " AND " + f.clause
			dparams[f.name] = v
		}
	}
	var sent []struct {
		Survey string `db:"survey"`
		N      int64  `db:"n"`
	}
	err := app.DB().NewQuery("SELECT json_extract(d.data, '$.survey') AS survey, COUNT(*) AS n FROM {{" + collections.Deliveries + "}} d " +
		"JOIN {{" + collections.Affiliates + "}} a ON a.id = d.affiliate WHERE " + dwhere + " GROUP BY survey").Bind(dparams).All(&sent)
	if err != nil {
		return nil, fmt.Errorf("count survey mails: %w", err)
	}
	var answers []struct {
		Survey string `db:"survey"`
		Rating int    `db:"rating"`
		N      int64  `db:"n"`
	}
	err = app.DB().NewQuery("SELECT f.survey AS survey, f.rating AS rating, COUNT(*) AS n FROM {{" + collections.Feedback + "}} f " +
		"JOIN {{" + collections.Affiliates + "}} a ON a.id = f.affiliate WHERE " + where + " AND f.survey != '' GROUP BY f.survey, f.rating").Bind(params).All(&answers)
	if err != nil {
		return nil, fmt.Errorf("count survey answers: %w", err)
	}
	tallies := map[string]*nps.Tally{}
	for _, a := range answers {
		if tallies[a.Survey] == nil {
			tallies[a.Survey] = &nps.Tally{}
		}
		tallies[a.Survey].Counts[a.Rating] += a.N
	}
	sentBy := map[string]int64{}
	for _, s := range sent {
		sentBy[s.Survey] = s.N
	}
	for i := range out {
		s := &out[i]
		s.Sent = sentBy[s.ID]
		if t := tallies[s.ID]; t != nil {
			s.feedbackFigures = figuresOf(*t)
		}
		s.ResponseRateBP = nps.RateBP(s.Responses, s.Sent)
	}
	return out, nil
}

// merge returns a copy of a with b's entries added.
func merge(a, b dbx.Params) dbx.Params {
	out := dbx.Params{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
