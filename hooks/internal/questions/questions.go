// Package questions checks a program's application questions and an applicant's answers to
// them (programs.questions, affiliates.answers). Pure logic: the hooks turn its field errors
// into 400 answers naming questions[i].field or answers.<id>.
package questions

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
)

// Kinds of question.
const (
	KindText   = "text"
	KindChoice = "choice"
	KindURL    = "url"
)

// Limits of a program's questions and of the answers.
const (
	MaxQuestions = 20
	MaxLabel     = 200
	MaxChoices   = 30
	MaxChoice    = 100
	MaxAnswer    = 1000 // characters of a text answer
	MaxURL       = 2048
)

// idPattern is a question id: short, lowercase, safe as a JSON key and a form field name.
var idPattern = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// Question is one application question as programs.questions stores it.
type Question struct {
	ID       string   `json:"id"`
	Label    string   `json:"label"`
	Kind     string   `json:"kind"`
	Required bool     `json:"required"`
	Choices  []string `json:"choices,omitempty"`
}

// FieldErrors maps a field path ("questions[2].id", "where") to what is wrong with it.
type FieldErrors map[string]string

// Parse reads programs.questions: null, "" and [] are no questions; anything but a list of
// objects is an error of the whole field.
func Parse(raw []byte) ([]Question, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == `""` {
		return nil, nil
	}
	var qs []Question
	if err := json.Unmarshal(raw, &qs); err != nil {
		return nil, fmt.Errorf("must be a list of questions like [{\"id\":\"where\",\"label\":\"Where will you promote us?\",\"kind\":\"text\"}]")
	}
	return qs, nil
}

// Check normalizes qs (trimmed labels and choices, lowercase kinds) and reports every field in
// error, keyed "questions[i].field" ("questions" for the list itself).
func Check(qs []Question) FieldErrors {
	errs := FieldErrors{}
	if len(qs) > MaxQuestions {
		errs["questions"] = fmt.Sprintf("At most %d questions.", MaxQuestions)
		return errs
	}
	seen := map[string]bool{}
	for i := range qs {
		q := &qs[i]
		at := func(f string) string { return fmt.Sprintf("questions[%d].%s", i, f) }
		q.ID = strings.TrimSpace(q.ID)
		q.Label = strings.TrimSpace(q.Label)
		q.Kind = strings.ToLower(strings.TrimSpace(q.Kind))
		switch {
		case !idPattern.MatchString(q.ID):
			errs[at("id")] = "Use 1–32 lowercase letters, digits or underscores."
		case seen[q.ID]:
			errs[at("id")] = "Another question has this id."
		}
		seen[q.ID] = true
		switch {
		case q.Label == "":
			errs[at("label")] = "Write the question."
		case utf8.RuneCountInString(q.Label) > MaxLabel:
			errs[at("label")] = fmt.Sprintf("At most %d characters.", MaxLabel)
		case !textcheck.Line(q.Label):
			errs[at("label")] = textcheck.Message
		}
		switch q.Kind {
		case KindText, KindURL:
			if len(q.Choices) > 0 {
				errs[at("choices")] = "Only choice questions have choices."
			}
		case KindChoice:
			if msg := checkChoices(q.Choices); msg != "" {
				errs[at("choices")] = msg
			}
		default:
			errs[at("kind")] = "Must be text, choice or url."
		}
	}
	return errs
}

// checkChoices trims the choices in place and says what is wrong with them, or "".
func checkChoices(choices []string) string {
	if len(choices) == 0 {
		return "A choice question needs at least one choice."
	}
	if len(choices) > MaxChoices {
		return fmt.Sprintf("At most %d choices.", MaxChoices)
	}
	seen := map[string]bool{}
	for i, c := range choices {
		c = strings.TrimSpace(c)
		choices[i] = c
		switch {
		case c == "":
			return "A choice cannot be empty."
		case utf8.RuneCountInString(c) > MaxChoice:
			return fmt.Sprintf("A choice has at most %d characters.", MaxChoice)
		case !textcheck.Line(c):
			return textcheck.Message
		case seen[c]:
			return fmt.Sprintf("%q is listed twice.", c)
		}
		seen[c] = true
	}
	return ""
}

// ParseAnswers reads affiliates.answers: null and "" are none; otherwise an object of strings.
func ParseAnswers(raw []byte) (map[string]string, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == `""` {
		return map[string]string{}, nil
	}
	var out map[string]string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf(`must be an object of answers by question id, e.g. {"where":"https://myblog.example"}`)
	}
	if out == nil {
		out = map[string]string{}
	}
	return out, nil
}

// CheckAnswers trims the answers in place, drops empty optional ones and reports every answer
// in error, keyed by question id: a required question unanswered, a choice not offered, a URL
// that is not http(s), text too long or with control characters, an id the program does not ask.
func CheckAnswers(qs []Question, answers map[string]string) FieldErrors {
	errs := FieldErrors{}
	asked := make(map[string]Question, len(qs))
	for _, q := range qs {
		asked[q.ID] = q
	}
	for id, v := range answers {
		q, ok := asked[id]
		if !ok {
			errs[id] = "The program asks no such question."
			continue
		}
		v = strings.TrimSpace(v)
		answers[id] = v
		if v == "" {
			delete(answers, id)
			continue
		}
		if msg := checkAnswer(q, v); msg != "" {
			errs[id] = msg
		}
	}
	for _, q := range qs {
		if _, ok := answers[q.ID]; q.Required && !ok && errs[q.ID] == "" {
			errs[q.ID] = "This question needs an answer."
		}
	}
	return errs
}

// checkAnswer says what is wrong with a non-empty answer to q, or "".
func checkAnswer(q Question, v string) string {
	switch q.Kind {
	case KindChoice:
		for _, c := range q.Choices {
			if v == c {
				return ""
			}
		}
		return "Pick one of the choices offered."
	case KindURL:
		if len(v) > MaxURL {
			return fmt.Sprintf("At most %d characters.", MaxURL)
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !textcheck.Line(v) {
			return "Must be an http:// or https:// address."
		}
		return ""
	default:
		if utf8.RuneCountInString(v) > MaxAnswer {
			return fmt.Sprintf("At most %d characters.", MaxAnswer)
		}
		if !textcheck.Text(v) {
			return textcheck.Message
		}
		return ""
	}
}
