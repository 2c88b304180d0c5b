// Package postback parses server-to-server postbacks (GET /api/pba/postback): the query
// string ad networks and shop plugins send when a sale happens. Amounts arrive as decimal
// strings ("19.99") and are converted exactly to minor units of the currency; every field is
// checked, and each problem is reported under the parameter's name.
package postback

import (
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// Request is a parsed postback.
type Request struct {
	Key           string
	ClickID       string
	AffiliateCode string
	Coupon        string
	TxID          string
	Amount        int64 // minor units
	Currency      string
	Status        string // approved, pending or rejected
	Customer      string
	OccurredAt    time.Time // zero when not given
}

// Limits of the free-text parameters.
const (
	maxID    = 255
	maxShort = 64
)

// Parse reads a postback query. errs maps a parameter name to what is wrong with it; Request
// is meaningful only when errs is empty.
func Parse(q url.Values) (Request, map[string]string) {
	errs := map[string]string{}
	get := func(name string, max int, required bool) string {
		vals := q[name]
		if len(vals) > 1 {
			errs[name] = "given more than once"
			return ""
		}
		v := ""
		if len(vals) == 1 {
			v = strings.TrimSpace(vals[0])
		}
		switch {
		case v == "" && required:
			errs[name] = "required"
		case len(v) > max:
			errs[name] = "too long"
		case strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0:
			errs[name] = "contains control or invalid characters"
		default:
			return v
		}
		return ""
	}

	r := Request{
		Key:           get("key", maxID, true),
		ClickID:       get("click_id", maxShort, false),
		AffiliateCode: strings.ToLower(get("affiliate_code", maxShort, false)),
		Coupon:        strings.ToLower(get("coupon", maxShort, false)),
		TxID:          get("txid", maxID, true),
		Currency:      strings.ToLower(get("currency", 3, true)),
		Customer:      get("customer", maxID, false),
	}
	if r.Currency != "" && !money.ValidCurrency(r.Currency) {
		errs["currency"] = "not an ISO 4217 currency"
	}
	if amount := get("amount", 32, true); amount != "" && errs["currency"] == "" && r.Currency != "" {
		minor, err := money.ParseDecimal(amount, r.Currency)
		switch {
		case err != nil:
			errs["amount"] = "must be a decimal like 19.99 with at most the currency's decimals"
		case minor <= 0:
			errs["amount"] = "must be positive"
		default:
			r.Amount = minor
		}
	}
	switch status := strings.ToLower(get("status", maxShort, false)); status {
	case "", "approved", "approve", "completed", "1":
		r.Status = "approved"
	case "pending", "hold", "0":
		r.Status = "pending"
	case "rejected", "declined", "reject", "cancelled", "canceled", "-1":
		r.Status = "rejected"
	default:
		errs["status"] = "one of approved, pending, rejected"
	}
	if at := get("occurred_at", 40, false); at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			errs["occurred_at"] = "an RFC 3339 time such as 2026-11-24T10:00:00Z"
		}
		r.OccurredAt = t
	}
	if r.ClickID == "" && r.AffiliateCode == "" && r.Coupon == "" && errs["click_id"] == "" {
		errs["click_id"] = "give click_id, affiliate_code or coupon"
	}
	return r, errs
}
