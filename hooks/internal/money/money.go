// Package money converts between the decimal strings that arrive in postbacks and the integer
// minor units (int64 plus a lowercase ISO 4217 code) that the product stores, without ever
// passing an amount through a float, so a commission never drifts by a cent.
package money

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// MaxAmount bounds every parsed amount so that a typo or a hostile postback ("99999999999999")
// cannot create an absurd conversion, and so that arithmetic on stored amounts (sums of a few
// thousand conversions, PercentOf) stays far from int64 overflow. 10^11 minor units is
// 1,000,000,000.00 in a two-decimal currency, 100,000,000,000 in a zero-decimal one and
// 100,000,000.000 in a three-decimal one.
const MaxAmount int64 = 100_000_000_000

// basisPointsPerUnit is 100% expressed in basis points, the denominator of PercentOf.
const basisPointsPerUnit = 10_000

// Sentinel errors, so that callers can map a failure to a field message with errors.Is while
// the wrapped message still shows the offending input in logs.
var (
	// ErrSyntax reports an amount that is not a plain non-negative decimal ("19.99").
	ErrSyntax = errors.New("money: invalid amount")
	// ErrPrecision reports an amount finer than the currency's minor unit; it is never rounded.
	ErrPrecision = errors.New("money: too many decimals for currency")
	// ErrRange reports an amount that is negative or above MaxAmount minor units.
	ErrRange = errors.New("money: amount out of range")
	// ErrCurrency reports a currency code this package does not know.
	ErrCurrency = errors.New("money: unknown currency")
)

// Exponent tells how many decimal places separate a currency's major and minor units, which
// differs per currency (jpy 0, usd 2, kwd 3), so that a "19.99" postback becomes the right
// integer. Codes must be lowercase, as Stripe sends and stores them. The table covers the active
// ISO 4217 currencies Stripe supports plus iqd and lyd, with the ISO exponent except for mga,
// which uses 0 as Stripe does. Unknown or withdrawn codes (std, ang, hrk, sll, …) report false.
func Exponent(currency string) (int, bool) {
	switch currency {
	case "bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "mga", "pyg",
		"rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf":
		return 0, true
	case "bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd":
		return 3, true
	case "aed", "afn", "all", "amd", "aoa", "ars", "aud", "awg", "azn",
		"bam", "bbd", "bdt", "bgn", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd",
		"cad", "cdf", "chf", "cny", "cop", "crc", "cve", "czk",
		"dkk", "dop", "dzd",
		"egp", "etb", "eur",
		"fjd", "fkp",
		"gbp", "gel", "gip", "gmd", "gtq", "gyd",
		"hkd", "hnl", "htg", "huf",
		"idr", "ils", "inr",
		"jmd",
		"kes", "kgs", "khr", "kyd", "kzt",
		"lak", "lbp", "lkr", "lrd", "lsl",
		"mad", "mdl", "mkd", "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn",
		"nad", "ngn", "nio", "nok", "npr", "nzd",
		"pab", "pen", "pgk", "php", "pkr", "pln",
		"qar",
		"ron", "rsd", "rub",
		"sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "stn", "szl",
		"thb", "tjs", "top", "try", "ttd", "twd", "tzs",
		"uah", "usd", "uyu", "uzs",
		"wst",
		"xcd", "xcg",
		"yer",
		"zar", "zmw":
		return 2, true
	}
	return 0, false
}

// ValidCurrency lets forms and postback handlers reject a currency before any amount is stored
// in it, since an unknown code would make the amount's scale ambiguous.
func ValidCurrency(c string) bool {
	_, ok := Exponent(c)
	return ok
}

// ParseDecimal turns a postback's decimal amount into exact minor units, refusing anything it
// would have to guess at, because a silently rounded or misread amount pays the wrong commission.
//
// Accepted: ASCII digits, an optional leading '+', and at most one '.' with digits on both sides
// ("19.99", "+20", "007.50"). Fewer decimals than the currency uses are padded ("19.9" usd is
// 1990); more are accepted only when the extra ones are zeros ("1000.00" jpy is 1000), since that
// changes nothing. Everything else fails:
//   - ErrCurrency: unknown currency (checked first);
//   - ErrSyntax: empty, spaces, ".5", "1.", exponents, commas, hex, non-ASCII digits, "NaN", …;
//   - ErrRange: a negative amount (including "-0") or more than MaxAmount minor units;
//   - ErrPrecision: a non-zero digit below the minor unit ("1.5" jpy, "0.001" usd).
func ParseDecimal(amount, currency string) (int64, error) {
	exp, ok := Exponent(currency)
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrCurrency, clip(currency))
	}
	s, negative := amount, false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		negative = s[0] == '-'
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if !allDigits(whole) || hasDot && !allDigits(frac) {
		return 0, fmt.Errorf("%w %q", ErrSyntax, clip(amount))
	}
	if negative {
		return 0, fmt.Errorf("%w: %q is negative", ErrRange, clip(amount))
	}
	if len(frac) > exp {
		if strings.Trim(frac[exp:], "0") != "" {
			return 0, fmt.Errorf("%w: %q has more than %d decimals for %s", ErrPrecision, clip(amount), exp, currency)
		}
		frac = frac[:exp]
	}
	var v int64
	for i := 0; i < len(whole)+exp; i++ {
		d := int64(0)
		switch {
		case i < len(whole):
			d = int64(whole[i] - '0')
		case i-len(whole) < len(frac):
			d = int64(frac[i-len(whole)] - '0')
		}
		// v <= MaxAmount before this step, so v*10+9 cannot overflow.
		v = v*10 + d
		if v > MaxAmount {
			return 0, fmt.Errorf("%w: %q exceeds %s %s", ErrRange, clip(amount), Format(MaxAmount, currency), currency)
		}
	}
	return v, nil
}

