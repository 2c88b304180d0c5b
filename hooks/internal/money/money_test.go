package money_test

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

func TestExponent(t *testing.T) {
	t.Parallel()
	want := map[int][]string{
		0: {"bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"},
		2: {"usd", "eur", "gbp", "chf", "cad", "aud", "nzd", "sek", "nok", "dkk", "pln", "czk", "huf", "ron", "bgn",
			"try", "ils", "inr", "brl", "mxn", "zar", "sgd", "hkd", "twd", "thb", "myr", "idr", "php", "cny", "aed",
			"sar", "egp", "ngn", "kes", "xcd", "xcg", "stn", "sle"},
		3: {"bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd"},
	}
	for exp, codes := range want {
		for _, c := range codes {
			got, ok := money.Exponent(c)
			if !ok || got != exp {
				t.Errorf("Exponent(%q) = %d, %v; want %d, true", c, got, ok, exp)
			}
		}
	}
	for _, c := range []string{"", "USD", "Usd", " usd", "usd ", "us", "usdd", "xxx", "xts", "std", "ang", "hrk", "sll", "eur\x00"} {
		if got, ok := money.Exponent(c); ok {
			t.Errorf("Exponent(%q) = %d, true; want false", c, got)
		}
	}
}

func TestValidCurrency(t *testing.T) {
	t.Parallel()
	for c, want := range map[string]bool{
		"usd": true, "jpy": true, "kwd": true, "eur": true,
		"": false, "USD": false, "zzz": false, "eu": false, "euro": false,
	} {
		if got := money.ValidCurrency(c); got != want {
			t.Errorf("ValidCurrency(%q) = %v, want %v", c, got, want)
		}
	}
}

func TestParseDecimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		amount, currency string
		want             int64
		err              error
	}{
		{"19.99", "usd", 1999, nil},
		{"19.9", "usd", 1990, nil},
		{"20", "usd", 2000, nil},
		{"+20", "usd", 2000, nil},
		{"0", "usd", 0, nil},
		{"0.00", "usd", 0, nil},
		{"0.01", "usd", 1, nil},
		{"007.50", "usd", 750, nil},
		{"19.990", "usd", 1999, nil},
		{"19.99000000000000000000000000", "usd", 1999, nil},
		{"1000", "jpy", 1000, nil},
		{"1000.00", "jpy", 1000, nil},
		{"1.234", "kwd", 1234, nil},
		{"1.2", "kwd", 1200, nil},
		{"1000000000", "usd", 100_000_000_000, nil},
		{"1000000000.00", "usd", money.MaxAmount, nil},
		{"100000000000", "jpy", money.MaxAmount, nil},
		{"100000000.000", "kwd", money.MaxAmount, nil},
		{"0000000000000000000000000000001.00", "usd", 100, nil},

		{"1.5", "jpy", 0, money.ErrPrecision},
		{"1.001", "usd", 0, money.ErrPrecision},
		{"0.0001", "kwd", 0, money.ErrPrecision},
		{"19.9901", "usd", 0, money.ErrPrecision},

		{"", "usd", 0, money.ErrSyntax},
		{"+", "usd", 0, money.ErrSyntax},
		{"-", "usd", 0, money.ErrSyntax},
		{".", "usd", 0, money.ErrSyntax},
		{".5", "usd", 0, money.ErrSyntax},
		{"1.", "usd", 0, money.ErrSyntax},
		{"1..2", "usd", 0, money.ErrSyntax},
		{"1.2.3", "usd", 0, money.ErrSyntax},
		{" 1", "usd", 0, money.ErrSyntax},
		{"1 ", "usd", 0, money.ErrSyntax},
		{"1 000", "usd", 0, money.ErrSyntax},
		{"1,000.00", "usd", 0, money.ErrSyntax},
		{"19,99", "eur", 0, money.ErrSyntax},
		{"1e3", "usd", 0, money.ErrSyntax},
		{"1E3", "usd", 0, money.ErrSyntax},
		{"0x10", "usd", 0, money.ErrSyntax},
		{"NaN", "usd", 0, money.ErrSyntax},
		{"Inf", "usd", 0, money.ErrSyntax},
		{"++1", "usd", 0, money.ErrSyntax},
		{"+-1", "usd", 0, money.ErrSyntax},
		{"$19.99", "usd", 0, money.ErrSyntax},
		{"19.99usd", "usd", 0, money.ErrSyntax},
		{"1_000", "usd", 0, money.ErrSyntax},
		{"\u0661\u0662\u0663", "usd", 0, money.ErrSyntax}, // Arabic-Indic digits
		{"１２３", "usd", 0, money.ErrSyntax},                // fullwidth digits
		{"1\x00", "usd", 0, money.ErrSyntax},
		{"-abc", "usd", 0, money.ErrSyntax},
		{"1.5x", "jpy", 0, money.ErrSyntax}, // syntax wins over precision

		{"-1", "usd", 0, money.ErrRange},
		{"-0", "usd", 0, money.ErrRange},
		{"-0.001", "usd", 0, money.ErrRange},
		{"1000000000.01", "usd", 0, money.ErrRange},
		{"100000000001", "jpy", 0, money.ErrRange},
		{"99999999999999999999", "usd", 0, money.ErrRange},
		{"99999999999999999999999999999999999999999", "jpy", 0, money.ErrRange},

		{"1", "", 0, money.ErrCurrency},
		{"1", "USD", 0, money.ErrCurrency},
		{"1", "xxx", 0, money.ErrCurrency},
		{"garbage", "xxx", 0, money.ErrCurrency}, // currency is checked first
	}
	for _, tt := range tests {
		got, err := money.ParseDecimal(tt.amount, tt.currency)
		if tt.err == nil {
			if err != nil || got != tt.want {
				t.Errorf("ParseDecimal(%q, %q) = %d, %v; want %d, nil", tt.amount, tt.currency, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, tt.err) || got != 0 {
			t.Errorf("ParseDecimal(%q, %q) = %d, %v; want 0, %v", tt.amount, tt.currency, got, err, tt.err)
		}
	}
}

func TestParseDecimalErrorMessageIsBounded(t *testing.T) {
	t.Parallel()
	_, err := money.ParseDecimal(strings.Repeat("x", 1<<20), "usd")
	if !errors.Is(err, money.ErrSyntax) || len(err.Error()) > 200 {
		t.Fatalf("got error of %d bytes: %.80v", len(err.Error()), err)
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		minor    int64
		currency string
		want     string
	}{
		{1999, "usd", "19.99"},
		{-1999, "usd", "-19.99"},
		{2000, "usd", "20.00"},
		{0, "usd", "0.00"},
		{5, "usd", "0.05"},
		{-5, "usd", "-0.05"},
		{50, "usd", "0.50"},
		{1000, "jpy", "1000"},
		{-1000, "jpy", "-1000"},
		{0, "jpy", "0"},
		{1234, "kwd", "1.234"},
		{7, "kwd", "0.007"},
		{1999, "zzz", "19.99"}, // unknown currency: 2 decimals
		{1999, "", "19.99"},
		{money.MaxAmount, "usd", "1000000000.00"},
		{math.MaxInt64, "usd", "92233720368547758.07"},
		{math.MinInt64, "usd", "-92233720368547758.08"},
		{math.MinInt64, "jpy", "-9223372036854775808"},
	}
	for _, tt := range tests {
		if got := money.Format(tt.minor, tt.currency); got != tt.want {
			t.Errorf("Format(%d, %q) = %q, want %q", tt.minor, tt.currency, got, tt.want)
		}
	}
}

func TestPercentOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		amount, bp, want int64
	}{
		{10, 5, 0},        // 0.005 -> 0
		{5000, 5, 2},      // 2.5 -> 2
		{7000, 5, 4},      // 3.5 -> 4
		{-5000, 5, -2},    // -2.5 -> -2
		{-7000, 5, -4},    // -3.5 -> -4
		{5000, -5, -2},    // sign from the rate
		{-5000, -5, 2},    // two negatives
		{4999, 5, 2},      // 2.4995 -> 2
		{5001, 5, 3},      // 2.5005 -> 3
		{15000, 1, 2},     // 1.5 -> 2
		{25000, 1, 2},     // 2.5 -> 2
		{1999, 2000, 400}, // 399.8 -> 400
		{1999, 10000, 1999},
		{1999, 0, 0},
		{0, 10000, 0},
		{1, 5000, 0},  // 0.5 -> 0
		{3, 5000, 2},  // 1.5 -> 2
		{-1, 5000, 0}, // -0.5 -> 0
		{-3, 5000, -2},
		{money.MaxAmount, 10000, money.MaxAmount},
		{money.MaxAmount, 1, 10_000_000},
		{-money.MaxAmount, 10000, -money.MaxAmount},
		{math.MaxInt64, 10000, math.MaxInt64},
		{math.MinInt64, 10000, math.MinInt64},
		{math.MaxInt64, 5000, 4611686018427387904}, // ...903.5 -> even
		{math.MinInt64, 5000, math.MinInt64 / 2},
		{math.MaxInt64, 1, 922337203685478}, // ...477.5807 -> 478
		{1000, 25000, 2500},                 // over 100% works when it fits
		{math.MaxInt64 / 2, 20000, math.MaxInt64 - 1},
	}
	for _, tt := range tests {
		if got := money.PercentOf(tt.amount, tt.bp); got != tt.want {
			t.Errorf("PercentOf(%d, %d) = %d, want %d", tt.amount, tt.bp, got, tt.want)
		}
	}
}

