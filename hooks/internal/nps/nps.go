// Package nps sums 0–10 ratings into what the feedback summary reports: the distribution,
// the average and the Net Promoter Score, in integers (hundredths and basis points, rounded
// half to even) so that every figure is exact and reproducible from the counts it carries.
package nps

import "github.com/pbaffiliate/pbaffiliate/hooks/internal/money"

// Ratings run from MinRating to MaxRating. Promoters rate PromoterMin or more, detractors
// DetractorMax or less; the rest are passives.
const (
	MinRating    = 0
	MaxRating    = 10
	PromoterMin  = 9
	DetractorMax = 6
)

// Tally is a set of ratings.
type Tally struct {
	Counts [MaxRating + 1]int64 // how many of each rating
}

// Add counts one rating; one outside 0–10 is ignored (the schema refuses them).
func (t *Tally) Add(rating int) {
	if rating >= MinRating && rating <= MaxRating {
		t.Counts[rating]++
	}
}

// Merge adds another tally's ratings.
func (t *Tally) Merge(o Tally) {
	for i, n := range o.Counts {
		t.Counts[i] += n
	}
}

// Responses is how many ratings there are.
func (t Tally) Responses() int64 {
	var n int64
	for _, c := range t.Counts {
		n += c
	}
	return n
}

// Sum is the ratings' sum.
func (t Tally) Sum() int64 {
	var s int64
	for r, c := range t.Counts {
		s += int64(r) * c
	}
	return s
}

// Promoters, Passives and Detractors count the three groups.
func (t Tally) Promoters() int64  { return t.between(PromoterMin, MaxRating) }
func (t Tally) Passives() int64   { return t.between(DetractorMax+1, PromoterMin-1) }
func (t Tally) Detractors() int64 { return t.between(MinRating, DetractorMax) }

func (t Tally) between(lo, hi int) int64 {
	var n int64
	for r := lo; r <= hi; r++ {
		n += t.Counts[r]
	}
	return n
}

// AverageX100 is the mean rating in hundredths (843 = 8.43), rounded half to even; 0 when
// there are no ratings.
func (t Tally) AverageX100() int64 {
	n := t.Responses()
	if n == 0 {
		return 0
	}
	return money.MulDivHalfEven(t.Sum(), 100, n)
}

// ScoreBP is the Net Promoter Score in basis points: (promoters − detractors) / responses ×
// 10000, from −10000 (all detractors) to 10000 (all promoters), rounded half to even; 0 when
// there are no ratings. The usual −100…100 score is ScoreBP / 100.
func (t Tally) ScoreBP() int64 {
	n := t.Responses()
	if n == 0 {
		return 0
	}
	return money.MulDivHalfEven(t.Promoters()-t.Detractors(), 10000, n)
}

// RateBP is part / whole in basis points (a response rate), rounded half to even; 0 when
// whole is 0.
func RateBP(part, whole int64) int64 {
	if whole <= 0 {
		return 0
	}
	return money.MulDivHalfEven(part, 10000, whole)
}