// Format renders minor units the way ParseDecimal reads them, for postback echoes, exports and
// logs where a plain machine-readable decimal is wanted (no grouping, no symbol): 1999 usd is
// "19.99", 1000 jpy is "1000", -5 usd is "-0.05". It never fails so that it can be used while
// reporting another error; an unknown currency is shown with 2 decimals.
func Format(minor int64, currency string) string {
	exp, ok := Exponent(currency)
	if !ok {
		exp = 2
	}
	u := uint64(minor)
	sign := ""
	if minor < 0 {
		u = -u // well defined for math.MinInt64 too
		sign = "-"
	}
	digits := strconv.FormatUint(u, 10)
	if exp == 0 {
		return sign + digits
	}
	if len(digits) <= exp {
		digits = strings.Repeat("0", exp+1-len(digits)) + digits
	}
	cut := len(digits) - exp
	return sign + digits[:cut] + "." + digits[cut:]
}

// FormatWithCode is Format followed by the upper-case currency code, for text people read
// (mails, reasons): 1250 usd is "12.50 USD".
func FormatWithCode(minor int64, currency string) string {
	return Format(minor, currency) + " " + strings.ToUpper(currency)
}

// PercentOf computes a commission (amount × basisPoints / 10000) in exact integer arithmetic,
// rounding a half minor unit to the even neighbour so that rounding errors do not all fall on
// one side across many conversions. Negative inputs round symmetrically (-2.5 becomes -2), so a
// refund's clawback mirrors the original commission.
//
// The intermediate product is 128-bit, so the result is exact for any int64 inputs whose result
// fits in int64; with |basisPoints| <= 10000 (at most 100%) the result never exceeds |amount|
// and cannot overflow. PercentOf panics only when the exact result does not fit in int64, which
// takes a rate far above 100% on an amount far above MaxAmount.
func PercentOf(amount int64, basisPoints int64) int64 {
	return MulDivHalfEven(amount, basisPoints, basisPointsPerUnit)
}

// MulDivHalfEven returns a × b / d rounded half-to-even, exactly: the shared rounding of every
// proportional money split (a percent commission, the share of a commission a partial refund
// takes back). d must be positive. It panics when d is not positive or the exact result does
// not fit in int64: with amounts bounded by MaxAmount and ratios of at most 1 neither happens.
func MulDivHalfEven(a, b, d int64) int64 {
	if d <= 0 {
		panic(fmt.Sprintf("money: MulDivHalfEven divisor %d is not positive", d))
	}
	negative := (a < 0) != (b < 0)
	hi, lo := bits.Mul64(abs(a), abs(b))
	div := uint64(d)
	qhi, r := hi/div, hi%div
	q, rem := bits.Div64(r, lo, div)
	limit := uint64(1<<63 - 1)
	if negative {
		limit = 1 << 63
	}
	up := rem > div-rem || rem == div-rem && q&1 == 1
	if up {
		q++ // a wrap to 0 is caught below
	}
	if qhi != 0 || q > limit || up && q == 0 {
		panic(fmt.Sprintf("money: %d × %d / %d overflows int64", a, b, d))
	}
	if negative {
		return int64(-q)
	}
	return int64(q)
}

// abs returns |n| as uint64 so that math.MinInt64 has a representable magnitude.
func abs(n int64) uint64 {
	if n < 0 {
		return -uint64(n)
	}
	return uint64(n)
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip keeps error messages short when a postback sends a huge field.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ParseMinor reads an amount that is already in minor units, a string of ASCII digits ("1999"
// for 19.99 USD), as Paddle sends every amount. It fails like ParseDecimal: ErrSyntax for
// anything but digits (signs, dots, spaces, empty), ErrRange above MaxAmount.
func ParseMinor(amount string) (int64, error) {
	if !allDigits(amount) {
		return 0, fmt.Errorf("%w %q", ErrSyntax, clip(amount))
	}
	var v int64
	for i := 0; i < len(amount); i++ {
		// v <= MaxAmount before this step, so v*10+9 cannot overflow.
		if v = v*10 + int64(amount[i]-'0'); v > MaxAmount {
			return 0, fmt.Errorf("%w: %q exceeds %d minor units", ErrRange, clip(amount), MaxAmount)
		}
	}
	return v, nil
}
