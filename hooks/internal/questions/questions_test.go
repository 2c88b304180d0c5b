package questions

import (
	"strings"
	"testing"
)

func TestCheckQuestions(t *testing.T) {
	qs, err := Parse([]byte(`[{"id":"where","label":" Where? ","kind":"Text","required":true},
		{"id":"channel","label":"Channel","kind":"choice","choices":[" Blog ","YouTube"]},
		{"id":"site","label":"Site","kind":"url"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if errs := Check(qs); len(errs) != 0 {
		t.Fatalf("valid questions refused: %v", errs)
	}
	if qs[0].Label != "Where?" || qs[0].Kind != KindText || qs[1].Choices[0] != "Blog" {
		t.Fatalf("not normalized: %+v", qs)
	}
	for _, tc := range []struct{ json, field string }{
		{`[{"id":"Bad-Id","label":"x","kind":"text"}]`, "questions[0].id"},
		{`[{"id":"a","label":"x","kind":"text"},{"id":"a","label":"y","kind":"text"}]`, "questions[1].id"},
		{`[{"id":"a","label":"","kind":"text"}]`, "questions[0].label"},
		{`[{"id":"a","label":"x\u202e","kind":"text"}]`, "questions[0].label"},
		{`[{"id":"a","label":"x","kind":"date"}]`, "questions[0].kind"},
		{`[{"id":"a","label":"x","kind":"choice"}]`, "questions[0].choices"},
		{`[{"id":"a","label":"x","kind":"choice","choices":["A","A"]}]`, "questions[0].choices"},
		{`[{"id":"a","label":"x","kind":"text","choices":["A"]}]`, "questions[0].choices"},
		{`[` + strings.Repeat(`{"id":"a","label":"x","kind":"text"},`, MaxQuestions) + `{"id":"b","label":"x","kind":"text"}]`, "questions"},
	} {
		qs, err := Parse([]byte(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		if errs := Check(qs); errs[tc.field] == "" {
			t.Errorf("%s: want an error on %s, got %v", tc.json, tc.field, errs)
		}
	}
	if _, err := Parse([]byte(`{"id":"a"}`)); err == nil {
		t.Error("an object was taken for a list")
	}
	if qs, err := Parse([]byte(`null`)); err != nil || qs != nil {
		t.Error("null is no questions")
	}
}

func TestCheckAnswers(t *testing.T) {
	qs := []Question{
		{ID: "where", Label: "Where", Kind: KindText, Required: true},
		{ID: "channel", Label: "Channel", Kind: KindChoice, Choices: []string{"Blog", "YouTube"}},
		{ID: "site", Label: "Site", Kind: KindURL},
	}
	ok := map[string]string{"where": " my blog ", "channel": "YouTube", "site": "https://blog.example/x", "": ""}
	delete(ok, "")
	if errs := CheckAnswers(qs, ok); len(errs) != 0 {
		t.Fatalf("valid answers refused: %v", errs)
	}
	if ok["where"] != "my blog" {
		t.Fatalf("answer not trimmed: %q", ok["where"])
	}
	optionalEmpty := map[string]string{"where": "x", "site": "  "}
	if errs := CheckAnswers(qs, optionalEmpty); len(errs) != 0 {
		t.Fatalf("empty optional answer refused: %v", errs)
	}
	if _, kept := optionalEmpty["site"]; kept {
		t.Fatal("empty optional answer kept")
	}
	for _, tc := range []struct {
		answers map[string]string
		id      string
	}{
		{map[string]string{}, "where"},
		{map[string]string{"where": "   "}, "where"},
		{map[string]string{"where": "x", "channel": "TikTok"}, "channel"},
		{map[string]string{"where": "x", "channel": "blog"}, "channel"}, // exact choice
		{map[string]string{"where": "x", "site": "javascript:alert(1)"}, "site"},
		{map[string]string{"where": "x", "site": "ftp://files.example"}, "site"},
		{map[string]string{"where": "x", "site": "https://"}, "site"},
		{map[string]string{"where": strings.Repeat("é", MaxAnswer+1)}, "where"},
		{map[string]string{"where": "nul\x00here"}, "where"},
		{map[string]string{"where": "x", "age": "42"}, "age"},
	} {
		if errs := CheckAnswers(qs, tc.answers); errs[tc.id] == "" {
			t.Errorf("%v: want an error on %s, got %v", tc.answers, tc.id, errs)
		}
	}
	if errs := CheckAnswers(qs, map[string]string{"where": strings.Repeat("é", MaxAnswer)}); len(errs) != 0 {
		t.Errorf("an answer of exactly %d characters refused: %v", MaxAnswer, errs)
	}
	if errs := CheckAnswers(qs, map[string]string{"where": "two\nlines"}); len(errs) != 0 {
		t.Errorf("a line break refused in a text answer: %v", errs)
	}
	if _, err := ParseAnswers([]byte(`["x"]`)); err == nil {
		t.Error("a list was taken for answers")
	}
	if _, err := ParseAnswers([]byte(`{"where":3}`)); err == nil {
		t.Error("a number was taken for an answer")
	}
}
