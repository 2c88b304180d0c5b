package textcheck

import "testing"

func TestLineAndText(t *testing.T) {
	for _, c := range []struct {
		in         string
		line, text bool
	}{
		{"", true, true},
		{"Ada Lovelace", true, true},
		{"Zoë O’Brien 李 😀‍😀", true, true}, // letters of any script, emoji with ZWJ
		{"عربي", true, true},
		{"a\x00b", false, false},
		{"a\x1bb", false, false},
		{"a\x7fb", false, false},
		{"a\u0085b", false, false}, // C1 (NEL)
		{"invoice\u202Egpj.exe", false, false},
		{"a\u2066b\u2069", false, false},
		{"a\u200fb", false, false},
		{"a\u061cb", false, false},
		{"a\u2028b", false, false},
		{"a\nb", false, true},
		{"a\r\n\tb", false, true},
		{"a\xffb", false, false},   // invalid UTF-8
		{"a\uFFFDb", false, false}, // what invalid input became
	} {
		if got := Line(c.in); got != c.line {
			t.Errorf("Line(%q) = %v, want %v", c.in, got, c.line)
		}
		if got := Text(c.in); got != c.text {
			t.Errorf("Text(%q) = %v, want %v", c.in, got, c.text)
		}
	}
}
