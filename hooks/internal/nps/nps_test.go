package nps

import "testing"

func TestTally(t *testing.T) {
	var empty Tally
	if empty.ScoreBP() != 0 || empty.AverageX100() != 0 || empty.Responses() != 0 {
		t.Fatal("an empty tally is all zero")
	}
	var tl Tally
	for _, r := range []int{10, 9, 9, 8, 7, 6, 0, -1, 11} { // -1 and 11 are ignored
		tl.Add(r)
	}
	if tl.Responses() != 7 || tl.Promoters() != 3 || tl.Passives() != 2 || tl.Detractors() != 2 {
		t.Fatalf("groups: %d responses, %d/%d/%d", tl.Responses(), tl.Promoters(), tl.Passives(), tl.Detractors())
	}
	// (3 − 2) / 7 = 0.142857… → 1429 bp; sum 49 / 7 = 7.00.
	if tl.ScoreBP() != 1429 || tl.AverageX100() != 700 || tl.Sum() != 49 {
		t.Fatalf("score %d, average %d, sum %d", tl.ScoreBP(), tl.AverageX100(), tl.Sum())
	}
	var d Tally
	d.Add(0)
	d.Add(6)
	if d.ScoreBP() != -10000 || d.AverageX100() != 300 {
		t.Fatalf("all detractors: %d, %d", d.ScoreBP(), d.AverageX100())
	}
	tl.Merge(d)
	if tl.Responses() != 9 || tl.Detractors() != 4 || tl.ScoreBP() != -1111 {
		t.Fatalf("merged: %d responses, %d detractors, %d bp", tl.Responses(), tl.Detractors(), tl.ScoreBP())
	}
	// Half to even: 1/8 of 10000 is exact; 1/16 of 100 = 6.25 → 6; 3/8 × 100 = 37.5 → 38.
	if RateBP(1, 8) != 1250 || RateBP(5, 0) != 0 || RateBP(2, 3) != 6667 {
		t.Fatalf("rates %d %d %d", RateBP(1, 8), RateBP(5, 0), RateBP(2, 3))
	}
	var h Tally
	h.Add(1)
	for i := 0; i < 7; i++ {
		h.Add(0)
	}
	if h.AverageX100() != 12 { // 1/8 = 0.125 → 12 (half to even)
		t.Fatalf("average %d", h.AverageX100())
	}
}
