// Package textcheck refuses text that does not display as what it contains: control characters
// (NUL, escape, backspace; line breaks where one line is expected), invalid UTF-8, and the
// Unicode bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and its kin) that make
// "gpj.exe" read as "exe.jpg" in a dashboard, a CSV or a mail.
package textcheck

import "unicode/utf8"

// Message is what a refusal says, for the field error of an API answer.
const Message = "Contains a control or bidirectional formatting character (such as NUL or U+202E)."

// Line reports whether s is fit for a one-line field (names, codes, labels, ids): valid UTF-8
// with no control character, no line or paragraph separator and no bidirectional control.
func Line(s string) bool { return valid(s, false) }

// Text reports whether s is fit for a multi-line field (notes): as Line, but tabs and line
// breaks are allowed.
func Text(s string) bool { return valid(s, true) }

func valid(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f { // printable ASCII: the common case, no decoding
			continue
		}
		if c < utf8.RuneSelf {
			if !(multiline && (c == '\t' || c == '\n' || c == '\r')) {
				return false // C0 controls and DEL
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || refused(r) {
			return false // invalid UTF-8 (or U+FFFD, what invalid input was turned into)
		}
		i += size - 1
	}
	return true
}

// refused reports the non-ASCII characters no field may hold.
func refused(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1 controls
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ARABIC LETTER MARK, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	}
	return false
}
