package store

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pocketbase/pocketbase/core"
)

// NewID makes a random id in PocketBase's default format (15 of [a-z0-9]), for rows inserted
// without a Record whose place in the primary-key index does not matter (stats_daily rows,
// deliveries, leases, suppressions).
func NewID() string {
	return core.GenerateDefaultRandomId()
}

// idAlphabet orders like its characters' bytes, so ids made from time digits sort by time.
const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// NewOrderedID makes a PocketBase-shaped id (15 of [a-z0-9]) that sorts by time: 10 base-36
// digits of the microsecond clock and 5 random ones. New rows then land at the right edge of
// the primary-key index instead of on a random page, which keeps each batch commit (clicks,
// commissions) to a few pages. Where two ids of one process may share a microsecond, use
// OrderedIDs.
func NewOrderedID(now time.Time) string {
	var b [15]byte
	us := uint64(now.UnixMicro())
	for i := 9; i >= 0; i-- {
		b[i] = idAlphabet[us%36]
		us /= 36
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (it panics on a broken kernel source)
	n := binary.LittleEndian.Uint64(r[:])
	for i := 10; i < 15; i++ {
		b[i] = idAlphabet[n%36]
		n /= 36
	}
	return string(b[:])
}

// OrderedIDs hands out NewOrderedID ids that never repeat an instant within the process:
// each id's time part is after the previous one's (the microsecond clock, or one past the
// last when ids are asked for faster). Two ids in the same microsecond would otherwise share
// the time digits and rely on 5 random characters alone; a clash fails the whole batch.
// The zero value is ready to use; share one per kind of row.
type OrderedIDs struct{ last atomic.Int64 }

// Next returns the next id at or after now.
func (g *OrderedIDs) Next(now time.Time) string {
	us := now.UnixMicro()
	for {
		last := g.last.Load()
		if us <= last {
			us = last + 1
		}
		if g.last.CompareAndSwap(last, us) {
			return NewOrderedID(time.UnixMicro(us))
		}
		us = now.UnixMicro()
	}
}

// OrderedIDTime is the instant an id of NewOrderedID's shape carries (to the microsecond),
// false when id is not 15 of [a-z0-9]. Any such id decodes, random ones to arbitrary times.
func OrderedIDTime(id string) (time.Time, bool) {
	if len(id) != 15 {
		return time.Time{}, false
	}
	var us uint64
	for i := 0; i < len(id); i++ {
		c := id[i]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'z':
			d = uint64(c-'a') + 10
		default:
			return time.Time{}, false
		}
		if i < 10 {
			us = us*36 + d
		}
	}
	return time.UnixMicro(int64(us)), true
}
