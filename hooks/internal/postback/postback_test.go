package postback

import (
	"net/url"
	"testing"
)

func TestParse(t *testing.T) {
	ok := []struct {
		query    string
		amount   int64
		currency string
		status   string
	}{
		{"key=k&click_id=c1&txid=t1&amount=19.99&currency=usd", 1999, "usd", "approved"},
		{"key=k&click_id=c1&txid=t1&amount=19.9&currency=USD&status=pending", 1990, "usd", "pending"},
		{"key=k&affiliate_code=Ada&txid=t1&amount=1000&currency=jpy&status=declined", 1000, "jpy", "rejected"},
		{"key=k&coupon=SAVE10&txid=t1&amount=1.234&currency=kwd", 1234, "kwd", "approved"},
		{"key=k&click_id=c1&txid=t1&amount=20&currency=eur&occurred_at=2026-11-24T10:00:00Z", 2000, "eur", "approved"},
	}
	for _, tc := range ok {
		q, _ := url.ParseQuery(tc.query)
		r, errs := Parse(q)
		if len(errs) > 0 || r.Amount != tc.amount || r.Currency != tc.currency || r.Status != tc.status {
			t.Errorf("%s: %+v %v", tc.query, r, errs)
		}
	}
	bad := map[string]string{
		"click_id=c1&txid=t1&amount=1&currency=usd":                       "key",
		"key=k&txid=t1&amount=1&currency=usd":                             "click_id",
		"key=k&click_id=c&amount=1&currency=usd":                          "txid",
		"key=k&click_id=c&txid=t&amount=1.5&currency=jpy":                 "amount",
		"key=k&click_id=c&txid=t&amount=1e3&currency=usd":                 "amount",
		"key=k&click_id=c&txid=t&amount=-5&currency=usd":                  "amount",
		"key=k&click_id=c&txid=t&amount=0&currency=usd":                   "amount",
		"key=k&click_id=c&txid=t&amount=19,99&currency=usd":               "amount",
		"key=k&click_id=c&txid=t&amount=1&currency=xyz":                   "currency",
		"key=k&click_id=c&txid=t&amount=1&currency=usd&status=maybe":      "status",
		"key=k&click_id=c&txid=t&amount=1&currency=usd&occurred_at=today": "occurred_at",
		"key=k&click_id=c&txid=t&txid=u&amount=1&currency=usd":            "txid",
		"key=k&click_id=c%00&txid=t&amount=1&currency=usd":                "click_id",
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
		if r.Amount <= 0 || r.Key == "" || r.TxID == "" || r.Currency == "" {
			t.Fatalf("accepted an incomplete postback %q: %+v", raw, r)
		}
		if r.ClickID == "" && r.AffiliateCode == "" && r.Coupon == "" {
			t.Fatalf("accepted a postback naming no affiliate: %q", raw)
		}
		switch r.Status {
		case "approved", "pending", "rejected":
		default:
			t.Fatalf("status %q", r.Status)
		}
	})
}
