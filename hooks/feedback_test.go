package hooks_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/mailer"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// wantFieldError fails unless res is status with a field error named field in its data.
func wantFieldError(t *testing.T, what string, res *pbatest.Response, status int, field string) {
	t.Helper()
	data, _ := res.JSON["data"].(map[string]any)
	if res.Code != status || data[field] == nil {
		t.Fatalf("%s: %d %s, want %d naming %s", what, res.Code, res.Body, status, field)
	}
}

const testQuestions = `[{"id":"where","label":"Where will you promote us?","kind":"text","required":true},
	{"id":"channel","label":"Main channel","kind":"choice","choices":["Blog","YouTube"]},
	{"id":"site","label":"Your site","kind":"url"}]`

// A program's questions are checked when a superuser saves them; a signup's answers are
// checked against them (400 naming answers.<id>, nothing stored); a pending applicant may
// change them, a decided one may not, a superuser may.
func TestProgramQuestionsAndAnswers(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	su := fx.Superuser.Token
	program := "/api/collections/programs/records/" + fx.ProgramP

	bad := `{"questions":[{"id":"where","label":"Where?","kind":"text"},{"id":"Where!","label":"x","kind":"text"}]}`
	wantFieldError(t, "bad id", pbatest.Request(env.handler, http.MethodPatch, program, su, bad), 400, "questions[1].id")
	wantFieldError(t, "choice without choices", pbatest.Request(env.handler, http.MethodPatch, program, su,
		`{"questions":[{"id":"c","label":"Channel","kind":"choice"}]}`), 400, "questions[0].choices")
	wantFieldError(t, "unknown kind", pbatest.Request(env.handler, http.MethodPatch, program, su,
		`{"questions":[{"id":"c","label":"Channel","kind":"date"}]}`), 400, "questions[0].kind")
	wantFieldError(t, "not a list", pbatest.Request(env.handler, http.MethodPatch, program, su, `{"questions":{"id":"x"}}`), 400, "questions")
	if p, _ := env.app.FindRecordById(collections.Programs, fx.ProgramP); p.GetString(collections.ProgramQuestions) != "[]" && p.GetString(collections.ProgramQuestions) != "null" {
		t.Fatalf("a refused save stored questions: %s", p.GetString(collections.ProgramQuestions))
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, program, su, `{"questions":`+testQuestions+`}`); res.Code != 200 {
		t.Fatalf("save questions: %d %s", res.Code, res.Body)
	}
	// An affiliate of the program reads them (the apply page shows them).
	if res := pbatest.Request(env.handler, http.MethodGet, program, fx.A.Token, ""); res.Code != 200 || !strings.Contains(res.Body.String(), "Where will you promote us?") {
		t.Fatalf("affiliate reads the questions: %d %s", res.Code, res.Body)
	}

	signup := func(email, answers string) *pbatest.Response {
		body := fmt.Sprintf(`{"name":"Applicant","email":%q,"password":"long-password-1","passwordConfirm":"long-password-1","program":%q,"answers":%s}`,
			email, fx.ProgramP, answers)
		return pbatest.Request(env.handler, http.MethodPost, "/api/collections/affiliates/records", "", body)
	}
	for _, tc := range []struct{ answers, field string }{
		{`{}`, "answers.where"},
		{`{"where":"  "}`, "answers.where"},
		{`{"where":"my blog","channel":"TikTok"}`, "answers.channel"},
		{`{"where":"my blog","site":"javascript:alert(1)"}`, "answers.site"},
		{`{"where":"my blog","age":"42"}`, "answers.age"},
		{`{"where":"bidi \u202e text"}`, "answers.where"},
		{`{"where":"` + strings.Repeat("x", 1001) + `"}`, "answers.where"},
		{`["my blog"]`, "answers"},
	} {
		wantFieldError(t, "answers "+tc.answers, signup("bad@example.org", tc.answers), 400, tc.field)
	}
	if _, err := env.app.FindAuthRecordByEmail(collections.Affiliates, "bad@example.org"); err == nil {
		t.Fatal("a refused signup was stored")
	}
	res := signup("good@example.org", `{"where":" my blog ","channel":"YouTube","site":"https://blog.example/"}`)
	if res.Code != 200 {
		t.Fatalf("signup with answers: %d %s", res.Code, res.Body)
	}
	applicant, err := env.app.FindAuthRecordByEmail(collections.Affiliates, "good@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got := applicant.GetString(collections.AffiliateAnswers); got != `{"channel":"YouTube","site":"https://blog.example/","where":"my blog"}` {
		t.Fatalf("stored answers %s", got)
	}
	token, err := applicant.NewAuthToken()
	if err != nil {
		t.Fatal(err)
	}
	self := "/api/collections/affiliates/records/" + applicant.Id
	// Pending: the applicant may still change them, within the same rules.
	wantFieldError(t, "pending, bad answer", pbatest.Request(env.handler, http.MethodPatch, self, token, `{"answers":{"where":"x","channel":"Radio"}}`), 400, "answers.channel")
	if res := pbatest.Request(env.handler, http.MethodPatch, self, token, `{"answers":{"where":"my newsletter","channel":"Blog"}}`); res.Code != 200 {
		t.Fatalf("pending applicant edits answers: %d %s", res.Code, res.Body)
	}
	// A superuser sees them on the application and approves it.
	if res := pbatest.Request(env.handler, http.MethodPatch, self, su, `{"status":"approved"}`); res.Code != 200 || !strings.Contains(res.Body.String(), "my newsletter") {
		t.Fatalf("approve: %d %s", res.Code, res.Body)
	}
	wantFieldError(t, "decided, answers changed", pbatest.Request(env.handler, http.MethodPatch, self, token, `{"answers":{"where":"elsewhere"}}`), 400, "answers")
	// The same answers sent again with the profile (a form resending everything) are fine.
	if res := pbatest.Request(env.handler, http.MethodPatch, self, token, `{"name":"Applicant 2","answers":{"where":"my newsletter","channel":"Blog"}}`); res.Code != 200 {
		t.Fatalf("profile with unchanged answers: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, self, su, `{"answers":{"where":"corrected by admin"}}`); res.Code != 200 {
		t.Fatalf("superuser corrects answers: %d %s", res.Code, res.Body)
	}
	// Questions edited later do not invalidate existing answers: other saves still work.
	if res := pbatest.Request(env.handler, http.MethodPatch, program, su, `{"questions":[{"id":"other","label":"Other?","kind":"text","required":true}]}`); res.Code != 200 {
		t.Fatalf("change questions: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, self, su, `{"status":"suspended"}`); res.Code != 200 {
		t.Fatalf("save an affiliate whose answers predate the questions: %d %s", res.Code, res.Body)
	}
}

// Feedback through the records API: an affiliate's answer is its own and its program's
// whatever it sends, needs a rating 0–10, a comment of at most 2000 plain characters, and
// no survey (those come from the signed links); affiliates see only their own.
func TestFeedbackRecords(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	const list = "/api/collections/feedback/records"
	res := pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":8,"topic":"portal","comment":"Love the new charts"}`)
	if res.Code != 200 || res.JSON["affiliate"] != fx.A.ID || res.JSON["program"] != fx.ProgramP {
		t.Fatalf("create: %d %s", res.Code, res.Body)
	}
	id := res.JSON["id"].(string)
	if res := pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":8,"affiliate":"`+fx.B.ID+`"}`); res.Code != 403 {
		t.Fatalf("feedback in another's name: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":8,"survey":"abc"}`); res.Code != 403 {
		t.Fatalf("a survey answer through the records API: %d %s", res.Code, res.Body)
	}
	wantFieldError(t, "no rating", pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"comment":"hi"}`), 400, "rating")
	wantFieldError(t, "rating 11", pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":11}`), 400, "rating")
	wantFieldError(t, "rating 2.5", pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":2.5}`), 400, "rating")
	wantFieldError(t, "long comment", pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":5,"comment":"`+strings.Repeat("é", 2001)+`"}`), 400, "comment")
	wantFieldError(t, "control character", pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":5,"comment":"a\u0000b"}`), 400, "comment")
	wantFieldError(t, "unknown topic", pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":5,"topic":"gossip"}`), 400, "topic")
	if res := pbatest.Request(env.handler, http.MethodPost, list, fx.A.Token, `{"rating":0,"comment":"`+strings.Repeat("é", 2000)+`"}`); res.Code != 200 || res.JSON["topic"] != "general" {
		t.Fatalf("rating 0 with a 2000-character comment: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, list+"/"+id, fx.A.Token, `{"rating":9}`); res.Code != 200 {
		t.Fatalf("change own rating: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, list+"/"+id, fx.B.Token, `{"rating":0}`); res.Code != 404 {
		t.Fatalf("B changes A's feedback: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodGet, list, fx.B.Token, ""); res.Code != 200 || strings.Contains(res.Body.String(), "Love the new charts") {
		t.Fatalf("B lists A's feedback: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodGet, list, fx.Superuser.Token, ""); res.Code != 200 || !strings.Contains(res.Body.String(), "Love the new charts") {
		t.Fatalf("superuser lists: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPost, list, "", `{"rating":5}`); res.Code == 200 {
		t.Fatalf("guest feedback: %d %s", res.Code, res.Body)
	}
}

// Email preferences: an affiliate writes its own mail_opt_out (known categories only), and
// each category of marketing mail honours it while transactional mail still goes.
func TestMailOptOutCategories(t *testing.T) {
	env := newMailEnv(t)
	self := func(a pbatest.Actor) string { return "/api/collections/affiliates/records/" + a.ID }
	wantFieldError(t, "unknown category", pbatest.Request(env.handler, http.MethodPatch, self(fx.A), fx.A.Token, `{"mail_opt_out":["spam"]}`), 400, "mail_opt_out")
	wantFieldError(t, "not a list", pbatest.Request(env.handler, http.MethodPatch, self(fx.A), fx.A.Token, `{"mail_opt_out":"digest"}`), 400, "mail_opt_out")
	if res := pbatest.Request(env.handler, http.MethodPatch, self(fx.A), fx.A.Token, `{"mail_opt_out":["incentive","digest","incentive"]}`); res.Code != 200 {
		t.Fatalf("A opts out: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, self(fx.B), fx.B.Token, `{"mail_opt_out":["broadcast"]}`); res.Code != 200 {
		t.Fatalf("B opts out: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPatch, self(fx.B), fx.A.Token, `{"mail_opt_out":[]}`); res.Code != 404 {
		t.Fatalf("A writes B's preferences: %d %s", res.Code, res.Body)
	}
	if a, _ := env.app.FindRecordById(collections.Affiliates, fx.A.ID); a.GetString(collections.AffiliateMailOptOut) != `["digest","incentive"]` {
		t.Fatalf("stored %s", a.GetString(collections.AffiliateMailOptOut))
	}
	for _, m := range []string{`{"subject":"Double commission week","body":"Hi","kind":"broadcast","status":"scheduled","category":"incentive","audience":{"program":"` + fx.ProgramP + `"}}`,
		`{"subject":"Product news","body":"Hi","kind":"broadcast","status":"scheduled","audience":{"program":"` + fx.ProgramP + `"}}`} {
		if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/messages/records", fx.Superuser.Token, m); res.Code != 200 {
			t.Fatalf("broadcast: %d %s", res.Code, res.Body)
		}
	}
	mails := waitMails(t, env, 1, fx.A.Email, fx.B.Email)
	deadline := time.Now().Add(30 * time.Second)
	for subjectsTo(mails, fx.A.Email)["Product news"]+subjectsTo(mails, fx.B.Email)["Double commission week"] < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		mails = env.app.TestMailer.Messages()
	}
	a, b := subjectsTo(mails, fx.A.Email), subjectsTo(mails, fx.B.Email)
	if a["Product news"] != 1 || a["Double commission week"] != 0 || b["Double commission week"] != 1 || b["Product news"] != 0 {
		t.Fatalf("A got %v, B got %v", a, b)
	}
	var reasons []string
	if err := env.app.DB().NewQuery("SELECT error FROM deliveries WHERE status = 'skipped' AND affiliate IN ({:a}, {:b}) ORDER BY error").
		Bind(map[string]any{"a": fx.A.ID, "b": fx.B.ID}).Column(&reasons); err != nil {
		t.Fatal(err)
	}
	if strings.Join(reasons, "|") != "opted out of broadcast|opted out of incentive" {
		t.Fatalf("skip reasons %q", reasons)
	}
}

// newMailEnv is a served app whose mail goes to the test mailer (SMTP on: the test app
// records instead of sending).
func newMailEnv(t *testing.T) *clickEnv {
	t.Helper()
	env := newClickEnv(t, fx.Config)
	settings := env.app.Settings()
	settings.SMTP.Enabled, settings.SMTP.Host = true, "127.0.0.1"
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	return env
}

// subjectsTo counts the mails to addr by subject.
func subjectsTo(mails []*mailer.Message, addr string) map[string]int {
	out := map[string]int{}
	for _, m := range mails {
		if m.To[0].Address == addr {
			out[m.Subject]++
		}
	}
	return out
}

// surveyLink matches a rating link in a survey mail's text part.
var surveyLink = regexp.MustCompile(`(?m)^(\d+): \S*(/api/pba/survey\?token=([^&\s]+)&score=\d+)$`)

// surveyLinks are the rating links of addr's mail with subject, by score.
func surveyLinks(t *testing.T, mails []*mailer.Message, addr, subject string) (map[string]string, string) {
	t.Helper()
	for _, m := range mails {
		if m.To[0].Address != addr || m.Subject != subject {
			continue
		}
		links, token := map[string]string{}, ""
		for _, match := range surveyLink.FindAllStringSubmatch(m.Text, -1) {
			links[match[1]] = match[2]
			token = match[3]
		}
		if len(links) != 11 || !strings.Contains(m.Text, "/api/pba/unsubscribe?token=") {
			t.Fatalf("survey mail to %s: %d links, unsubscribe link present: %v\n%s", addr, len(links), strings.Contains(m.Text, "unsubscribe"), m.Text)
		}
		unescaped, err := url.QueryUnescape(token)
		if err != nil {
			t.Fatal(err)
		}
		return links, unescaped
	}
	t.Fatalf("no survey mail to %s", addr)
	return nil, ""
}

// A survey an admin schedules through the records API is mailed by the mail worker to its
// audience (not to who opted out of surveys); each score's link records the answer, a second
// click changes it, a replay sets it again; the page takes a comment; forged tokens, tokens
// changed to name another affiliate or survey, and bad scores record nothing. The summary
// counts it exactly.
func TestSurveyOneClickRatings(t *testing.T) {
	env := newMailEnv(t)
	if res := pbatest.Request(env.handler, http.MethodPatch, "/api/collections/affiliates/records/"+fx.Pending.ID, fx.Pending.Token, `{"mail_opt_out":["survey"]}`); res.Code != 200 {
		t.Fatalf("opt out: %d %s", res.Code, res.Body)
	}
	const question = "How likely are you to recommend our program?"
	wantFieldError(t, "bad schedule", pbatest.Request(env.handler, http.MethodPost, "/api/collections/surveys/records", fx.Superuser.Token,
		`{"name":"Q","question":"Q?","active":true,"schedule":"quarterly"}`), 400, "schedule")
	wantFieldError(t, "once without send_at", pbatest.Request(env.handler, http.MethodPost, "/api/collections/surveys/records", fx.Superuser.Token,
		`{"name":"Q","question":"Q?","active":true}`), 400, "send_at")
	wantFieldError(t, "bad audience", pbatest.Request(env.handler, http.MethodPost, "/api/collections/surveys/records", fx.Superuser.Token,
		`{"name":"Q","question":"Q?","audience":{"status":5}}`), 400, "audience")
	res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/surveys/records", fx.Superuser.Token, fmt.Sprintf(
		`{"name":"Pulse","question":%q,"program":%q,"active":true,"send_at":%q,"audience":{"status":["approved","pending"]}}`,
		question, fx.ProgramP, time.Now().UTC().Add(-time.Minute).Format("2006-01-02 15:04:05.000Z")))
	if res.Code != 200 {
		t.Fatalf("create survey: %d %s", res.Code, res.Body)
	}
	survey := res.JSON["id"].(string)
	mails := waitMails(t, env, 1, fx.A.Email, fx.B.Email)
	deadline := time.Now().Add(30 * time.Second)
	for subjectsTo(mails, fx.A.Email)[question]+subjectsTo(mails, fx.B.Email)[question] < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		mails = env.app.TestMailer.Messages()
	}
	linksA, tokenA := surveyLinks(t, mails, fx.A.Email, question)
	linksB, tokenB := surveyLinks(t, mails, fx.B.Email, question)
	if subjectsTo(mails, fx.Pending.Email)[question] != 0 {
		t.Fatal("a survey reached an affiliate who opted out of surveys")
	}

	answers := func(affiliate string) []*core.Record {
		rows, err := env.app.FindRecordsByFilter(collections.Feedback, "affiliate = {:a} && survey = {:s}", "", 0, 0, map[string]any{"a": affiliate, "s": survey})
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	want := func(what, affiliate string, rating int, comment string) {
		t.Helper()
		rows := answers(affiliate)
		if len(rows) != 1 || rows[0].GetInt("rating") != rating || rows[0].GetString("comment") != comment || rows[0].GetString("program") != fx.ProgramP {
			got := []string{}
			for _, r := range rows {
				got = append(got, fmt.Sprintf("%d %q", r.GetInt("rating"), r.GetString("comment")))
			}
			t.Fatalf("%s: answers of %s %v, want one of %d %q", what, affiliate, got, rating, comment)
		}
	}
	get := func(path string) *pbatest.Response { return pbatest.Request(env.handler, http.MethodGet, path, "", "") }

	if res := get(linksA["9"]); res.Code != 200 || !strings.Contains(res.Body.String(), "9 out of 10") || !strings.Contains(res.Body.String(), "<form") {
		t.Fatalf("click 9: %d %s", res.Code, res.Body)
	}
	if csp := get(linksA["9"]).Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") && !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("the page's CSP: %q", csp)
	}
	want("click 9, twice", fx.A.ID, 9, "")
	get(linksA["3"])
	want("then 3", fx.A.ID, 3, "")
	comment := func(link, text string) *pbatest.Response {
		return pbatest.Request(env.handler, http.MethodPost, link, "", "", func(r *http.Request) {
			r.Body = http.NoBody
			form := url.Values{"comment": {text}}.Encode()
			r.Body, r.ContentLength = nopCloser(form), int64(len(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		})
	}
	if res := comment(linksA["3"], "  Payouts could be faster  "); res.Code != 200 || !strings.Contains(res.Body.String(), "Payouts could be faster") {
		t.Fatalf("comment: %d %s", res.Code, res.Body)
	}
	want("comment", fx.A.ID, 3, "Payouts could be faster")
	if res := comment(linksA["3"], "bad \x1b[31m escape"); res.Code != 400 {
		t.Fatalf("control characters: %d %s", res.Code, res.Body)
	}
	if res := comment(linksA["3"], strings.Repeat("x", 2001)); res.Code != 400 {
		t.Fatalf("long comment: %d", res.Code)
	}
	want("refused comments", fx.A.ID, 3, "Payouts could be faster")
	get(linksA["3"]) // replayed: the same answer again, the comment kept
	want("replay", fx.A.ID, 3, "Payouts could be faster")

	// Tokens: forged, re-pointed at another affiliate or survey, and bad scores.
	parts := strings.Split(tokenA, ".")
	mac := []byte(parts[3])
	mac[0] ^= 1
	forged := []string{
		strings.Join([]string{parts[0], parts[1], parts[2], string(mac)}, "."),
		strings.Join([]string{fx.B.ID, parts[1], parts[2], parts[3]}, "."),           // A's signature, B's id
		strings.Join([]string{parts[0], "otherSurvey0001", parts[2], parts[3]}, "."), // another survey
		strings.Join([]string{parts[0], parts[1], "20300101T000000Z", parts[3]}, "."),
		strings.Join(parts[:3], "."),
		"",
	}
	for _, tok := range forged {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			res := pbatest.Request(env.handler, method, "/api/pba/survey?score=0&token="+url.QueryEscape(tok), "", "")
			if res.Code != 400 {
				t.Fatalf("%s with token %q: %d", method, tok, res.Code)
			}
		}
	}
	for _, score := range []string{"11", "-1", "", "x"} {
		if res := get("/api/pba/survey?score=" + score + "&token=" + url.QueryEscape(tokenA)); res.Code != 400 {
			t.Fatalf("score %q: %d", score, res.Code)
		}
	}
	want("after the forgeries", fx.A.ID, 3, "Payouts could be faster")
	if len(answers(fx.B.ID)) != 0 {
		t.Fatal("a forged token answered for B")
	}
	// B's own link answers for B only.
	get(linksB["10"])
	want("B", fx.B.ID, 10, "")
	want("A unchanged", fx.A.ID, 3, "Payouts could be faster")
	if tokenA == tokenB {
		t.Fatal("two affiliates share a token")
	}

	// A's portal feedback counts in the totals, not in the survey.
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/feedback/records", fx.A.Token, `{"rating":6,"comment":"More banners please"}`); res.Code != 200 {
		t.Fatalf("portal feedback: %d %s", res.Code, res.Body)
	}
	sum := pbatest.Request(env.handler, http.MethodGet, "/api/pba/feedback/summary?program="+fx.ProgramP, fx.Superuser.Token, "")
	if sum.Code != 200 {
		t.Fatalf("summary: %d %s", sum.Code, sum.Body)
	}
	total := sum.JSON["total"].(map[string]any)
	// Ratings 3, 10, 6: one promoter, two detractors; NPS (1 − 2) / 3 = −3333 bp; average 19/3 = 6.33.
	if total["responses"] != 3.0 || total["nps_bp"] != -3333.0 || total["average_x100"] != 633.0 || total["promoters"] != 1.0 || total["detractors"] != 2.0 {
		t.Fatalf("total %v", total)
	}
	dist := sum.JSON["distribution"].([]any)
	if len(dist) != 11 || dist[3] != 1.0 || dist[6] != 1.0 || dist[10] != 1.0 {
		t.Fatalf("distribution %v", dist)
	}
	month := time.Now().UTC().Format("2006-01")
	trend := sum.JSON["trend"].([]any)
	if len(trend) != 1 || trend[0].(map[string]any)["month"] != month || trend[0].(map[string]any)["responses"] != 3.0 {
		t.Fatalf("trend %v", trend)
	}
	surveys := sum.JSON["surveys"].([]any)
	s0 := surveys[0].(map[string]any)
	if len(surveys) != 1 || s0["id"] != survey || s0["sent"] != 2.0 || s0["responses"] != 2.0 || s0["response_rate_bp"] != 10000.0 || s0["nps_bp"] != 0.0 {
		t.Fatalf("surveys %v", surveys)
	}
	comments := sum.JSON["comments"].([]any)
	if len(comments) != 2 || comments[0].(map[string]any)["comment"] != "More banners please" {
		t.Fatalf("comments %v", comments)
	}
	bySurvey := pbatest.Request(env.handler, http.MethodGet, "/api/pba/feedback/summary?survey="+survey, fx.Superuser.Token, "")
	if bySurvey.JSON["total"].(map[string]any)["responses"] != 2.0 {
		t.Fatalf("by survey: %s", bySurvey.Body)
	}
	byTier := pbatest.Request(env.handler, http.MethodGet, "/api/pba/feedback/summary?tier="+fx.TierP, fx.Superuser.Token, "")
	if byTier.Code != 200 {
		t.Fatalf("by tier: %d %s", byTier.Code, byTier.Body)
	}
	future := pbatest.Request(env.handler, http.MethodGet, "/api/pba/feedback/summary?from=2999-01-01", fx.Superuser.Token, "")
	if future.JSON["total"].(map[string]any)["responses"] != 0.0 {
		t.Fatalf("from the future: %s", future.Body)
	}
	wantFieldError(t, "bad from", pbatest.Request(env.handler, http.MethodGet, "/api/pba/feedback/summary?from=yesterday", fx.Superuser.Token, ""), 400, "from")

	// The survey mail's unsubscribe link still works.
	for _, m := range mails {
		if m.To[0].Address == fx.A.Email && m.Subject == question {
			u := regexp.MustCompile(`/api/pba/unsubscribe\?token=[^\s"]+`).FindString(m.Text)
			if res := pbatest.Request(env.handler, http.MethodPost, u, "", ""); res.Code != 200 || !strings.Contains(res.Body.String(), "unsubscribed") {
				t.Fatalf("unsubscribe from a survey mail: %d %s", res.Code, res.Body)
			}
		}
	}
}

// nopCloser is a request body of s.
func nopCloser(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
