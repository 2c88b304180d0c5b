package money_test

import (
	"errors"
	"math/big"
	"regexp"
	"testing"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// fuzzCurrencies covers every exponent the table uses.
var fuzzCurrencies = []string{"usd", "jpy", "kwd"}

// plainDecimal is the grammar ParseDecimal documents, used as an independent oracle.
var plainDecimal = regexp.MustCompile(`^\+?[0-9]+(\.[0-9]+)?$`)

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{
		"19.99", "19.9", "20", "+20", "007.50", "1.234", "1000.00", "0", "1000000000.00",
		"1e3", "-1", "-0", "\u0661\u0662\u0663", "0x10", "99999999999999999999", "1.", ".5", "", " 1",
		"NaN", "1,000.00", "1.5", "100000000000", "100000000001", "+", "1..2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, amount string) {
		for _, cur := range fuzzCurrencies {
			got, err := money.ParseDecimal(amount, cur)
			want, wantErr := oracle(amount, cur)
			if err != nil {
				if got != 0 {
					t.Fatalf("ParseDecimal(%q, %q) = %d with error %v", amount, cur, got, err)
				}
				if !errors.Is(err, wantErr) {
					t.Fatalf("ParseDecimal(%q, %q) error %v, want %v", amount, cur, err, wantErr)
				}
				continue
			}
			if wantErr != nil || got != want {
				t.Fatalf("ParseDecimal(%q, %q) = %d, nil; want %d, %v", amount, cur, got, want, wantErr)
			}
			if got < 0 || got > money.MaxAmount {
				t.Fatalf("ParseDecimal(%q, %q) = %d, outside [0, MaxAmount]", amount, cur, got)
			}
			s := money.Format(got, cur)
			again, err := money.ParseDecimal(s, cur)
			if err != nil || again != got {
				t.Fatalf("ParseDecimal(%q, %q) = %d, Format = %q, re-parsed %d, %v", amount, cur, got, s, again, err)
			}
		}
	})
}

// oracle computes ParseDecimal's documented result with math/big.
func oracle(amount, currency string) (int64, error) {
	exp, _ := money.Exponent(currency)
	if len(amount) > 0 && amount[0] == '-' && plainDecimal.MatchString(amount[1:]) && amount[1] != '+' {
		return 0, money.ErrRange
	}
	if !plainDecimal.MatchString(amount) {
		return 0, money.ErrSyntax
	}
	r, ok := new(big.Rat).SetString(amount)
	if !ok {
		return 0, money.ErrSyntax
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !r.IsInt() {
		return 0, money.ErrPrecision
	}
	if n := r.Num(); !n.IsInt64() || n.Int64() > money.MaxAmount {
		return 0, money.ErrRange
	}
	return r.Num().Int64(), nil
}

func FuzzRoundTrip(f *testing.F) {
	for _, n := range []int64{0, 1, 5, 99, 100, 1999, 123456789, money.MaxAmount, money.MaxAmount + 1, -1, -1999} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		// Fold n into [0, MaxAmount] so that every run exercises a valid amount, and also check
		// that the raw value round-trips only when it is in range.
		m := n % (money.MaxAmount + 1)
		if m < 0 {
			m += money.MaxAmount + 1
		}
		for _, cur := range fuzzCurrencies {
			s := money.Format(m, cur)
			got, err := money.ParseDecimal(s, cur)
			if err != nil || got != m {
				t.Fatalf("Format(%d, %q) = %q, parsed back as %d, %v", m, cur, s, got, err)
			}
			s = money.Format(n, cur)
			got, err = money.ParseDecimal(s, cur)
			if n >= 0 && n <= money.MaxAmount {
				if err != nil || got != n {
					t.Fatalf("Format(%d, %q) = %q, parsed back as %d, %v", n, cur, s, got, err)
				}
			} else if !errors.Is(err, money.ErrRange) {
				t.Fatalf("Format(%d, %q) = %q, parsed as %d, %v; want ErrRange", n, cur, s, got, err)
			}
		}
	})
}
