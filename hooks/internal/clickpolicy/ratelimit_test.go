package clickpolicy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRateLimiterThreshold(t *testing.T) {
	r := NewRateLimiter(3, time.Minute, 100)
	t0 := time.Unix(1_700_000_000, 0)
	for i := 1; i <= 3; i++ {
		if !r.Allow("k", t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("hit %d refused", i)
		}
	}
	for i := 4; i <= 10; i++ {
		if r.Allow("k", t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("hit %d allowed", i)
		}
	}
	if !r.Allow("other", t0.Add(10*time.Second)) {
		t.Fatal("independent key refused")
	}
	// The window started at the first hit (t0+1s); just before it ends the key is still limited.
	if r.Allow("k", t0.Add(time.Second+time.Minute-time.Nanosecond)) {
		t.Fatal("allowed before the window elapsed")
	}
	// A new window starts at the first hit after the old one elapsed and allows limit hits again.
	t1 := t0.Add(time.Second + time.Minute)
	for i := 0; i < 3; i++ {
		if !r.Allow("k", t1.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("new window hit %d refused", i+1)
		}
	}
	if r.Allow("k", t1.Add(3*time.Second)) {
		t.Fatal("4th hit in the new window allowed")
	}
}

func TestRateLimiterLimitOne(t *testing.T) {
	r := NewRateLimiter(1, time.Second, 10)
	t0 := time.Unix(0, 0)
	if !r.Allow("k", t0) || r.Allow("k", t0) || !r.Allow("k", t0.Add(time.Second)) {
		t.Fatal("limit 1 misbehaves")
	}
}

func TestRateLimiterDisabled(t *testing.T) {
	now := time.Now()
	for _, r := range []*RateLimiter{
		NewRateLimiter(0, time.Minute, 10),
		NewRateLimiter(-1, time.Minute, 10),
		NewRateLimiter(3, 0, 10),
		nil,
	} {
		for i := 0; i < 100; i++ {
			if !r.Allow("k", now) {
				t.Fatal("disabled limiter refused a hit")
			}
		}
		if r.Len() != 0 {
			t.Fatal("disabled limiter tracks keys")
		}
	}
}

func TestRateLimiterBoundedKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 5, 16, 100, 1000} {
		r := NewRateLimiter(2, time.Hour, maxKeys)
		now := time.Unix(1_700_000_000, 0)
		for i := 0; i < 20*maxKeys+100; i++ {
			if !r.Allow("key-"+strconv.Itoa(i), now.Add(time.Duration(i)*time.Millisecond)) {
				t.Fatalf("maxKeys %d: first hit of a new key refused", maxKeys)
			}
			if n := r.Len(); n > maxKeys {
				t.Fatalf("maxKeys %d: tracking %d keys", maxKeys, n)
			}
		}
		if maxKeys >= 16 && r.Len() < maxKeys*9/10 {
			t.Errorf("maxKeys %d: only %d keys tracked when full", maxKeys, r.Len())
		}
		// Slots are reused: the backing arrays never outgrow the bound.
		total := 0
		for i := range r.shards {
			total += len(r.shards[i].ents)
		}
		if total > maxKeys {
			t.Errorf("maxKeys %d: %d entry slots allocated", maxKeys, total)
		}
	}
}

func TestRateLimiterShardSizing(t *testing.T) {
	for _, c := range []struct{ maxKeys, shards, perShard int }{{1, 1, 1}, {4, 4, 1}, {20, 16, 1}, {1000, 16, 62}} {
		r := NewRateLimiter(1, time.Minute, c.maxKeys)
		if len(r.shards) != c.shards || r.shards[0].cap != c.perShard {
			t.Errorf("maxKeys %d: %d shards of %d", c.maxKeys, len(r.shards), r.shards[0].cap)
		}
	}
}

func TestRateLimiterDefaultMaxKeys(t *testing.T) {
	r := NewRateLimiter(1, time.Minute, 0)
	capacity := 0
	for i := range r.shards {
		capacity += r.shards[i].cap
	}
	if capacity != DefaultRateLimitKeys {
		t.Fatalf("capacity %d, want %d", capacity, DefaultRateLimitKeys)
	}
}

