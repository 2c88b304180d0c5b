package codes

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for code, want := range map[string]bool{
		"abc": true, "ada-lovelace": true, "a1-": true, strings.Repeat("a", 32): true,
		"ab": false, "-abc": false, "Abc": false, "a_b": false, "a b": false, strings.Repeat("a", 33): false,
		"": false, "abc/def": false, "äbc": false,
	} {
		if got := Valid(code); got != want {
			t.Errorf("Valid(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestSlug(t *testing.T) {
	for name, want := range map[string]string{
		"Ada Lovelace": "ada-lovelace", "Zoë O'Brien": "zoe-obrien", "  --Hi!!  there-- ": "hi-there",
		"東京": "", "Crème brûlée & Co.": "creme-brulee-co", strings.Repeat("x", 40): strings.Repeat("x", 24),
	} {
		if got := Slug(name); got != want {
			t.Errorf("Slug(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCandidate(t *testing.T) {
	if got := Candidate("Ada Lovelace", 0); got != "ada-lovelace" {
		t.Fatalf("first candidate %q", got)
	}
	seen := map[string]bool{}
	for attempt := 0; attempt < 50; attempt++ {
		for _, base := range []string{"Ada Lovelace", "東京", "x", strings.Repeat("long name ", 10)} {
			c := Candidate(base, attempt)
			if !Valid(c) {
				t.Fatalf("Candidate(%q, %d) = %q is not a valid code", base, attempt, c)
			}
			if attempt > 0 && base == "Ada Lovelace" {
				if !strings.HasPrefix(c, "ada-lovelace-") || seen[c] {
					t.Fatalf("retry candidate %q should be the slug with a fresh suffix", c)
				}
				seen[c] = true
			}
		}
	}
}

func TestValidAlias(t *testing.T) {
	for code, want := range map[string]bool{
		"a": true, "bea_s": true, "123-abc": true, "x.y~z": true, "ada-lovelace": true,
		"": false, "_a": false, "-a": false, "Bea": false, "a b": false, "a/b": false, "é": false,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false,
	} {
		if got := ValidAlias(code); got != want {
			t.Errorf("ValidAlias(%q) = %v, want %v", code, got, want)
		}
		if Valid(code) && !ValidAlias(code) {
			t.Errorf("%q is a code but not an alias", code)
		}
	}
}
