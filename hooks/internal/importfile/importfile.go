// Package importfile reads the affiliate lists other platforms export (Rewardful,
// FirstPromoter, Tapfiliate) and pbaffiliate's own import CSV into rows, and finds every
// problem a file has on its own, each with its line and field: a bad email, a code that cannot
// be a legacy code, a status no platform uses, an amount that is not a plain decimal, a
// control character, a code, email or coupon twice in the file. What needs the database (a
// code taken by another affiliate, an unknown tier) is hooks/import.go's.
package importfile

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/codes"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
)

// The platforms a file may come from.
const (
	Rewardful     = "rewardful"
	FirstPromoter = "firstpromoter"
	Tapfiliate    = "tapfiliate"
	CSV           = "csv"
)

// Platforms lists them in the order the command's help shows them.
var Platforms = []string{Rewardful, FirstPromoter, Tapfiliate, CSV}

// Affiliate statuses, as collections names them (this package imports nothing of ours but
// pure packages).
const (
	StatusPending   = "pending"
	StatusApproved  = "approved"
	StatusRejected  = "rejected"
	StatusSuspended = "suspended"
)

// MaxName is the affiliates.name field's limit.
const MaxName = 200

// Row is one affiliate of a file, normalized: emails and codes lowercased, the status one of
// ours, the balance in minor units.
type Row struct {
	Line        int // of the record's first line in the file (the header is line 1)
	Name        string
	Email       string
	Code        string   // the legacy code (Rewardful token, FirstPromoter ref_id, Tapfiliate referral code), lowercased; "" for none
	ExtraCodes  []string // more legacy codes of the affiliate (Tapfiliate's tap_a id), lowercased
	PayoutEmail string
	Status      string
	Coupon      string // lowercased
	Tier        string // a tier's name in the program
	Balance     int64  // minor units of Currency, either sign; meaningful when HasBalance
	HasBalance  bool
	Currency    string // lowercased; "" means the program's
}

// Codes is every legacy code of the row: Code first, then ExtraCodes.
func (r Row) Codes() []string {
	if r.Code == "" {
		return r.ExtraCodes
	}
	return append([]string{r.Code}, r.ExtraCodes...)
}

// Problem is one thing wrong with a file: its line (0: the file as a whole), the field (as our
// import names it: name, email, code, payout_email, status, coupon, tier, balance, currency,
// header), a machine-readable code and a message for people.
type Problem struct {
	Line    int    `json:"line"`
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.Field, p.Message)
	}
	return fmt.Sprintf("line %d: %s: %s", p.Line, p.Field, p.Message)
}

// field is what a column of a file means to the import.
type field int

const (
	fName field = iota + 1
	fFirstName
	fLastName
	fEmail
	fCode
	fExtraCode
	fPayoutEmail
	fAltPayoutEmail // used when fPayoutEmail is empty (Rewardful's wise_email)
	fStatus
	fCoupon
	fTier
	fBalance
	fCurrency
)

// common are the columns every form reads (our own names), so a platform's export can be
// completed by hand with a tier, a balance or a currency.
var common = map[string]field{
	"name": fName, "email": fEmail, "code": fCode, "payout_email": fPayoutEmail, "status": fStatus,
	"coupon": fCoupon, "tier": fTier, "balance": fBalance, "currency": fCurrency,
}

