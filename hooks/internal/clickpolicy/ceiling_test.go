package clickpolicy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestIPCeiling(t *testing.T) {
	c := NewIPCeiling(3, 100)
	hour := time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return hour.Add(d) }
	// An unflagged click is stored and counts against the ceiling; so do flagged ones below it.
	if c.Store("ip", at(time.Minute), true) != StoreRow || c.Store("ip", at(2*time.Minute), false) != StoreRow || c.Store("ip", at(3*time.Minute), false) != StoreRow {
		t.Fatal("clicks below the ceiling not stored")
	}
	// Past it, flagged clicks are counted instead; unflagged ones are still stored, lean.
	for i := 0; i < 5; i++ {
		if c.Store("ip", at(4*time.Minute), false) != CountOnly {
			t.Fatalf("flagged click %d past the ceiling stored", i)
		}
		if got := c.Store("ip", at(4*time.Minute), true); got != StoreLean {
			t.Fatalf("unflagged click %d past the ceiling: %d, want it stored lean", i, got)
		}
	}
	if c.Store("other", at(5*time.Minute), false) != StoreRow {
		t.Fatal("another IP is held to the first one's ceiling")
	}
	// The last instant of the hour is still in it; the next hour starts over.
	if c.Store("ip", at(time.Hour-time.Nanosecond), false) != CountOnly {
		t.Fatal("the ceiling ended before the hour did")
	}
	for i := 0; i < 3; i++ {
		if c.Store("ip", at(time.Hour+time.Duration(i)), false) != StoreRow {
			t.Fatalf("click %d of the next hour not stored", i)
		}
	}
	if c.Store("ip", at(time.Hour+time.Second), false) != CountOnly {
		t.Fatal("the next hour has no ceiling")
	}
	// A click stamped in the previous hour that arrives late counts in the current one.
	if c.Store("ip", at(time.Hour-time.Second), false) != CountOnly {
		t.Fatal("a late click of the previous hour escaped the ceiling")
	}
}

func TestIPCeilingOff(t *testing.T) {
	for _, c := range []*IPCeiling{NewIPCeiling(0, 0), NewIPCeiling(-1, 0), nil} {
		for i := 0; i < 100; i++ {
			if c.Store("ip", time.Now(), false) != StoreRow {
				t.Fatal("a ceiling of 0 refused a click")
			}
		}
		if c.Len() != 0 {
			t.Fatal("a ceiling that is off tracks keys")
		}
	}
}

// TestIPCeilingBound: a full ceiling tracks no more keys; the flagged clicks of IPs it does
// not know are counted rather than stored, their unflagged clicks stored.
func TestIPCeilingBound(t *testing.T) {
	const maxKeys = 64
	c := NewIPCeiling(10, maxKeys)
	now := time.Date(2026, 3, 1, 14, 30, 0, 0, time.UTC)
	refused := 0
	for i := 0; i < 10*maxKeys; i++ {
		if c.Store("ip-"+strconv.Itoa(i), now, false) != StoreRow {
			refused++
		}
		if c.Store("new-"+strconv.Itoa(i), now, true) == CountOnly {
			t.Fatal("an unflagged click was refused by a full ceiling")
		}
	}
	if n := c.Len(); n > maxKeys || n < maxKeys/2 {
		t.Fatalf("%d keys tracked, bound %d", n, maxKeys)
	}
	if refused == 0 {
		t.Fatal("a full ceiling stored every flagged click of unknown IPs")
	}
	if c.Store("ip-0", now.Add(time.Hour), false); c.Len() > maxKeys {
		t.Fatalf("the next hour keeps the bound: %d", c.Len())
	}
}

// TestIPCeilingConcurrent: under concurrency one IP still stores exactly the ceiling.
func TestIPCeilingConcurrent(t *testing.T) {
	const limit = 500
	c := NewIPCeiling(limit, 0)
	now := time.Date(2026, 3, 1, 14, 30, 0, 0, time.UTC)
	var stored atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if c.Store("ip", now, false) == StoreRow {
					stored.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if stored.Load() != limit {
		t.Fatalf("stored %d of 1600 flagged clicks, want exactly %d", stored.Load(), limit)
	}
}

func TestUntilNextHour(t *testing.T) {
	for in, want := range map[time.Time]time.Duration{
		time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC):                   time.Hour,
		time.Date(2026, 3, 1, 14, 59, 30, 0, time.UTC):                 30 * time.Second,
		time.Date(2026, 3, 1, 14, 59, 59, 900_000_000, time.UTC):       time.Second,
		time.Date(2026, 3, 1, 14, 20, 0, 0, time.FixedZone("x", 1800)): 10 * time.Minute, // 13:50 UTC
	} {
		if got := UntilNextHour(in); got != want {
			t.Errorf("UntilNextHour(%v) = %v, want %v", in, got, want)
		}
	}
}

func BenchmarkIPCeilingStore(b *testing.B) {
	c := NewIPCeiling(1000, 0)
	now := time.Now()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = strconv.Itoa(i) + "0123456789abcdef0123456789abcdef"
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Store(keys[i&1023], now, false)
		i++
	}
}
