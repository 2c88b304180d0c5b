package attribution

import (
	"testing"
	"time"
)

func TestSaleTimeProblem(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	click := now.AddDate(0, 0, -3)
	cases := []struct {
		name       string
		at         time.Time
		cookieDays int
		click      time.Time
		want       string
	}{
		{"now", now, 60, time.Time{}, ""},
		{"within the clock skew ahead", now.Add(4 * time.Minute), 60, time.Time{}, ""},
		{"future", now.Add(time.Hour), 60, time.Time{}, TimeInFuture},
		{"epoch", time.Unix(0, 0), 60, time.Time{}, TimeTooOld},
		{"first day of the window", now.AddDate(0, 0, -60), 60, time.Time{}, ""},
		{"past the window", now.AddDate(0, 0, -60).Add(-time.Second), 60, time.Time{}, TimeTooOld},
		{"imported: no window", time.Unix(0, 0), 0, time.Time{}, ""},
		{"imported: still not in the future", now.Add(time.Hour), 0, time.Time{}, TimeInFuture},
		{"after the click", click.Add(time.Hour), 60, click, ""},
		{"click's clock slightly ahead", click.Add(-4 * time.Minute), 60, click, ""},
		{"before the click", click.Add(-time.Hour), 60, click, TimeBeforeClick},
		{"imported, before the click", click.Add(-time.Hour), 0, click, TimeBeforeClick},
	}
	for _, tc := range cases {
		if got := SaleTimeProblem(tc.at, now, tc.cookieDays, tc.click); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