// columns maps each platform's column names (normalized: lowercase, spaces and dashes as
// underscores) to fields; the names and where they come from are in the README's "Moving
// from Rewardful, FirstPromoter or Tapfiliate".
var columns = map[string]map[string]field{
	// Rewardful's import/export shape (help.rewardful.com "How do I import data into
	// Rewardful?") and its REST API affiliate object (developers.rewardful.com): state is
	// active / disabled / suspicious, token is the ?via= code.
	Rewardful: {
		"first_name": fFirstName, "last_name": fLastName, "paypal_email": fPayoutEmail, "wise_email": fAltPayoutEmail,
		"token": fCode, "link_token": fCode, "state": fStatus, "coupon_code": fCoupon,
	},
	// FirstPromoter's promoter (API v1 promoters/list, v2 company/promoters): status/state
	// approved, pending, denied (v2 also blocked, inactive); default_ref_id / ref_token is the
	// ?fpr= code; current_balance the unpaid cash balance.
	FirstPromoter: {
		"first_name": fFirstName, "last_name": fLastName, "paypal_email": fPayoutEmail,
		"ref_id": fCode, "default_ref_id": fCode, "ref_token": fCode, "referral_id": fCode,
		"state": fStatus, "current_balance": fBalance,
	},
	// Tapfiliate's affiliate import columns (support.tapfiliate.com "Importing your
	// affiliates": firstname, lastname, email, coupon) and its affiliates page (the referral
	// code after ?ref=, tap_a ids of anonymized links, approved).
	Tapfiliate: {
		"firstname": fFirstName, "lastname": fLastName, "first_name": fFirstName, "last_name": fLastName,
		"referral_code": fCode, "ref": fCode, "tap_a": fExtraCode, "paypal_email": fPayoutEmail,
		"approved": fStatus, "coupons": fCoupon,
	},
	CSV: {},
}

// csvRequired is the header pbaffiliate's own form must have (more columns are optional).
var csvRequired = []string{"name", "email", "code", "payout_email", "status"}

// statuses maps each platform's status words to ours (our own four always work); an empty
// status is approved: exports list the affiliates a program has.
var statuses = map[string]map[string]string{
	Rewardful:     {"active": StatusApproved, "disabled": StatusSuspended, "suspicious": StatusSuspended},
	FirstPromoter: {"active": StatusApproved, "accepted": StatusApproved, "denied": StatusRejected, "blocked": StatusSuspended, "inactive": StatusSuspended, "archived": StatusSuspended},
	Tapfiliate:    {"true": StatusApproved, "yes": StatusApproved, "1": StatusApproved, "false": StatusPending, "no": StatusPending, "0": StatusPending, "archived": StatusRejected, "disapproved": StatusRejected},
	CSV:           {},
}

// Known reports whether platform is one Parse reads.
func Known(platform string) bool { return slices.Contains(Platforms, platform) }

// Parse reads the file of platform. defaultCurrency is the program's, used for balances
// without a currency column. It returns the rows and every problem found in the file on its
// own; an error only when the file cannot be read as CSV at all.
func Parse(r io.Reader, platform, defaultCurrency string) ([]Row, []Problem, error) {
	if !Known(platform) {
		return nil, nil, fmt.Errorf("unknown platform %q (want one of %s)", platform, strings.Join(Platforms, ", "))
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // a short row is reported per field, not as a parse error
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, []Problem{{Field: "header", Code: "empty", Message: "The file is empty."}}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	index, problems := mapHeader(header, platform)
	if len(problems) > 0 {
		return nil, problems, nil
	}
	var rows []Row
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				problems = append(problems, Problem{Line: pe.StartLine, Field: "file", Code: "invalid_csv", Message: pe.Err.Error()})
				return rows, problems, nil
			}
			return nil, nil, fmt.Errorf("read file: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if blank(rec) {
			continue
		}
		row, ps := parseRow(rec, index, platform, defaultCurrency, line)
		rows = append(rows, row)
		problems = append(problems, ps...)
	}
	if len(rows) == 0 {
		problems = append(problems, Problem{Field: "file", Code: "empty", Message: "The file has a header but no affiliates."})
	}
	return rows, append(problems, duplicates(rows)...), nil
}

