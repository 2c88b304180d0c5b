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
// credited to it: many visitors behind one NAT lose nothing. But the per-link rate limit lets
// one IP make unflagged clicks on every link it knows, so past the ceiling an unflagged click
// is stored lean (StoreLean): the row a sale needs, without the free text a flood would fill
// the disk with.
//
// The key is the visitor's network as NetworkKey makes it (an IPv6 host owns a /64 and could
// otherwise rotate addresses to start over).
//
// State lives in memory, per process, and starts over every hour and on restart; it is
// spread over sharded mutexes and bounded by maxKeys. When a shard is full, a click of a key
// it does not track is treated as past the ceiling: the bound fails closed for the disk, and
// nothing a sale needs is lost (flagged clicks are never credited; unflagged ones keep a row).
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

// Admission is what IPCeiling.Store decides for one click.
type Admission uint8

const (
	// StoreRow: store the click as a row, with its text.
	StoreRow Admission = iota
	// StoreLean: an unflagged click past the ceiling; store its row without the free text
	// (user agent, referrer), which the caller drops.
	StoreLean
	// CountOnly: a flagged click past the ceiling; count it, store no row.
	CountOnly
)

// NewIPCeiling returns a ceiling of limit rows per key and hour; limit <= 0 turns it off
// (Store always reports StoreRow). At most maxKeys keys are tracked an hour
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

// Store decides how a click of key at now is stored, and counts it against the ceiling. While
// key has stored fewer than the limit of rows in now's hour, every click is a StoreRow; past
// it, a creditable (unflagged) click is StoreLean and a flagged one CountOnly.
func (c *IPCeiling) Store(key string, now time.Time, creditable bool) Admission {
	if c == nil || len(c.shards) == 0 {
		return StoreRow
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
	if n >= c.limit || !tracked && len(s.stored) >= s.cap {
		if creditable {
			return StoreLean
		}
		return CountOnly
	}
	s.stored[key] = n + 1
	return StoreRow
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
