// Package demoplan plans the demo's history: for one affiliate, the clicks of each day with a
// daily and weekly rhythm and a growing trend, and the sales (some refunded) those clicks
// bring. It is deterministic for a seed, so a demo looks the same on every machine.
package demoplan

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Profile is an affiliate's reach: clicks a day at the end of the history (before the
// weekly rhythm and noise) and the share of clicks that buy.
type Profile struct {
	ClicksPerDay float64
	Conversion   float64
}

// Sale is a purchase after a click: when, how much (minor units), which of the day's clicks
// brought it, and what was refunded of it later (0 none, Amount in full).
type Sale struct {
	At       time.Time
	Amount   int64
	Click    int
	Refunded int64
}

// Day is an affiliate's activity on one UTC day.
type Day struct {
	Date   time.Time   // midnight UTC
	Clicks []time.Time // in time order
	Unique []bool      // the visitor's first click of the day on the link
	Sales  []Sale
}

// weekday scales traffic by day of the week (Sunday first): busy weekdays, a quiet weekend.
var weekday = [7]float64{0.7, 1.1, 1.15, 1.1, 1.05, 0.95, 0.65}

// hourWeights is the daily rhythm: quiet nights, a lunch peak and a larger evening peak.
var hourWeights = [24]float64{1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5, 6, 5.5, 4.5, 4, 4, 4.5, 5.5, 7, 7.5, 6.5, 4, 2}

// prices are what the demo shop sells, in cents, and how often each is bought.
var prices = []struct {
	amount int64
	weight float64
}{{2900, 0.35}, {4900, 0.3}, {9900, 0.2}, {19900, 0.1}, {49900, 0.05}}

// Plan lays out days days of history ending with the day of end (the last day only up to end).
// Traffic grows from half to the full ClicksPerDay over the period.
func Plan(seed uint64, p Profile, end time.Time, days int) []Day {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	end = end.UTC()
	last := time.Date(end.Year(), end.Month(), end.Day(), 0, 0, 0, 0, time.UTC)
	out := make([]Day, 0, days)
	for i := days - 1; i >= 0; i-- {
		date := last.AddDate(0, 0, -i)
		trend := 0.5 + 0.5*float64(days-1-i)/float64(max(days-1, 1))
		mean := p.ClicksPerDay * trend * weekday[date.Weekday()] * (0.75 + 0.5*rng.Float64())
		n := poisson(rng, mean)
		d := Day{Date: date}
		for range n {
			t := date.Add(time.Duration(pickHour(rng))*time.Hour + time.Duration(rng.Int64N(int64(time.Hour))))
			if t.After(end) {
				continue
			}
			d.Clicks = append(d.Clicks, t)
		}
		slices.SortFunc(d.Clicks, time.Time.Compare)
		for c, t := range d.Clicks {
			d.Unique = append(d.Unique, rng.Float64() < 0.85)
			if rng.Float64() >= p.Conversion {
				continue
			}
			at := t.Add(5*time.Minute + time.Duration(rng.Int64N(int64(36*time.Hour))))
			if at.After(end) {
				at = end
			}
			s := Sale{At: at, Amount: pickPrice(rng), Click: c}
			switch r := rng.Float64(); {
			case r < 0.04:
				s.Refunded = s.Amount
			case r < 0.07:
				s.Refunded = s.Amount / 2
			}
			d.Sales = append(d.Sales, s)
		}
		out = append(out, d)
	}
	return out
}

// poisson draws a count with the given mean (Knuth's method for small means, a normal
// approximation above 30).
func poisson(rng *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean > 30 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func pickHour(rng *rand.Rand) int {
	total := 0.0
	for _, w := range hourWeights {
		total += w
	}
	r := rng.Float64() * total
	for h, w := range hourWeights {
		if r < w {
			return h
		}
		r -= w
	}
	return 23
}

func pickPrice(rng *rand.Rand) int64 {
	r := rng.Float64()
	for _, p := range prices {
		if r < p.weight {
			return p.amount
		}
		r -= p.weight
	}
	return prices[0].amount
}
