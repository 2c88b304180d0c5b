// Package board keeps every affiliate's daily figures as running totals in memory, so the sums
// of any range of days for every affiliate of a program (a leaderboard) cost two binary
// searches per affiliate instead of a scan of affiliates × days. It is a cache: the caller
// fills it from the database and feeds it the same deltas it commits; it has no PocketBase
// import and no locking of its own.
package board

import (
	"cmp"
	"slices"
)

// Counters are the additive figures of a day or a range.
type Counters struct {
	Clicks, Unique, Conversions, Revenue, Commission int64
}

// Add returns c + d.
func (c Counters) Add(d Counters) Counters {
	return Counters{c.Clicks + d.Clicks, c.Unique + d.Unique, c.Conversions + d.Conversions, c.Revenue + d.Revenue, c.Commission + d.Commission}
}

// Sub returns c - d.
func (c Counters) Sub(d Counters) Counters {
	return Counters{c.Clicks - d.Clicks, c.Unique - d.Unique, c.Conversions - d.Conversions, c.Revenue - d.Revenue, c.Commission - d.Commission}
}

// Key names one series: an affiliate's figures in one program.
type Key struct{ Program, Affiliate string }

// series holds the running totals of one affiliate in one program: cum[i] is the sum of every
// day up to and including days[i]. Days are kept sorted; writes land almost always on the last
// day, which costs O(1).
type series struct {
	key  Key
	days []int32
	cum  []Counters
}

// before returns the running total of the days strictly before day.
func (s *series) before(day int32) Counters {
	i, _ := slices.BinarySearch(s.days, day)
	if i == 0 {
		return Counters{}
	}
	return s.cum[i-1]
}

// add adds d to day and to every running total after it.
func (s *series) add(day int32, d Counters) {
	i, found := slices.BinarySearch(s.days, day)
	if !found {
		prev := Counters{}
		if i > 0 {
			prev = s.cum[i-1]
		}
		s.days = slices.Insert(s.days, i, day)
		s.cum = slices.Insert(s.cum, i, prev)
	}
	for j := i; j < len(s.cum); j++ {
		s.cum[j] = s.cum[j].Add(d)
	}
}

// Board is the index of every series. The zero value is empty and ready to use; the caller
// serialises access (readers may share a read lock when no writer runs).
type Board struct {
	series    map[Key]*series
	byProgram map[string][]*series
	entries   int
}

// Add adds d to the affiliate's figures of day (days since 1970-01-01, UTC).
func (b *Board) Add(k Key, day int32, d Counters) {
	if d == (Counters{}) {
		return
	}
	if b.series == nil {
		b.series, b.byProgram = map[Key]*series{}, map[string][]*series{}
	}
	s := b.series[k]
	if s == nil {
		s = &series{key: k}
		b.series[k] = s
		b.byProgram[k.Program] = append(b.byProgram[k.Program], s)
	}
	n := len(s.days)
	s.add(day, d)
	b.entries += len(s.days) - n
}

// Entries is the number of (series, day) entries held: the board's size.
func (b *Board) Entries() int { return b.entries }

// Sum is the affiliate's figures of days from..to (inclusive).
func (b *Board) Sum(k Key, from, to int32) Counters {
	s := b.series[k]
	if s == nil {
		return Counters{}
	}
	return s.before(to + 1).Sub(s.before(from))
}

// Row is one affiliate's figures of a range.
type Row struct {
	Key
	Counters
}

// Less reports whether a ranks below b; ties go to the smaller key, so rankings are stable.
type Less func(a, b Row) bool

