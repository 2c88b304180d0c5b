package board

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// naive is the reference: every (key, day) figure as given.
type naive map[Key]map[int32]Counters

func (n naive) sum(k Key, from, to int32) Counters {
	var c Counters
	for d, v := range n[k] {
		if d >= from && d <= to {
			c = c.Add(v)
		}
	}
	return c
}

func byCommission(a, b Row) bool { return a.Commission < b.Commission }

// TestBoardMatchesNaiveSums feeds random deltas on random days (in and out of order, negative
// ones included) and checks every range sum and every top-n against a direct sum.
func TestBoardMatchesNaiveSums(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	var b Board
	var bl Builder
	ref := naive{}
	programs := []string{"p1", "p2"}
	for i := 0; i < 5000; i++ {
		k := Key{programs[rng.Intn(2)], fmt.Sprintf("a%02d", rng.Intn(40))}
		day := int32(20000 + rng.Intn(60))
		d := Counters{int64(rng.Intn(5)), int64(rng.Intn(3)), int64(rng.Intn(2)), int64(rng.Intn(9000) - 1000), int64(rng.Intn(900) - 100)}
		b.Add(k, day, d)
		bl.Add(k, day, d)
		if ref[k] == nil {
			ref[k] = map[int32]Counters{}
		}
		ref[k][day] = ref[k][day].Add(d)
	}
	built := bl.Board()
	if built.Entries() != b.Entries() {
		t.Fatalf("built board has %d entries, the incremental one %d", built.Entries(), b.Entries())
	}
	for i := 0; i < 500; i++ {
		from := int32(19990 + rng.Intn(80))
		to := from + int32(rng.Intn(40))
		for k := range ref {
			if got, want := b.Sum(k, from, to), ref.sum(k, from, to); got != want {
				t.Fatalf("Sum(%v, %d, %d) = %+v, want %+v", k, from, to, got, want)
			}
			if got, want := built.Sum(k, from, to), ref.sum(k, from, to); got != want {
				t.Fatalf("built: Sum(%v, %d, %d) = %+v, want %+v", k, from, to, got, want)
			}
		}
		n := 1 + rng.Intn(12)
		p := programs[rng.Intn(2)]
		var all []Row
		for k := range ref {
			if k.Program == p {
				if c := ref.sum(k, from, to); c != (Counters{}) {
					all = append(all, Row{k, c})
				}
			}
		}
		slices.SortFunc(all, func(a, b Row) int { return compareRows(a, b, byCommission) })
		want := all[:min(n, len(all))]
		got := b.Top([]string{p}, from, to, n, byCommission, nil)
		if !slices.Equal(got, want) {
			t.Fatalf("Top(%s, %d..%d, %d) = %v, want %v", p, from, to, n, got, want)
		}
	}
	if b.Entries() == 0 {
		t.Fatal("no entries counted")
	}
}

// TestTopAcrossProgramsMergesAnAffiliate: an affiliate with figures in two programs ranks
// once, with both programs' sums, when both are asked for.
func TestTopAcrossProgramsMergesAnAffiliate(t *testing.T) {
	var b Board
	b.Add(Key{"p1", "a"}, 10, Counters{Commission: 5})
	b.Add(Key{"p2", "a"}, 10, Counters{Commission: 6})
	b.Add(Key{"p1", "b"}, 10, Counters{Commission: 10})
	got := b.Top([]string{"p1", "p2"}, 0, 20, 5, byCommission, nil)
	want := []Row{{Key{"", "a"}, Counters{Commission: 11}}, {Key{"", "b"}, Counters{Commission: 10}}}
	if !slices.Equal(got, want) {
		t.Fatalf("Top = %v, want %v", got, want)
	}
	keep := func(r Row) bool { return r.Affiliate != "a" }
	if got := b.Top(nil, 0, 20, 5, byCommission, keep); len(got) != 1 || got[0].Affiliate != "b" {
		t.Fatalf("Top with keep = %v, want b only", got)
	}
}

func BenchmarkTop10kAffiliates(b *testing.B) {
	var bd Board
	for a := 0; a < 10000; a++ {
		for d := int32(0); d < 120; d++ {
			bd.Add(Key{"p", fmt.Sprintf("a%05d", a)}, d, Counters{3, 2, 1, int64(a % 997), int64(a % 101)})
		}
	}
	b.ResetTimer()
	for b.Loop() {
		bd.Top([]string{"p"}, 30, 119, 50, byCommission, nil)
	}
}
