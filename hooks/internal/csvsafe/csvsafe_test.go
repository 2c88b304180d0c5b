package csvsafe

import "testing"

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"Ada Lovelace":       "Ada Lovelace",
		"=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
		"+1 555":             "'+1 555",
		"-2":                 "'-2",
		"@SUM(A1)":           "'@SUM(A1)",
		"\tx":                "'\tx",
		"\rx":                "'\rx",
		"a=b":                "a=b",
	} {
		if got := Cell(in); got != want {
			t.Errorf("Cell(%q) = %q, want %q", in, got, want)
		}
	}
}