// Top returns the n best rows of the range among the programs given (every program when none
// is), best first, by the order less defines, skipping rows keep rejects (nil keeps every row
// with figures). Each series costs two binary searches; the selection keeps n rows at most.
func (b *Board) Top(programs []string, from, to int32, n int, less Less, keep func(Row) bool) []Row {
	if n <= 0 {
		return nil
	}
	if len(programs) == 0 {
		programs = make([]string, 0, len(b.byProgram))
		for p := range b.byProgram {
			programs = append(programs, p)
		}
	}
	// Sums of an affiliate across the programs asked for: an affiliate normally belongs to
	// one program, so this map stays empty unless programs overlap.
	var merged map[string]*Row
	top := make([]Row, 0, n+1)
	for _, p := range programs {
		for _, s := range b.byProgram[p] {
			k := s.key
			r := Row{Key: k, Counters: s.before(to + 1).Sub(s.before(from))}
			if r.Counters == (Counters{}) {
				continue
			}
			if len(programs) > 1 {
				if merged == nil {
					merged = map[string]*Row{}
				}
				if m := merged[k.Affiliate]; m != nil {
					m.Counters = m.Counters.Add(r.Counters)
					continue
				}
				m := r
				m.Program = ""
				merged[k.Affiliate] = &m
				continue
			}
			top = offer(top, r, n, less, keep)
		}
	}
	for _, r := range merged {
		top = offer(top, *r, n, less, keep)
	}
	slices.SortFunc(top, func(a, b Row) int { return compareRows(a, b, less) })
	return top
}

// offer keeps r among the n best of top, a heap with the worst row at top[0]: most rows of a
// large program lose to the worst kept one at the cost of one comparison.
func offer(top []Row, r Row, n int, less Less, keep func(Row) bool) []Row {
	if keep != nil && !keep(r) {
		return top
	}
	if len(top) < n {
		top = append(top, r)
		for i := len(top) - 1; i > 0; { // sift up
			parent := (i - 1) / 2
			if compareRows(top[i], top[parent], less) <= 0 {
				break
			}
			top[i], top[parent] = top[parent], top[i]
			i = parent
		}
		return top
	}
	if compareRows(r, top[0], less) >= 0 {
		return top
	}
	top[0] = r
	for i := 0; ; { // sift down
		w, l, rt := i, 2*i+1, 2*i+2
		if l < len(top) && compareRows(top[l], top[w], less) > 0 {
			w = l
		}
		if rt < len(top) && compareRows(top[rt], top[w], less) > 0 {
			w = rt
		}
		if w == i {
			return top
		}
		top[i], top[w] = top[w], top[i]
		i = w
	}
}

// compareRows orders rows best first: by less, then by affiliate id.
func compareRows(a, b Row, less Less) int {
	switch {
	case less(b, a):
		return -1
	case less(a, b):
		return 1
	}
	return cmp.Or(cmp.Compare(a.Affiliate, b.Affiliate), cmp.Compare(a.Program, b.Program))
}

// Builder gathers daily figures in any order and makes a Board of them at once: sorting each
// series once is far cheaper than inserting days out of order into running totals.
type Builder struct {
	days map[Key][]dayFigures
}

type dayFigures struct {
	day int32
	c   Counters
}

// Add adds d to the affiliate's figures of day.
func (bl *Builder) Add(k Key, day int32, d Counters) {
	if bl.days == nil {
		bl.days = map[Key][]dayFigures{}
	}
	bl.days[k] = append(bl.days[k], dayFigures{day, d})
}

// Board returns the board of everything added; the Builder is empty afterwards.
func (bl *Builder) Board() Board {
	b := Board{series: make(map[Key]*series, len(bl.days)), byProgram: map[string][]*series{}}
	for k, figs := range bl.days {
		slices.SortFunc(figs, func(a, b dayFigures) int { return cmp.Compare(a.day, b.day) })
		s := &series{key: k, days: make([]int32, 0, len(figs)), cum: make([]Counters, 0, len(figs))}
		var run Counters
		for _, f := range figs {
			run = run.Add(f.c)
			if n := len(s.days); n > 0 && s.days[n-1] == f.day {
				s.cum[n-1] = run
				continue
			}
			s.days = append(s.days, f.day)
			s.cum = append(s.cum, run)
		}
		b.series[k] = s
		b.byProgram[k.Program] = append(b.byProgram[k.Program], s)
		b.entries += len(s.days)
	}
	bl.days = nil
	return b
}
