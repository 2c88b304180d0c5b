// Package ratelimit applies PocketBase's rate-limit rules outside PocketBase's router: a
// redirect node (`pbaffiliate edge`) answers POST /api/pba/clicks and must refuse a flood as
// the primary does. The rules are the primary's settings (settings.rateLimits), the choice of
// rule is PocketBase's own (core.RateLimitsConfig.FindRateLimitRule, called by the node), and
// the counting here is PocketBase's: a fixed window per rule and client key that starts at the
// key's first request after its last window ended (apis/middlewares_rate_limit.go, whose
// limiter is unexported).
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// Set is the limiters of one set of rules, one per rule id (PocketBase's label + audience).
// It is safe for concurrent use.
type Set struct {
	mu        sync.Mutex
	limiters  map[string]*limiter
	lastClean time.Time
}

// keep is how long a client's ended window is kept (PocketBase's 1800 s), and cleanEvery how
// often Allow drops the older ones, so a flood of distinct addresses does not grow without end.
const (
	keep       = 30 * time.Minute
	cleanEvery = 10 * time.Minute
)

// NewSet returns an empty set.
func NewSet() *Set { return &Set{limiters: map[string]*limiter{}} }

// Allow counts a request of key (the client's address) against the rule rule allowing max
// requests per window of seconds, and reports whether it is within the limit.
func (s *Set) Allow(rule string, max int, seconds int64, key string, now time.Time) bool {
	s.mu.Lock()
	if now.Sub(s.lastClean) >= cleanEvery {
		s.lastClean = now
		for _, l := range s.limiters {
			l.clean(now.Unix())
		}
	}
	l, ok := s.limiters[rule]
	if !ok {
		l = &limiter{max: max, interval: seconds, clients: map[string]*window{}}
		s.limiters[rule] = l
	}
	s.mu.Unlock()
	return l.allow(key, now.Unix())
}

// limiter counts the requests of each key under one rule.
type limiter struct {
	mu       sync.Mutex
	max      int
	interval int64 // seconds
	clients  map[string]*window
}

// window is one key's current window: when it started and what is left of its allowance.
type window struct {
	start     int64
	available int
}

func (l *limiter) allow(key string, now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[key]
	if !ok {
		w = &window{}
		l.clients[key] = w
	}
	if now-w.start >= l.interval {
		w.start, w.available = now, l.max
	}
	if w.available > 0 {
		w.available--
		return true
	}
	return false
}

func (l *limiter) clean(now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, w := range l.clients {
		if now-(w.start+l.interval) > int64(keep/time.Second) {
			delete(l.clients, k)
		}
	}
}

// Len is the number of keys the set holds a window for (for tests).
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.limiters {
		l.mu.Lock()
		n += len(l.clients)
		l.mu.Unlock()
	}
	return n
}

// Excluded reports whether ip is one of list's addresses or in one of its subnets
// (settings.rateLimits.excludedIPs, as PocketBase reads it: unparsable entries never match).
func Excluded(list []string, ip string) bool {
	if len(list) == 0 || ip == "" {
		return false
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, item := range list {
		if prefix, err := netip.ParsePrefix(item); err == nil {
			if prefix.Contains(addr) {
				return true
			}
			continue
		}
		if a, err := netip.ParseAddr(item); err == nil && a == addr {
			return true
		}
	}
	return false
}
