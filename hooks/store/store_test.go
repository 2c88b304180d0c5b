package store

import (
	"slices"
	"testing"
	"time"
)

func TestOrderedIDsNeverRepeatAnInstant(t *testing.T) {
	var g OrderedIDs
	now := time.Unix(1_800_000_000, 0)
	prev := ""
	for i := range 1000 {
		id := g.Next(now)
		if len(id) != 15 || id <= prev {
			t.Fatalf("id %d %q after %q: want strictly increasing 15-character ids", i, id, prev)
		}
		prev = id
	}
	if a, b := NewOrderedID(now), NewOrderedID(now.Add(time.Microsecond)); a[:10] >= b[:10] {
		t.Fatalf("time digits must sort by time: %q, %q", a, b)
	}
	if id := NewID(); len(id) != 15 {
		t.Fatalf("NewID %q: want PocketBase's 15 characters", id)
	}
}

func TestOrderedIDTime(t *testing.T) {
	at := time.Date(2026, 12, 6, 22, 15, 0, 123_456_000, time.UTC)
	if got, ok := OrderedIDTime(NewOrderedID(at)); !ok || !got.Equal(at) {
		t.Fatalf("OrderedIDTime = %v %v, want %v", got, ok, at)
	}
	for _, bad := range []string{"", "short", "abcdefghijklmnop", "ABCDEFGHIJKLMNO", "abcdefghijklmn-"} {
		if _, ok := OrderedIDTime(bad); ok {
			t.Errorf("OrderedIDTime(%q) accepted", bad)
		}
	}
}

func TestDBTimeRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 29, 1, 30, 0, 123_000_000, time.FixedZone("CEST", 2*3600))
	s := DBTime(at)
	if s != "2026-03-28 23:30:00.123Z" {
		t.Fatalf("DBTime = %q: want UTC in PocketBase's layout", s)
	}
	back, err := ParseDBTime(s)
	if err != nil || !back.Equal(at) {
		t.Fatalf("ParseDBTime(%q) = %v, %v", s, back, err)
	}
	if StatsDay(at) != s[:10] {
		t.Fatalf("StatsDay = %q: want the UTC day %q", StatsDay(at), s[:10])
	}
}

func TestStatsKeyOrderIsTheIndexOrder(t *testing.T) {
	keys := []StatsKey{{"2026-01-02", "a", "p", "", "00"}, {"2026-01-01", "b", "p", "l", "00"}, {"2026-01-01", "b", "p", "", "00"}, {"2026-01-01", "a", "q", "", "00"}}
	slices.SortFunc(keys, StatsKey.Compare)
	want := []StatsKey{{"2026-01-01", "a", "q", "", "00"}, {"2026-01-01", "b", "p", "", "00"}, {"2026-01-01", "b", "p", "l", "00"}, {"2026-01-02", "a", "p", "", "00"}}
	if !slices.Equal(keys, want) {
		t.Fatalf("sorted %v, want %v", keys, want)
	}
}