// mapHeader finds the column of each field; a field named twice takes its first column.
func mapHeader(header []string, platform string) (map[field]int, []Problem) {
	index := map[field]int{}
	var problems []Problem
	seen := map[string]bool{}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a spreadsheet's byte order mark
		}
		name := normalize(h)
		seen[name] = true
		f, ok := columns[platform][name]
		if !ok {
			f, ok = common[name]
		}
		if !ok {
			if platform == CSV && name != "" {
				problems = append(problems, Problem{Line: 1, Field: "header", Code: "unknown_column",
					Message: fmt.Sprintf("Unknown column %q (name, email, code, payout_email, status, coupon, tier, balance, currency).", h)})
			}
			continue // an export's other columns (visitors, campaign, …) are not imported
		}
		if _, dup := index[f]; !dup {
			index[f] = i
		}
	}
	if platform == CSV {
		for _, c := range csvRequired {
			if !seen[c] {
				problems = append(problems, Problem{Line: 1, Field: "header", Code: "missing_column",
					Message: "The header must have the columns " + strings.Join(csvRequired, ",") + "; " + c + " is missing."})
			}
		}
	} else if _, ok := index[fEmail]; !ok {
		problems = append(problems, Problem{Line: 1, Field: "header", Code: "missing_column", Message: "No email column: is this a " + platform + " export?"})
	}
	return index, problems
}

func normalize(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	return strings.NewReplacer(" ", "_", "-", "_").Replace(h)
}

