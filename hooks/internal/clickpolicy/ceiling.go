package clickpolicy

import (
	"sync"
	"time"
)

// DefaultCeilingKeys is the key bound NewIPCeiling uses when maxKeys <= 0: the IPs one hour
// can track, a few MB of state at most.
const DefaultCeilingKeys = 65536

// IPCeiling bounds how many click rows one IP (its hash) stores per UTC clock hour. A flood
// from one address is flagged (rate, or bot) almost from its first clicks, but every flagged
// click is still a row of up to ~2.7 KB of the flooder's text, kept for the retention period;
// past the ceiling, a flagged click is only counted (the caller adds it to an aggregate), not
// stored as a row of its own. An unflagged click is always stored, since a sale may be
// credited to it: many visitors behind one NAT lose nothing.
//
// State lives in memory, per process, and starts over every hour and on restart; it is
// spread over sharded mutexes and bounded by maxKeys. When a shard is full, a flagged click
// of an IP it does not track is counted rather than stored: the bound fails closed for the
// disk, and flagged clicks are never credited, so nothing a sale needs is lost.
type IPCeiling struct {
	limit  int32
	shards []ceilingShard
}

type ceilingShard struct {
	mu     sync.Mutex
	hour   int64 // the hour the counts are of, in hours since the Unix epoch
	cap    int
	stored map[string]int32 // rows stored this hour, by key (at most limit are counted)
	_      [64]byte         // keep shards on separate cache lines
}

// NewIPCeiling returns a ceiling of limit rows per key and hour; limit <= 0 turns it off
// (Store always reports true). At most maxKeys keys are tracked an hour
// (DefaultCeilingKeys when maxKeys <= 0), split evenly over the shards.
func NewIPCeiling(limit, maxKeys int) *IPCeiling {
	c := &IPCeiling{limit: int32(min(limit, 1<<30))}
	if limit <= 0 {
		return c
	}
	if maxKeys <= 0 {
		maxKeys = DefaultCeilingKeys
	}
	n := min(maxShards, maxKeys)
	c.shards = make([]ceilingShard, n)
	for i := range c.shards {
		c.shards[i].cap = maxKeys / n
		c.shards[i].stored = map[string]int32{}
	}
	return c
}

// Store reports whether a click of key at now is stored as a row, and counts it against the
// ceiling when it is. A creditable (unflagged) click always is; a flagged one only while key
// has stored fewer than the limit of rows in now's hour.
func (c *IPCeiling) Store(key string, now time.Time, creditable bool) bool {
	if c == nil || len(c.shards) == 0 {
		return true
	}
	hour := now.Unix() / 3600
	s := &c.shards[fnv1a(key)%uint32(len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if hour > s.hour {
		// A new hour: every key starts over (a click stamped just before the turn, arriving
		// after it, counts in the new hour).
		clear(s.stored)
		s.hour = hour
	}
	n, tracked := s.stored[key]
	if !tracked && len(s.stored) >= s.cap {
		return creditable
	}
	if n >= c.limit && !creditable {
		return false
	}
	if n < c.limit {
		s.stored[key] = n + 1
	}
	return true
}

// Len reports how many keys the current hours track, to observe the memory bound.
func (c *IPCeiling) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.stored)
		s.mu.Unlock()
	}
	return n
}

// UntilNextHour is how long from now until the ceiling's counts start over (at least a
// second), for a Retry-After.
func UntilNextHour(now time.Time) time.Duration {
	return max(now.Truncate(time.Hour).Add(time.Hour).Sub(now), time.Second)
}
