// Package codes makes the short codes that stand in /r/{code} URLs: readable, URL-safe and
// matching the collections' code pattern.
package codes

import (
	"crypto/rand"
	"math/big"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

const (
	maxBase     = 24 // leaves room for "-" and a suffix of up to 7 characters within 32
	suffixChars = "abcdefghjkmnpqrstuvwxyz23456789"
)

// Valid reports whether code may be used as an affiliate or link code: it mirrors
// collections.CodePattern (^[a-z0-9][a-z0-9-]{2,31}$) without a regexp, since the redirector
// checks every requested code with it.
func Valid(code string) bool {
	if len(code) < 3 || len(code) > 32 || code[0] == '-' {
		return false
	}
	for i := 0; i < len(code); i++ {
		if c := code[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidAlias reports whether code may be an imported legacy code (collections.AliasPattern,
// ^[a-z0-9][a-z0-9_.~-]{0,63}$): other platforms' codes are lowercased and may be shorter and
// use underscores, dots and tildes. Every Valid code is a valid alias. Written without a
// regexp for the same reason as Valid: the redirector checks every requested code with it.
func ValidAlias(code string) bool {
	if len(code) == 0 || len(code) > 64 {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
		case i > 0 && (c == '-' || c == '_' || c == '.' || c == '~'):
		default:
			return false
		}
	}
	return true
}

// Slug turns a name ("Zoë O'Brien") into a code base ("zoe-obrien"), or "" when nothing usable remains.
func Slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range norm.NFKD.String(strings.ToLower(name)) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case unicode.Is(unicode.Mn, r) || r == '\'' || r == '’':
			// drop accents and apostrophes
		default:
			if b.Len() > 0 && !dash {
				b.WriteByte('-')
				dash = true
			}
		}
		if b.Len() >= maxBase {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

// Random returns n characters from an alphabet without look-alikes (no 0/o, 1/l/i).
func Random(n int) string {
	out := make([]byte, n)
	max := big.NewInt(int64(len(suffixChars)))
	for i := range out {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("crypto/rand failed: " + err.Error())
		}
		out[i] = suffixChars[v.Int64()]
	}
	return string(out)
}

// Candidate returns the attempt-th code to try for base: the slug itself first (when valid),
// then the slug with a random suffix; a base too short to use gives a random code.
func Candidate(base string, attempt int) string {
	slug := Slug(base)
	if attempt == 0 && Valid(slug) {
		return slug
	}
	if len(slug) < 3 {
		return Random(8)
	}
	return slug + "-" + Random(min(4+attempt/4, 32-maxBase-1))
}