// TestRateLimiterEvictsExpiredFirst fills a one-shard limiter, lets part of it expire, and
// checks new keys displace the expired keys rather than live (limited) ones.
func TestRateLimiterEvictsExpiredFirst(t *testing.T) {
	// One shard built directly, to control which keys share it.
	s := &rlShard{cap: 3, idx: map[string]int32{}, head: -1, tail: -1, free: -1}
	const w = int64(time.Minute)
	s.hit("old1", 0, w, 1)
	s.hit("old2", 1, w, 1)
	s.hit("live", w-10, w, 1)
	// At t = w+5, old1 and old2 have expired; "live" has not.
	s.hit("new1", w+5, w, 1)
	if _, ok := s.idx["live"]; !ok {
		t.Fatal("live key evicted before expired ones")
	}
	if _, ok := s.idx["old1"]; ok {
		t.Fatal("expired key kept")
	}
	if _, ok := s.idx["old2"]; ok {
		t.Fatal("expired key kept")
	}
	if s.hit("live", w+6, w, 1) {
		t.Fatal("live key lost its count")
	}
	// Nothing expired now: the oldest window ("live") goes.
	s.hit("new2", w+7, w, 1)
	s.hit("new3", w+8, w, 1)
	if len(s.idx) != 3 {
		t.Fatalf("%d keys", len(s.idx))
	}
	if _, ok := s.idx["live"]; ok {
		t.Fatal("oldest key not evicted when nothing expired")
	}
	for _, k := range []string{"new1", "new2", "new3"} {
		if _, ok := s.idx[k]; !ok {
			t.Fatalf("%s missing", k)
		}
	}
	checkList(t, s)
}

// checkList verifies the shard's linked list and free list cover every slot exactly once.
func checkList(t *testing.T, s *rlShard) {
	t.Helper()
	seen := map[int32]bool{}
	prev := int32(-1)
	for i := s.head; i >= 0; i = s.ents[i].next {
		if seen[i] || s.ents[i].prev != prev {
			t.Fatalf("broken list at %d", i)
		}
		if j, ok := s.idx[s.ents[i].key]; !ok || j != i {
			t.Fatalf("slot %d not indexed", i)
		}
		seen[i] = true
		prev = i
	}
	if s.tail != prev || len(seen) != len(s.idx) {
		t.Fatalf("tail %d/%d, %d listed vs %d indexed", s.tail, prev, len(seen), len(s.idx))
	}
	for i := s.free; i >= 0; i = s.ents[i].next {
		if seen[i] {
			t.Fatalf("slot %d both live and free", i)
		}
		seen[i] = true
	}
	if len(seen) != len(s.ents) {
		t.Fatalf("%d of %d slots accounted for", len(seen), len(s.ents))
	}
}

func TestRateLimiterConcurrent(t *testing.T) {
	const (
		limit      = 50
		goroutines = 16
		perG       = 200
	)
	r := NewRateLimiter(limit, time.Hour, 1000)
	now := time.Unix(1_700_000_000, 0)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				if r.Allow("shared", now) {
					allowed.Add(1)
				}
				r.Allow("g"+strconv.Itoa(g)+"-"+strconv.Itoa(i%50), now)
				_ = r.Len()
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Fatalf("shared key allowed %d times, want exactly %d", got, limit)
	}
	if r.Len() > 1000 {
		t.Fatalf("%d keys", r.Len())
	}
}

func TestRateLimiterClockSkew(t *testing.T) {
	r := NewRateLimiter(2, time.Minute, 10)
	t0 := time.Unix(1_700_000_000, 0)
	r.Allow("k", t0)
	r.Allow("k", t0)
	// A timestamp earlier than the window start counts in the current window.
	if r.Allow("k", t0.Add(-time.Hour)) {
		t.Fatal("earlier timestamp reset the window")
	}
}

func TestRateLimiterSteadyStateNoAllocs(t *testing.T) {
	r := NewRateLimiter(5, time.Minute, 64)
	now := time.Unix(1_700_000_000, 0)
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = "ip" + strconv.Itoa(i) + "|link"
	}
	for _, k := range keys { // warm up: fill and start recycling slots
		r.Allow(k, now)
	}
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		r.Allow(keys[i%len(keys)], now)
		i++
	})
	if n > 0 {
		t.Errorf("Allow allocates %v times per call in steady state", n)
	}
}

func BenchmarkAllow(b *testing.B) {
	r := NewRateLimiter(10, time.Minute, DefaultRateLimitKeys)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = HashIP([]byte("salt"), "203.0.113."+strconv.Itoa(i%256)+strconv.Itoa(i)) + "|" + "linkid" + strconv.Itoa(i%7)
	}
	now := time.Now()
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		for pb.Next() {
			r.Allow(keys[i&(len(keys)-1)], now)
			i++
		}
	})
}
