package pbatest

import (
	"sync"
	"time"
)

// Clock is a settable clock an engine reads (its now func is Clock.Now) while the test moves it,
// so a test lets a lease, a backoff or a send time pass without sleeping. It is safe to read
// from the engines' goroutines while the test advances it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock is a clock that reads start until advanced.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
