package demoplan

import (
	"reflect"
	"testing"
	"time"
)

func TestPlanLooksAlive(t *testing.T) {
	end := time.Date(2026, 12, 6, 15, 30, 0, 0, time.UTC)
	days := Plan(7, Profile{ClicksPerDay: 60, Conversion: 0.03}, end, 90)
	if len(days) != 90 || !days[89].Date.Equal(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)) || !days[0].Date.Equal(time.Date(2026, 9, 8, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("%d days from %v to %v", len(days), days[0].Date, days[len(days)-1].Date)
	}
	var weekdays, weekends, weekdayN, weekendN, first, lastMonth, sales, refunds int
	hours := [24]int{}
	for i, d := range days {
		n := len(d.Clicks)
		if wd := d.Date.Weekday(); wd == time.Saturday || wd == time.Sunday {
			weekends, weekendN = weekends+n, weekendN+1
		} else {
			weekdays, weekdayN = weekdays+n, weekdayN+1
		}
		if i < 30 {
			first += n
		} else if i >= 60 {
			lastMonth += n
		}
		for j, c := range d.Clicks {
			if c.After(end) || c.Before(d.Date) || (j > 0 && c.Before(d.Clicks[j-1])) {
				t.Fatalf("click %v out of its day %v or order", c, d.Date)
			}
			hours[c.Hour()]++
		}
		for _, s := range d.Sales {
			sales++
			if s.Refunded > 0 {
				refunds++
			}
			if s.At.Before(d.Clicks[s.Click]) || s.At.After(end) || s.Amount <= 0 || s.Refunded > s.Amount {
				t.Fatalf("sale %+v of day %v", s, d.Date)
			}
		}
	}
	if weekdays/weekdayN <= weekends/weekendN {
		t.Errorf("weekdays average %d clicks, weekends %d: want a quieter weekend", weekdays/weekdayN, weekends/weekendN)
	}
	if lastMonth <= first {
		t.Errorf("last month %d clicks, first month %d: want growth", lastMonth, first)
	}
	if hours[20] <= hours[3] {
		t.Errorf("%d clicks at 20:00, %d at 03:00: want a daily rhythm", hours[20], hours[3])
	}
	if sales == 0 || refunds == 0 || refunds > sales/4 {
		t.Errorf("%d sales, %d refunded", sales, refunds)
	}
	if again := Plan(7, Profile{ClicksPerDay: 60, Conversion: 0.03}, end, 90); !reflect.DeepEqual(again, days) {
		t.Error("the same seed planned another history")
	}
}
