package clickpolicy

import (
	"hash/maphash"
	"sync"
	"time"
)

// DefaultUniqueKeys is the bound NewUniqueWindow uses when maxKeys <= 0: about 50 MB of state
// at most (a map entry and a ring slot per remembered click), enough for a million
// distinct visitor/link pairs a day before the window hands decisions back to the database.
const DefaultUniqueKeys = 1 << 20

// Verdict is what a UniqueWindow knows about a visitor's click on a link.
type Verdict int8

const (
	// Unique: no unflagged click of this key within the window before the click.
	Unique Verdict = iota
	// Repeat: an unflagged click of this key lies within the window.
	Repeat
	// Unknown: the window cannot tell (it dropped a live entry to stay within its bound, or
	// the key was invalidated); the caller must ask the database.
	Unknown
)

// UniqueWindow remembers, per key (visitor+link+affiliate), the time of the key's latest
// unflagged click within a sliding window (24 h for clicks), so the redirector decides
// "unique" from memory instead of an index lookup per click. Decisions are exact: when the
// bound forces it to drop an entry that is still inside the window, or a key was
// invalidated (Forget), it answers Unknown instead of guessing, until the window has
// moved past what it lost. Keys are kept as 64-bit keyed hashes (a random seed per
// window); two keys colliding would make one visitor's click a repeat, with a probability
// of about n²/2⁶⁵ for n remembered keys (≈ 3·10⁻⁸ at a million).
//
// Times are Unix milliseconds, the precision clicks are stored with. Safe for concurrent use.
type UniqueWindow struct {
	window int64 // milliseconds
	max    int
	seed   maphash.Seed

	mu   sync.Mutex
	last map[uint64]int64 // latest click of the key; -t marks a key invalidated at t
	ring []ringEntry      // every Seen/Forget in call order, a circular buffer
	head int              // index of the oldest entry
	n    int              // entries in ring
	// lostUntil is the latest time of a live entry dropped for room: until it leaves the
	// window, a key that is not remembered may still have a click inside it.
	lostUntil int64
	lost      bool
}

type ringEntry struct {
	key uint64
	at  int64 // as stored in last (negative for Forget)
}

// NewUniqueWindow returns a window of the given length remembering at most maxKeys entries
// (DefaultUniqueKeys when maxKeys <= 0). Memory grows with use, up to the bound.
func NewUniqueWindow(window time.Duration, maxKeys int) *UniqueWindow {
	if maxKeys <= 0 {
		maxKeys = DefaultUniqueKeys
	}
	return &UniqueWindow{
		window: window.Milliseconds(),
		max:    maxKeys,
		seed:   maphash.MakeSeed(),
		last:   make(map[uint64]int64),
	}
}

// Key identifies a visitor's clicks on one link of one affiliate (link is "" for clicks on
// an affiliate's own code).
func (w *UniqueWindow) Key(visitor, link, affiliate string) uint64 {
	var h maphash.Hash
	h.SetSeed(w.seed)
	h.WriteString(visitor)
	h.WriteByte(0)
	h.WriteString(link)
	h.WriteByte(0)
	h.WriteString(affiliate)
	return h.Sum64()
}

// Check reports whether a click of key at time at (Unix ms) is the key's first unflagged
// click within the window: Unique when no remembered click lies in [at-window, at], Repeat
// when one does, Unknown when the window cannot tell. Check does not remember the click.
func (w *UniqueWindow) Check(key uint64, at int64) Verdict {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(at)
	since := at - w.window
	t, ok := w.last[key]
	switch {
	case ok && t < 0:
		return Unknown
	case ok && t >= since:
		return Repeat
	case w.lost && w.lostUntil >= since:
		return Unknown
	default:
		return Unique
	}
}

// Seen remembers an unflagged click of key at time at (Unix ms).
func (w *UniqueWindow) Seen(key uint64, at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.last[key]; ok && (t > at || -t > at) {
		// A later click is already remembered (clicks may arrive slightly out of order), or
		// the key was invalidated after this click: keep the later knowledge.
		return
	}
	w.put(key, at)
}

// Forget makes the window answer Unknown for key until the window has passed now (Unix ms)
// or a click of the key is seen: a click of it was changed or deleted outside the writer,
// so only the database knows whether one remains inside the window.
func (w *UniqueWindow) Forget(key uint64, now int64) {
	if now <= 0 {
		now = 1
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.put(key, -now)
}

// Lost tells the window that a click at time at (Unix ms) was not given to it (a loader
// that kept only the newest clicks): until at leaves the window, keys it does not remember
// answer Unknown.
func (w *UniqueWindow) Lost(at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.markLost(at)
}

// Max is the number of entries the window holds at most.
func (w *UniqueWindow) Max() int { return w.max }

func (w *UniqueWindow) markLost(at int64) {
	if !w.lost || at > w.lostUntil {
		w.lostUntil = at
	}
	w.lost = true
}

// Len is the number of remembered keys.
func (w *UniqueWindow) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.last)
}

func (w *UniqueWindow) put(key uint64, v int64) {
	at := v
	if at < 0 {
		at = -at
	}
	w.expire(at)
	if w.n == w.max {
		w.drop() // full: give up the oldest entry, remembering that it was lost if still live
	}
	if w.n == len(w.ring) {
		w.grow()
	}
	w.ring[(w.head+w.n)%len(w.ring)] = ringEntry{key: key, at: v}
	w.n++
	w.last[key] = v
}

// expire drops the entries whose time left the window before now.
func (w *UniqueWindow) expire(now int64) {
	since := now - w.window
	for w.n > 0 {
		e := w.ring[w.head]
		at := e.at
		if at < 0 {
			at = -at
		}
		if at >= since {
			return
		}
		if w.last[e.key] == e.at {
			delete(w.last, e.key)
		}
		w.pop()
	}
	if w.lost && w.lostUntil < since {
		w.lost = false
	}
}

// drop removes the oldest ring entry, which is still inside the window.
func (w *UniqueWindow) drop() {
	e := w.ring[w.head]
	if w.last[e.key] == e.at {
		delete(w.last, e.key)
		at := e.at
		if at < 0 {
			at = -at
		}
		w.markLost(at)
	}
	w.pop()
}

func (w *UniqueWindow) pop() {
	w.ring[w.head] = ringEntry{}
	w.head = (w.head + 1) % len(w.ring)
	w.n--
}

func (w *UniqueWindow) grow() {
	size := max(1024, 2*len(w.ring))
	size = min(size, w.max)
	ring := make([]ringEntry, size)
	for i := 0; i < w.n; i++ {
		ring[i] = w.ring[(w.head+i)%len(w.ring)]
	}
	w.ring, w.head = ring, 0
}