func blank(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// parseRow reads one record; every problem of it is reported, not only the first.
func parseRow(rec []string, index map[field]int, platform, defaultCurrency string, line int) (Row, []Problem) {
	var problems []Problem
	bad := func(field, code, msg string) {
		problems = append(problems, Problem{Line: line, Field: field, Code: code, Message: msg})
	}
	// get returns the trimmed cell of f, refusing control characters in it.
	get := func(f field, name string) string {
		i, ok := index[f]
		if !ok || i >= len(rec) {
			return ""
		}
		v := strings.TrimSpace(rec[i])
		if !textcheck.Line(v) {
			bad(name, "invalid_characters", textcheck.Message)
			return ""
		}
		return v
	}
	row := Row{Line: line}

	row.Name = get(fName, "name")
	if row.Name == "" {
		row.Name = strings.TrimSpace(get(fFirstName, "name") + " " + get(fLastName, "name"))
	}

	email := strings.ToLower(get(fEmail, "email"))
	switch {
	case email == "":
		bad("email", "required", "An affiliate needs an email address.")
	case !validEmail(email):
		bad("email", "invalid_email", fmt.Sprintf("%q is not an email address.", email))
	default:
		row.Email = email
	}
	if row.Name == "" && row.Email != "" {
		row.Name, _, _ = strings.Cut(row.Email, "@") // FirstPromoter profiles may have no name
	}
	if utf8.RuneCountInString(row.Name) > MaxName {
		bad("name", "too_long", fmt.Sprintf("A name has at most %d characters.", MaxName))
	}

	if code := get(fCode, "code"); code != "" {
		if c := strings.ToLower(code); codes.ValidAlias(c) {
			row.Code = c
		} else {
			bad("code", "invalid_code", fmt.Sprintf("%q cannot be a link code: use 1 to 64 letters, digits, '-', '_', '.' or '~', starting with a letter or digit.", code))
		}
	}
	if extra := get(fExtraCode, "code"); extra != "" {
		if c := strings.ToLower(extra); codes.ValidAlias(c) {
			row.ExtraCodes = append(row.ExtraCodes, c)
		} else {
			bad("code", "invalid_code", fmt.Sprintf("%q cannot be a link code.", extra))
		}
	}

	payout := strings.ToLower(get(fPayoutEmail, "payout_email"))
	if payout == "" {
		payout = strings.ToLower(get(fAltPayoutEmail, "payout_email"))
	}
	if payout != "" && !validEmail(payout) {
		bad("payout_email", "invalid_email", fmt.Sprintf("%q is not an email address.", payout))
	} else {
		row.PayoutEmail = payout
	}

	status := strings.ToLower(get(fStatus, "status"))
	switch s, ok := statuses[platform][status]; {
	case status == "":
		row.Status = StatusApproved
	case ok:
		row.Status = s
	case status == StatusPending || status == StatusApproved || status == StatusRejected || status == StatusSuspended:
		row.Status = status
	default:
		bad("status", "unknown_status", fmt.Sprintf("Unknown status %q (%s).", status, statusWords(platform)))
	}

	if coupon := strings.ToLower(get(fCoupon, "coupon")); coupon != "" {
		if validCoupon(coupon) {
			row.Coupon = coupon
		} else {
			bad("coupon", "invalid_coupon", fmt.Sprintf("%q cannot be a coupon code: 2 to 64 letters, digits, '-' or '_'.", coupon))
		}
	}
	row.Tier = get(fTier, "tier")

	currency := strings.ToLower(get(fCurrency, "currency"))
	if currency != "" && !money.ValidCurrency(currency) {
		bad("currency", "invalid_currency", fmt.Sprintf("%q is not an ISO 4217 currency code.", currency))
	}
	row.Currency = currency
	if amount := get(fBalance, "balance"); amount != "" {
		if currency == "" {
			currency = defaultCurrency
		}
		if money.ValidCurrency(currency) {
			v, err := parseSigned(amount, currency)
			if err != nil {
				bad("balance", "invalid_amount", fmt.Sprintf("%q is not an amount in %s: write a plain decimal such as 12.50 or -3.00 (%v).", amount, strings.ToUpper(currency), err))
			} else {
				row.Balance, row.HasBalance = v, true
			}
		}
	}
	return row, problems
}

// duplicates reports an email, legacy code or coupon a file names twice (the later lines).
func duplicates(rows []Row) []Problem {
	var problems []Problem
	emails, codesSeen, coupons := map[string]int{}, map[string]int{}, map[string]int{}
	for _, r := range rows {
		if r.Email != "" {
			if first, ok := emails[r.Email]; ok {
				problems = append(problems, Problem{Line: r.Line, Field: "email", Code: "duplicate_email", Message: fmt.Sprintf("%s is also on line %d.", r.Email, first)})
			} else {
				emails[r.Email] = r.Line
			}
		}
		for _, c := range r.Codes() {
			if first, ok := codesSeen[c]; ok {
				problems = append(problems, Problem{Line: r.Line, Field: "code", Code: "duplicate_code", Message: fmt.Sprintf("%q is also on line %d (codes are compared without case).", c, first)})
			} else {
				codesSeen[c] = r.Line
			}
		}
		if r.Coupon != "" {
			if first, ok := coupons[r.Coupon]; ok {
				problems = append(problems, Problem{Line: r.Line, Field: "coupon", Code: "duplicate_coupon", Message: fmt.Sprintf("%q is also on line %d.", r.Coupon, first)})
			} else {
				coupons[r.Coupon] = r.Line
			}
		}
	}
	return problems
}

// parseSigned is money.ParseDecimal with a sign: an opening balance may be owed either way.
func parseSigned(amount, currency string) (int64, error) {
	negative := strings.HasPrefix(amount, "-")
	v, err := money.ParseDecimal(strings.TrimPrefix(amount, "-"), currency)
	if err != nil {
		return 0, err
	}
	if negative {
		v = -v
	}
	return v, nil
}

// validEmail accepts a bare address as net/mail reads it, without a display name, quotes or
// spaces, with a dot in the domain.
func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || !strings.EqualFold(a.Address, s) || strings.ContainsAny(s, "\" ") {
		return false
	}
	_, domain, _ := strings.Cut(s, "@")
	return strings.Contains(domain, ".") && !strings.HasSuffix(domain, ".")
}

// validCoupon mirrors the coupons.code pattern ^[a-z0-9][a-z0-9_-]{1,63}$.
func validCoupon(c string) bool {
	if len(c) < 2 || len(c) > 64 {
		return false
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || i > 0 && (ch == '-' || ch == '_')) {
			return false
		}
	}
	return true
}

func statusWords(platform string) string {
	words := []string{StatusPending, StatusApproved, StatusRejected, StatusSuspended}
	for w := range statuses[platform] {
		words = append(words, w)
	}
	slices.Sort(words[4:])
	return strings.Join(words, ", ")
}
