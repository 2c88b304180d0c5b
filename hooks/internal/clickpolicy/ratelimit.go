package clickpolicy

import (
	"sync"
	"time"
)

// Rate limiter sizing.
const (
	// maxShards bounds lock contention: keys are spread over this many independently locked
	// shards by FNV-1a hash, so concurrent requests rarely wait on each other.
	maxShards = 16
	// DefaultRateLimitKeys is the key bound NewRateLimiter uses when maxKeys <= 0: about 10 MB
	// of state at typical key sizes, enough for a busy site's distinct visitor/link pairs per window.
	DefaultRateLimitKeys = 65536
)

// RateLimiter counts clicks per key (the redirector uses ipHash+"|"+linkID) in fixed windows
// that start at a key's first hit, so one visitor hammering a link can be told apart from many
// visitors. It only decides: the caller still records a refused click, flagged "rate".
// State is bounded by maxKeys and spread over sharded mutexes, so it is safe for concurrent use
// and cheap on the hot path; it lives in memory and resets on restart.
type RateLimiter struct {
	limit  int
	window int64 // nanoseconds
	shards []rlShard
}

type rlShard struct {
	mu   sync.Mutex
	cap  int
	idx  map[string]int32
	ents []rlEntry
	// Doubly linked list of live entries ordered by window start (oldest at head) and a free
	// list of reusable slots; -1 ends a list. Eviction is O(1) and slots are reused, so a full
	// limiter allocates nothing per new key beyond what the caller's key string already is.
	head, tail, free int32
	_                [64]byte // keep shards on separate cache lines
}

type rlEntry struct {
	key        string
	start      int64 // window start, UnixNano
	count      int32 // hits in the window, capped at limit+1
	prev, next int32
}

// NewRateLimiter returns a limiter allowing limit hits per key within window. limit <= 0 or
// window <= 0 disables limiting (Allow always reports true), so a program can switch it off.
// At most maxKeys keys are tracked (DefaultRateLimitKeys when maxKeys <= 0); the bound is
// split evenly over the shards, so a shard may start evicting slightly before maxKeys keys are
// tracked overall, but the total never exceeds it.
func NewRateLimiter(limit int, window time.Duration, maxKeys int) *RateLimiter {
	r := &RateLimiter{limit: limit, window: int64(window)}
	if limit <= 0 || window <= 0 {
		return r
	}
	if maxKeys <= 0 {
		maxKeys = DefaultRateLimitKeys
	}
	if limit > 1<<30 {
		r.limit = 1 << 30 // counts are int32
	}
	n := min(maxShards, maxKeys)
	r.shards = make([]rlShard, n)
	for i := range r.shards {
		s := &r.shards[i]
		s.cap = maxKeys / n
		s.idx = make(map[string]int32)
		s.head, s.tail, s.free = -1, -1, -1
	}
	return r
}

// Allow records a hit for key at now and reports whether the key is still within its limit;
// it returns false from the (limit+1)-th hit in the key's current window until the window
// (which starts at the first hit after the previous one expired) has elapsed. When the
// limiter is full, expired keys are evicted first, then the key whose window began earliest.
func (r *RateLimiter) Allow(key string, now time.Time) bool {
	if r == nil || len(r.shards) == 0 {
		return true
	}
	s := &r.shards[fnv1a(key)%uint32(len(r.shards))]
	t := now.UnixNano()
	s.mu.Lock()
	ok := s.hit(key, t, r.window, int32(r.limit))
	s.mu.Unlock()
	return ok
}

// Len reports how many keys are tracked, for metrics and to observe the memory bound.
func (r *RateLimiter) Len() int {
	if r == nil {
		return 0
	}
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n += len(s.idx)
		s.mu.Unlock()
	}
	return n
}

func (s *rlShard) hit(key string, t, window int64, limit int32) bool {
	if i, ok := s.idx[key]; ok {
		e := &s.ents[i]
		if t-e.start >= window {
			e.start, e.count = t, 1
			s.unlink(i)
			s.pushTail(i)
			return true
		}
		if e.count <= limit {
			e.count++
		}
		return e.count <= limit
	}
	if len(s.idx) >= s.cap {
		for s.head >= 0 && t-s.ents[s.head].start >= window {
			s.remove(s.head)
		}
		if len(s.idx) >= s.cap {
			s.remove(s.head)
		}
	}
	var i int32
	if s.free >= 0 {
		i = s.free
		s.free = s.ents[i].next
	} else {
		i = int32(len(s.ents))
		s.ents = append(s.ents, rlEntry{})
	}
	s.ents[i] = rlEntry{key: key, start: t, count: 1}
	s.pushTail(i)
	s.idx[key] = i
	return true // limit >= 1
}

func (s *rlShard) remove(i int32) {
	s.unlink(i)
	delete(s.idx, s.ents[i].key)
	s.ents[i] = rlEntry{next: s.free} // drop the key string so it can be collected
	s.free = i
}

func (s *rlShard) unlink(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *rlShard) pushTail(i int32) {
	e := &s.ents[i]
	e.prev, e.next = s.tail, -1
	if s.tail >= 0 {
		s.ents[s.tail].next = i
	} else {
		s.head = i
	}
	s.tail = i
}

// fnv1a is 32-bit FNV-1a, inlined to avoid hash/fnv's allocation and interface calls.
func fnv1a(s string) uint32 {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= prime32
	}
	return h
}
