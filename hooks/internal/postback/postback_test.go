package postback

import (
	"net/url"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

func TestParse(t *testing.T) {
	ok := []struct {
		query    string
		amount   int64
		currency string
		status   string
	}{
		{"key=k&click_id=c1&txid=t1&amount=19.99&currency=usd", 1999, "usd", ""},
		{"key=k&click_id=c1&txid=t1&amount=19.9&currency=USD&status=pending", 1990, "usd", "pending"},
		{"key=k&affiliate_code=Ada&txid=t1&amount=1000&currency=jpy&status=declined", 1000, "jpy", "rejected"},
		{"key=k&coupon=SAVE10&txid=t1&amount=1.234&currency=kwd&status=completed", 1234, "kwd", "approved"},
		{"key=k&click_id=c1&txid=t1&amount=20&currency=eur&occurred_at=2026-11-24T10:00:00Z", 2000, "eur", ""},
		// Without click_id, affiliate_code or coupon: the handler needs one only for a new txid.
		{"key=k&txid=t1&amount=1&currency=usd&status=chargeback", 100, "usd", "refunded"},
		// Updates of a recorded sale: no amount.
		{"key=k&txid=t1&status=refunded", 0, "", "refunded"},
		{"key=k&txid=t1&status=canceled&sequence=3", 0, "", "rejected"},
	}
	for _, tc := range ok {
		q, _ := url.ParseQuery(tc.query)
		r, errs := Parse(q)
		if len(errs) > 0 || r.Amount != tc.amount || r.Currency != tc.currency || r.Status != tc.status {
			t.Errorf("%s: %+v %v", tc.query, r, errs)
		}
	}
	bad := map[string]string{
		"click_id=c1&txid=t1&amount=1&currency=usd":                               "key",
		"key=k&click_id=c&amount=1&currency=usd":                                  "txid",
		"key=k&click_id=c&txid=t&amount=1.5&currency=jpy":                         "amount",
		"key=k&click_id=c&txid=t&amount=1e3&currency=usd":                         "amount",
		"key=k&click_id=c&txid=t&amount=-5&currency=usd":                          "amount",
		"key=k&click_id=c&txid=t&amount=0&currency=usd":                           "amount",
		"key=k&click_id=c&txid=t&amount=19,99&currency=usd":                       "amount",
		"key=k&click_id=c&txid=t&amount=1&currency=xyz":                           "currency",
		"key=k&click_id=c&txid=t&amount=1&currency=usd&status=maybe":              "status",
		"key=k&click_id=c&txid=t&amount=1&currency=usd&occurred_at=today":         "occurred_at",
		"key=k&click_id=c&txid=t&txid=u&amount=1&currency=usd":                    "txid",
		"key=k&click_id=c%00&txid=t&amount=1&currency=usd":                        "click_id",
		"key=k&click_id=c&txid=t%E2%80%AEexe&amount=1&currency=usd":               "txid",     // U+202E
		"key=k&click_id=c&txid=t&amount=1&currency=usd&customer=a%E2%81%A6b":      "customer", // U+2066
		"key=k&affiliate_code=a%0Ab&txid=t&amount=1&currency=usd":                 "affiliate_code",
		"key=k&click_id=c&txid=t&amount=1":                                        "currency",
		"key=k&txid=t&refund=1.50":                                                "currency",
		"key=k&txid=t&refund=1.505&currency=usd":                                  "refund",
		"key=k&txid=t&refund=-1&currency=usd":                                     "refund",
		"key=k&txid=t&refund=1e2&currency=usd":                                    "refund",
		"key=k&txid=t&amount=5&refund=6&currency=usd":                             "refund",
		"key=k&txid=t&status=refunded&updated_at=yesterday":                       "updated_at",
		"key=k&txid=t&status=refunded&sequence=0":                                 "sequence",
		"key=k&txid=t&status=refunded&sequence=1.5":                               "sequence",
		"key=k&txid=t&status=refunded&sequence=9007199254740993":                  "sequence",
		"key=k&txid=t&status=refunded&sequence=2&updated_at=2026-11-24T10:00:00Z": "sequence",
	}
	// Refunds: cumulative decimals, exact per currency, zero allowed.
	for query, want := range map[string]int64{
		"key=k&txid=t&refund=12.34&currency=usd":                 1234,
		"key=k&txid=t&refund=0&currency=usd":                     0,
		"key=k&txid=t&refund=1.5&currency=kwd":                   1500,
		"key=k&txid=t&refund=1000&currency=jpy":                  1000,
		"key=k&txid=t&refund=5&amount=5&currency=usd&click_id=c": 500,
	} {
		q, _ := url.ParseQuery(query)
		if r, errs := Parse(q); len(errs) > 0 || !r.HasRefund || r.Refund != want || !r.Update() {
			t.Errorf("%s: %+v %v, want refund %d", query, r, errs, want)
		}
	}
	q, _ := url.ParseQuery("key=k&txid=t&status=rejected&updated_at=2026-11-24T10:00:00%2B01:00")
	if r, errs := Parse(q); len(errs) > 0 || !r.UpdatedAt.Equal(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)) || r.Sequence != 0 {
		t.Errorf("updated_at: %+v %v", r, errs)
	}
	for query, field := range bad {
		q, _ := url.ParseQuery(query)
		if _, errs := Parse(q); errs[field] == "" {
			t.Errorf("%s: want an error on %s, got %v", query, field, errs)
		}
	}
}

// FuzzParse: any query either parses into a consistent request or names what is wrong;
// it never panics and never yields a non-positive amount or an unknown currency.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"key=k&click_id=c1&txid=t1&amount=19.99&currency=usd",
		"key=k&affiliate_code=a&txid=t&amount=1000&currency=jpy&status=pending",
		"key=&txid=&amount=&currency=",
		"amount=1e308&currency=usd",
		"key=k&click_id=c&txid=t&amount=99999999999999999999&currency=usd",
		"key=k&click_id=%ff%fe&txid=t&amount=1&currency=kwd",
		"key=k&txid=t&status=refunded&refund=1.25&currency=usd&sequence=7",
		"key=k&txid=t&refund=3&currency=jpy&updated_at=2026-11-24T10:00:00Z",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, errs := Parse(q)
		if len(errs) > 0 {
			return
		}
		if r.Amount < 0 || r.Key == "" || r.TxID == "" {
			t.Fatalf("accepted an incomplete postback %q: %+v", raw, r)
		}
		if (r.Amount > 0 || r.HasRefund) && !money.ValidCurrency(r.Currency) {
			t.Fatalf("accepted an amount or refund without a known currency: %q: %+v", raw, r)
		}
		if r.HasRefund && (r.Refund < 0 || r.Refund > money.MaxAmount || (r.Amount > 0 && r.Refund > r.Amount)) {
			t.Fatalf("accepted refund %d of %d: %q", r.Refund, r.Amount, raw)
		}
		if r.Sequence < 0 || (r.Sequence > 0 && !r.UpdatedAt.IsZero()) {
			t.Fatalf("order key: %+v from %q", r, raw)
		}
		switch r.Status {
		case "", "approved", "pending", "rejected", "refunded":
		default:
			t.Fatalf("status %q", r.Status)
		}
	})
}
