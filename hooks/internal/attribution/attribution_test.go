package attribution

import (
	"errors"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	prog := Program{ID: "p", CookieDays: 30}
	a := Affiliate{ID: "a", Email: "a@x.test", Approved: true}
	b := Affiliate{ID: "b", Email: "b@x.test", Approved: true}
	pending := Affiliate{ID: "c", Approved: false}
	click := func(id string, aff Affiliate, age time.Duration) *Click {
		return &Click{ID: id, LinkID: "l-" + id, ProgramID: "p", Visitor: "v", Created: now.Add(-age), Affiliate: aff}
	}
	flagged := click("f", a, time.Hour)
	flagged.Flag = "bot"
	other := click("o", a, time.Hour)
	other.ProgramID = "q"

	cases := []struct {
		name     string
		in       Input
		want     string // affiliate id, "" for ErrNoAttribution
		path     string
		rejected bool
	}{
		{"click", Input{Program: prog, OccurredAt: now, Click: click("1", a, time.Hour)}, "a", PathClick, false},
		{"click beats code and coupon", Input{Program: prog, OccurredAt: now, Click: click("1", a, time.Hour), AffiliateCode: &b, Coupon: &b}, "a", PathClick, false},
		{"flagged click falls through to the code", Input{Program: prog, OccurredAt: now, Click: flagged, AffiliateCode: &b}, "b", PathAffiliateCode, false},
		{"click of another program", Input{Program: prog, OccurredAt: now, Click: other}, "", "", false},
		{"expired click", Input{Program: prog, OccurredAt: now, Click: click("1", a, 31*24*time.Hour)}, "", "", false},
		{"click on the last cookie day", Input{Program: prog, OccurredAt: now, Click: click("1", a, 30*24*time.Hour-time.Minute)}, "a", PathClick, false},
		{"sale long before the click", Input{Program: prog, OccurredAt: now, Click: click("1", a, -time.Hour)}, "", "", false},
		{"clock skew tolerated", Input{Program: prog, OccurredAt: now, Click: click("1", a, -time.Minute)}, "a", PathClick, false},
		{"click of a pending affiliate", Input{Program: prog, OccurredAt: now, Click: click("1", pending, time.Hour)}, "", "", false},
		{"first click wins in first_click programs", Input{Program: Program{ID: "p", CookieDays: 30, FirstClick: true}, OccurredAt: now,
			Click: click("2", b, time.Hour), FirstClick: click("1", a, 48*time.Hour)}, "a", PathFirstClick, false},
		{"last click wins otherwise", Input{Program: prog, OccurredAt: now, Click: click("2", b, time.Hour), FirstClick: click("1", a, 48*time.Hour)}, "b", PathClick, false},
		{"coupon", Input{Program: prog, OccurredAt: now, Coupon: &a}, "a", PathCoupon, false},
		{"code beats coupon", Input{Program: prog, OccurredAt: now, AffiliateCode: &b, Coupon: &a}, "b", PathAffiliateCode, false},
		{"pending code falls to coupon", Input{Program: prog, OccurredAt: now, AffiliateCode: &pending, Coupon: &a}, "a", PathCoupon, false},
		{"customer only in sticky programs", Input{Program: prog, OccurredAt: now, Customer: &a}, "", "", false},
		{"returning customer", Input{Program: Program{ID: "p", Sticky: true}, OccurredAt: now, Customer: &a}, "a", PathCustomer, false},
		{"self referral", Input{Program: prog, OccurredAt: now, AffiliateCode: &a, CustomerEmail: " A@X.test "}, "a", PathAffiliateCode, true},
		{"nothing", Input{Program: prog, OccurredAt: now}, "", "", false},
	}
	for _, tc := range cases {
		d, err := Decide(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrNoAttribution) {
				t.Errorf("%s: got %+v, %v; want ErrNoAttribution", tc.name, d, err)
			}
			continue
		}
		if err != nil || d.AffiliateID != tc.want || d.Path != tc.path || d.Rejected != tc.rejected {
			t.Errorf("%s: got %+v, %v; want %s via %s (rejected %v)", tc.name, d, err, tc.want, tc.path, tc.rejected)
		}
	}
}
