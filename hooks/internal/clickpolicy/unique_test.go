package clickpolicy

import (
	"math/rand/v2"
	"testing"
	"time"
)

const day = int64(24 * time.Hour / time.Millisecond)

func TestUniqueWindowSlides(t *testing.T) {
	w := NewUniqueWindow(24*time.Hour, 0)
	k := w.Key("visitor00000001", "link00000000001", "aff000000000001")
	t0 := int64(1_800_000_000_000)
	if v := w.Check(k, t0); v != Unique {
		t.Fatalf("first click: %v", v)
	}
	w.Seen(k, t0)
	if v := w.Check(k, t0+day); v != Repeat {
		t.Fatalf("exactly 24 h later the first click is still inside the window: %v", v)
	}
	if v := w.Check(k, t0+day+1); v != Unique {
		t.Fatalf("24 h and 1 ms later: %v", v)
	}
	// A repeat click moves the window: unique is measured from the latest click.
	w.Seen(k, t0+day/2)
	if v := w.Check(k, t0+day+1); v != Repeat {
		t.Fatalf("12 h after a repeat click: %v", v)
	}
	// Other visitors, links and affiliates are other keys.
	for _, other := range []uint64{
		w.Key("visitor00000002", "link00000000001", "aff000000000001"),
		w.Key("visitor00000001", "link00000000002", "aff000000000001"),
		w.Key("visitor00000001", "", "aff000000000001"),
	} {
		if v := w.Check(other, t0+1); v != Unique {
			t.Fatalf("other key: %v", v)
		}
	}
	// An out-of-order older click does not hide the later one.
	w.Seen(k, t0)
	if v := w.Check(k, t0+day+day/2); v != Repeat {
		t.Fatalf("older click replaced the latest: %v", v)
	}
}

func TestUniqueWindowForget(t *testing.T) {
	w := NewUniqueWindow(24*time.Hour, 0)
	k := w.Key("v", "l", "a")
	t0 := int64(1_800_000_000_000)
	w.Seen(k, t0)
	w.Forget(k, t0+10)
	if v := w.Check(k, t0+20); v != Unknown {
		t.Fatalf("a changed click's key must ask the database: %v", v)
	}
	w.Seen(k, t0) // an older click does not clear the doubt
	if v := w.Check(k, t0+20); v != Unknown {
		t.Fatalf("after an older click: %v", v)
	}
	w.Seen(k, t0+30)
	if v := w.Check(k, t0+40); v != Repeat {
		t.Fatalf("a later click is known: %v", v)
	}
	k2 := w.Key("v2", "l", "a")
	w.Forget(k2, t0+50)
	if v := w.Check(k2, t0+50+day+1); v != Unique {
		t.Fatalf("once the window passed the change, nothing it concerned is inside: %v", v)
	}
}

// TestUniqueWindowBoundIsExact checks the bound against a model that remembers everything:
// the window may answer Unknown, never a wrong Unique or Repeat, and never holds more than
// its bound.
func TestUniqueWindowBoundIsExact(t *testing.T) {
	const window = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bound := range []int{1, 7, 64, 1000} {
		w := NewUniqueWindow(window*time.Millisecond, bound)
		model := map[uint64]int64{}
		now := int64(1_000_000)
		unknown := 0
		for i := 0; i < 20000; i++ {
			now += int64(rng.IntN(5))
			k := w.Key("v"+string(rune('a'+rng.IntN(26))), "l"+string(rune('a'+rng.IntN(8))), "a")
			last, ok := model[k]
			want := Unique
			if ok && last >= now-window {
				want = Repeat
			}
			switch got := w.Check(k, now); {
			case got == Unknown:
				unknown++
			case got != want:
				t.Fatalf("bound %d step %d: got %v, want %v", bound, i, got, want)
			}
			if rng.IntN(3) > 0 {
				w.Seen(k, now)
				model[k] = now
			}
			if n := w.Len(); n > bound {
				t.Fatalf("bound %d: %d keys remembered", bound, n)
			}
		}
		if bound == 1000 && unknown != 0 {
			t.Errorf("bound %d covers the window, yet %d answers were Unknown", bound, unknown)
		}
		t.Logf("bound %d: %d of 20000 answers left to the database", bound, unknown)
	}
}

func BenchmarkUniqueWindow(b *testing.B) {
	w := NewUniqueWindow(24*time.Hour, 0)
	now := time.Now().UnixMilli()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := w.Key("visitor00000001", "link00000000001", "aff000000000001")
		k += uint64(i % 100000)
		w.Check(k, now)
		w.Seen(k, now)
	}
}

func TestUniqueWindowLost(t *testing.T) {
	w := NewUniqueWindow(24*time.Hour, 0)
	t0 := int64(1_800_000_000_000)
	known := w.Key("known", "l", "a")
	w.Seen(known, t0)
	w.Lost(t0 - day/2) // a loader skipped clicks up to 12 h before t0
	if v := w.Check(w.Key("other", "l", "a"), t0); v != Unknown {
		t.Fatalf("a key the loader may have skipped: %v", v)
	}
	if v := w.Check(known, t0+1); v != Repeat {
		t.Fatalf("a remembered key: %v", v)
	}
	if v := w.Check(w.Key("other", "l", "a"), t0+day/2+1); v != Unique {
		t.Fatalf("once the skipped clicks left the window: %v", v)
	}
}
