// Package postback parses server-to-server postbacks (GET /api/pba/postback): the query
// string ad networks and shop plugins send when a sale happens, and when it changes (refunded,
// cancelled). Amounts arrive as decimal strings ("19.99") and are converted exactly to minor
// units of the currency; every field is checked, and each problem is reported under the
// parameter's name.
//
// A postback with an amount records the sale (or names one recorded already); one without an
// amount updates a recorded sale: its status, its cumulative refund, or both.
package postback

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
)

// Request is a parsed postback.
type Request struct {
	Key           string
	ClickID       string
	AffiliateCode string
	Coupon        string
	TxID          string
	Amount        int64 // minor units; 0 when not given (an update of a recorded sale)
	Currency      string
	Status        string // approved, pending, rejected, refunded; "" when not given
	Customer      string
	OccurredAt    time.Time // zero when not given
	// Refund is the cumulative refunded amount in minor units (refund=, a decimal like amount),
	// meaningful when HasRefund.
	Refund    int64
	HasRefund bool
	// The sender's order key of a change: updated_at (RFC 3339) or sequence (a positive
	// integer), at most one; zero when not given.
	UpdatedAt time.Time
	Sequence  int64
}

// Update reports whether the postback asks to change a recorded sale (status or refund).
func (r Request) Update() bool { return r.Status != "" || r.HasRefund }

// maxSequence keeps sequences exact in JSON numbers (2^53).
const maxSequence = 1 << 53

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
		case !textcheck.Line(v):
			errs[name] = "contains control, bidirectional or invalid characters"
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
		Currency:      strings.ToLower(get("currency", 3, false)),
		Customer:      get("customer", maxID, false),
	}
	if r.Currency != "" && !money.ValidCurrency(r.Currency) {
		errs["currency"] = "not an ISO 4217 currency"
	}
	// decimal converts a decimal parameter to minor units of the currency (which it needs).
	decimal := func(name, value string) (int64, bool) {
		switch {
		case errs["currency"] != "":
			return 0, false
		case r.Currency == "":
			errs["currency"] = "required with " + name
			return 0, false
		}
		minor, err := money.ParseDecimal(value, r.Currency)
		if err != nil {
			errs[name] = "must be a decimal like 19.99 with at most the currency's decimals"
			return 0, false
		}
		return minor, true
	}
	if amount := get("amount", 32, false); amount != "" {
		if minor, ok := decimal("amount", amount); ok && minor <= 0 {
			errs["amount"] = "must be positive"
		} else if ok {
			r.Amount = minor
		}
	}
	if refund := get("refund", 32, false); refund != "" {
		r.Refund, r.HasRefund = decimal("refund", refund)
	}
	switch status := strings.ToLower(get("status", maxShort, false)); status {
	case "":
	case "approved", "approve", "completed", "1":
		r.Status = "approved"
	case "pending", "hold", "0":
		r.Status = "pending"
	case "rejected", "declined", "reject", "cancelled", "canceled", "-1":
		r.Status = "rejected"
	case "refunded", "refund", "chargeback", "-2":
		r.Status = "refunded"
	default:
		errs["status"] = "one of approved, pending, rejected, refunded"
	}
	if at := get("updated_at", 40, false); at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			errs["updated_at"] = "an RFC 3339 time such as 2026-11-24T10:00:00Z"
		}
		r.UpdatedAt = t
	}
	if seq := get("sequence", 20, false); seq != "" {
		n, err := strconv.ParseInt(seq, 10, 64)
		switch {
		case err != nil || n <= 0 || n > maxSequence:
			errs["sequence"] = "a positive integer (at most 2^53) that grows with each change of the sale"
		case !r.UpdatedAt.IsZero() || errs["updated_at"] != "":
			errs["sequence"] = "give updated_at or sequence, not both"
		default:
			r.Sequence = n
		}
	}
	if at := get("occurred_at", 40, false); at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			errs["occurred_at"] = "an RFC 3339 time such as 2026-11-24T10:00:00Z"
		}
		r.OccurredAt = t
	}
	if r.Amount > 0 && r.HasRefund && r.Refund > r.Amount {
		errs["refund"] = "at most the amount: refund is the cumulative refunded amount"
	}
	// click_id, affiliate_code or coupon are needed to record a sale, not to update one: the
	// handler asks for them when the txid is new.
	return r, errs
}