func TestPercentOfPanicsOnOverflow(t *testing.T) {
	t.Parallel()
	for _, tt := range [][2]int64{
		{math.MaxInt64, 10001},
		{math.MinInt64, 10001},
		{math.MinInt64, -10000},
		{math.MaxInt64, math.MaxInt64},
		{math.MinInt64, math.MinInt64},
		{math.MaxInt64/2 + 1, 20000},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("PercentOf(%d, %d) did not panic", tt[0], tt[1])
				}
			}()
			money.PercentOf(tt[0], tt[1])
		}()
	}
}

// TestPercentOfMatchesBig checks PercentOf against an independent math/big computation of
// round-half-even(amount*bp/10000) over random inputs, including the whole int64 range.
func TestPercentOfMatchesBig(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200_000; i++ {
		var amount, bp int64
		switch i % 3 {
		case 0:
			amount, bp = r.Int64N(2*money.MaxAmount+1)-money.MaxAmount, r.Int64N(20001)-10000
		case 1:
			amount, bp = int64(r.Uint64()), r.Int64N(20001)-10000
		default:
			amount, bp = r.Int64N(2_000_001)-1_000_000, r.Int64N(21)-10 // many exact halves
		}
		want := bigPercentOf(amount, bp)
		got, panicked := func() (v int64, panicked bool) {
			defer func() { panicked = recover() != nil }()
			return money.PercentOf(amount, bp), false
		}()
		if !want.IsInt64() {
			if !panicked {
				t.Fatalf("PercentOf(%d, %d) = %d, want panic (exact %v)", amount, bp, got, want)
			}
			continue
		}
		if panicked || got != want.Int64() {
			t.Fatalf("PercentOf(%d, %d) = %d (panicked %v), want %v", amount, bp, got, panicked, want)
		}
	}
}

func bigPercentOf(amount, bp int64) *big.Int {
	num := new(big.Int).Mul(big.NewInt(amount), big.NewInt(bp))
	q, m := new(big.Int).QuoRem(num, big.NewInt(10000), new(big.Int)) // truncates toward zero
	twice := new(big.Int).Abs(m)
	twice.Lsh(twice, 1)
	if c := twice.Cmp(big.NewInt(10000)); c > 0 || c == 0 && q.Bit(0) == 1 {
		q.Add(q, big.NewInt(int64(num.Sign())))
	}
	return q
}

func TestFormatWithCode(t *testing.T) {
	for _, c := range []struct {
		minor    int64
		currency string
		want     string
	}{{1250, "usd", "12.50 USD"}, {1000, "jpy", "1000 JPY"}, {-5, "eur", "-0.05 EUR"}, {1234, "kwd", "1.234 KWD"}} {
		if got := money.FormatWithCode(c.minor, c.currency); got != c.want {
			t.Errorf("FormatWithCode(%d, %q) = %q, want %q", c.minor, c.currency, got, c.want)
		}
	}
}

func TestParseMinor(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "1999": 1999, "007": 7, "100000000000": money.MaxAmount} {
		if got, err := money.ParseMinor(in); err != nil || got != want {
			t.Errorf("ParseMinor(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]error{"": money.ErrSyntax, "19.99": money.ErrSyntax, "-5": money.ErrSyntax, "+5": money.ErrSyntax,
		" 5": money.ErrSyntax, "1e3": money.ErrSyntax, "٣": money.ErrSyntax, "100000000001": money.ErrRange,
		"99999999999999999999999": money.ErrRange} {
		if _, err := money.ParseMinor(in); !errors.Is(err, want) {
			t.Errorf("ParseMinor(%q) error %v, want %v", in, err, want)
		}
	}
}
