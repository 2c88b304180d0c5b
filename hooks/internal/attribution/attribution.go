// Package attribution decides which affiliate a sale belongs to. The caller looks up the
// candidates (the click, the visitor's first click, the affiliate code, the coupon, the
// customer's earlier affiliate); Decide applies the program's rules to them in a fixed order,
// so every source (API, postback, Stripe) attributes the same way and the rules are tested
// without a database.
package attribution

import (
	"errors"
	"strings"
	"time"
)

// Paths name how a sale was attributed; they are stored with the conversion.
const (
	PathClick         = "click"
	PathFirstClick    = "first_click"
	PathAffiliateCode = "affiliate_code"
	PathCoupon        = "coupon"
	PathCustomer      = "customer"
)

// ErrNoAttribution means no candidate credits any affiliate: the sale is nobody's.
var ErrNoAttribution = errors.New("no affiliate can be credited with this sale")

// clockSkew tolerates a click stamped slightly after the sale by another machine's clock.
const clockSkew = 5 * time.Minute

// Affiliate is a candidate affiliate.
type Affiliate struct {
	ID       string
	Email    string
	Approved bool
}

// Click is a candidate click with its affiliate.
type Click struct {
	ID        string
	LinkID    string
	ProgramID string
	Visitor   string
	Flag      string // non-empty: flagged (bot, rate, self) and never credited
	Created   time.Time
	Affiliate Affiliate
}

// Program holds the attribution settings of the sale's program.
type Program struct {
	ID         string
	CookieDays int
	FirstClick bool // attribution: first_click
	Sticky     bool // recurring months/lifetime: a returning customer stays with its first affiliate
}

// Input is a sale and its looked-up candidates; nil candidates were not given or not found.
type Input struct {
	Program       Program
	OccurredAt    time.Time
	CustomerEmail string

	Click         *Click
	FirstClick    *Click // the visitor's earliest click in the program (first_click programs)
	AffiliateCode *Affiliate
	Coupon        *Affiliate
	Customer      *Affiliate // affiliate of the customer's first conversion in the program
}

// Decision is who gets the sale, how, and whether it is rejected on the spot.
type Decision struct {
	AffiliateID string
	ClickID     string
	LinkID      string
	Path        string
	Rejected    bool
	Reason      string
	Skipped     []string // candidates passed over and why, kept with the conversion
}

// Decide applies, in order: the click (or, for first_click programs, the visitor's first click)
// when it is unflagged, of this program, of an approved affiliate and within cookie_days of the
// sale; else the affiliate code; else the coupon; else, for recurring/lifetime programs, the
// customer's first affiliate. A customer buying through their own link is rejected as
// self_referral. Without any candidate it returns ErrNoAttribution.
func Decide(in Input) (Decision, error) {
	var d Decision
	if c := in.Click; c != nil {
		if why := clickProblem(c, in.Program, in.OccurredAt); why != "" {
			d.Skipped = append(d.Skipped, "click "+c.ID+": "+why)
		} else {
			chosen, path := c, PathClick
			if in.Program.FirstClick && in.FirstClick != nil && in.FirstClick.ID != c.ID &&
				clickProblem(in.FirstClick, in.Program, in.OccurredAt) == "" {
				chosen, path = in.FirstClick, PathFirstClick
			}
			d.AffiliateID, d.ClickID, d.LinkID, d.Path = chosen.Affiliate.ID, chosen.ID, chosen.LinkID, path
			return withSelfCheck(d, chosen.Affiliate, in.CustomerEmail), nil
		}
	}
	for _, cand := range []struct {
		a    *Affiliate
		path string
		ok   bool
	}{
		{in.AffiliateCode, PathAffiliateCode, true},
		{in.Coupon, PathCoupon, true},
		{in.Customer, PathCustomer, in.Program.Sticky},
	} {
		if cand.a == nil || !cand.ok {
			continue
		}
		if !cand.a.Approved {
			d.Skipped = append(d.Skipped, cand.path+": affiliate not approved")
			continue
		}
		d.AffiliateID, d.Path = cand.a.ID, cand.path
		return withSelfCheck(d, *cand.a, in.CustomerEmail), nil
	}
	return d, ErrNoAttribution
}

func clickProblem(c *Click, p Program, at time.Time) string {
	switch {
	case c.Flag != "":
		return "flagged " + c.Flag
	case c.ProgramID != p.ID:
		return "belongs to another program"
	case !c.Affiliate.Approved:
		return "affiliate not approved"
	case at.Before(c.Created.Add(-clockSkew)):
		return "sale before the click"
	case p.CookieDays > 0 && at.After(c.Created.AddDate(0, 0, p.CookieDays)):
		return "older than the program's cookie_days"
	}
	return ""
}

func withSelfCheck(d Decision, a Affiliate, customerEmail string) Decision {
	if customerEmail != "" && a.Email != "" && strings.EqualFold(strings.TrimSpace(customerEmail), strings.TrimSpace(a.Email)) {
		d.Rejected, d.Reason = true, "self_referral"
	}
	return d
}
