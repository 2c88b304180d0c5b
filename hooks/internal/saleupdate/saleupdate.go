// Package saleupdate decides what a change of a recorded sale's status or refunds does, whatever
// door it comes through (the dashboard, the merchant API, the postback, Stripe). It is pure: the
// conversions update hook and the merchant doors call it with the stored state and the change.
//
// Two functions:
//   - Settle is what any save of a sale leaves: status refunded means refunded in full (the
//     refunded amount is raised to the amount), a refund of the whole amount makes an approved or
//     pending sale refunded, and a refund is never taken back.
//   - Decide is the merchant's update against the stored state: its ordering (the sender's
//     updated_at or sequence; without one, status only moves forward), then Settle.
package saleupdate

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

// Conversion statuses.
const (
	Pending  = "pending"
	Approved = "approved"
	Rejected = "rejected"
	Refunded = "refunded"
)

// ValidStatus reports whether s is a conversion status.
func ValidStatus(s string) bool {
	return s == Pending || s == Approved || s == Rejected || s == Refunded
}

// Error is a change Settle refuses; Field names what is wrong with it (for a 400 naming it).
type Error struct {
	Field, Code, Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

// Settle is the status and refunded amount a save leaves the sale in. stored is the status in the
// database, asked the one the save asks for (the same when the save does not change it), amount
// the sale's amount and refunded the cumulative refunded amount the save asks for (never below
// the stored one: the caller checks that).
//   - Status refunded raises refunded to amount: it means refunded in full. A partial refund is
//     a refunded amount below the amount with the status kept (approved stays approved).
//   - A sale refunded in full is not approved or held: asking it of a refunded sale is refused
//     (refunds are not undone); approving a rejected sale refunded in full meanwhile puts it back
//     to refunded; a refund completing makes an approved or pending sale refunded.
//   - refunded above amount is refused.
func Settle(stored, asked string, amount, refunded int64) (string, int64, error) {
	status, refunded, err := settle(stored, asked, amount, refunded)
	if err == nil && status != asked && asked != Refunded && stored == Refunded && status == Refunded {
		err = &Error{"status", "refunded",
			"This sale was refunded in full: it can be rejected, but not " + asked + " again (refunds are not undone)."}
	}
	return status, refunded, err
}

// settle is Settle without the refusal: a sale refunded in full stays refunded.
func settle(stored, asked string, amount, refunded int64) (string, int64, error) {
	if refunded > amount {
		return "", 0, &Error{"refunded_amount", "above_amount",
			fmt.Sprintf("At most the sale's amount (%d): the refunded amount is cumulative, in minor units.", amount)}
	}
	status := asked
	if status == Refunded {
		refunded = amount
	}
	if amount > 0 && refunded >= amount && (status == Approved || status == Pending) {
		status = Refunded
	}
	return status, refunded, nil
}

// State is a recorded sale as the ordering sees it.
type State struct {
	Status           string
	Amount, Refunded int64
	// The sender's order key of the last status change applied (zero: none yet).
	UpdatedAt time.Time
	Sequence  int64
}

// Update is a change the merchant reports.
type Update struct {
	Status   string // "" = unchanged
	Refunded int64  // cumulative minor units; negative = unchanged
	// The sender's order key: at most one of them (zero: none).
	UpdatedAt time.Time
	Sequence  int64
}

// Keyed reports whether u carries an order key.
func (u Update) Keyed() bool { return u.Sequence > 0 || !u.UpdatedAt.IsZero() }

// Outcome of an update.
type Outcome string

const (
	Applied   Outcome = "applied"   // the sale changed
	Unchanged Outcome = "unchanged" // the sale was in that state already (a replay)
	Stale     Outcome = "stale"     // ignored: older than the status applied, a backward move without an order key, a smaller refund
)

// Decision is what to do with an update.
type Decision struct {
	Outcome  Outcome
	Status   string // the sale's status and refunded amount after it
	Refunded int64
	// StoreKey: the update's order key becomes the sale's last applied one (it carried a status
	// and is newer).
	StoreKey bool
	// Message says what happened, and what part was ignored and why.
	Message string
}

// forward ranks statuses for updates without an order key, which only move a sale forward:
// pending → approved → refunded → rejected. A late retry of an old update can then never undo
// a newer one; moving a sale back (holding an approved sale, approving a rejected one) needs
// updated_at or sequence.
var forward = map[string]int{Pending: 0, Approved: 1, Refunded: 2, Rejected: 3}

// Decide applies u to cur. Its error is Settle's refusal of a refunded amount above the amount.
//
//   - Refunds are cumulative facts: the sale keeps the largest refunded amount reported, in any
//     order (a smaller one is stale by definition). Status refunded is a refund of the amount.
//   - Status follows the order key. An update with a sequence is compared with the last status
//     change's sequence, one with updated_at with its updated_at, to the millisecond (none of
//     that kind applied yet: newer). An older status is stale, and so is the same key with another status (the first
//     applied wins); the same key with the same status is a replay. Only updates carrying a
//     status move the key, so a refund never makes an older status change stale.
//   - Without an order key, status only moves forward (see forward).
//   - Then Settle, except that a sale refunded in full stays refunded instead of being refused:
//     a keyed approval older than the refund, arriving after it, is no error.
//
// For a sender whose refunds only grow and whose keys are distinct, every order of delivery of
// the same updates (and any replay) ends in the same state.
func Decide(cur State, u Update) (Decision, error) {
	if u.Status == Refunded && u.Refunded < cur.Amount {
		u.Refunded = cur.Amount
	}
	var ignored, kept []string
	refunded := cur.Refunded
	switch {
	case u.Refunded < 0:
	case u.Refunded < cur.Refunded:
		ignored = append(ignored, fmt.Sprintf("refunded_amount %d: refunds are cumulative and %d is refunded already", u.Refunded, cur.Refunded))
	default:
		refunded = u.Refunded
	}

	asked, storeKey := cur.Status, false
	if u.Status != "" {
		order := 1 // -1 older, 0 same, 1 newer
		switch {
		case u.Sequence > 0 && cur.Sequence > 0:
			order = cmp.Compare(u.Sequence, cur.Sequence)
		case !u.UpdatedAt.IsZero() && !cur.UpdatedAt.IsZero():
			// To the millisecond: the precision it is stored with.
			order = u.UpdatedAt.Truncate(time.Millisecond).Compare(cur.UpdatedAt.Truncate(time.Millisecond))
		}
		same, _, _ := settle(cur.Status, u.Status, cur.Amount, max(refunded, cur.Refunded))
		switch {
		case u.Keyed() && order < 0:
			ignored = append(ignored, fmt.Sprintf("status %s is older than the last status applied (%s)", u.Status, cur.key(u)))
		case u.Keyed() && order == 0 && same != cur.Status:
			ignored = append(ignored, fmt.Sprintf("status %s: another status with the same %s was applied already", u.Status, cur.key(u)))
		case !u.Keyed() && forward[u.Status] < forward[cur.Status] && u.Status == Refunded:
			kept = append(kept, "the sale stays rejected")
		case !u.Keyed() && forward[u.Status] < forward[cur.Status]:
			ignored = append(ignored, fmt.Sprintf("status %s: the sale is %s, and without updated_at or sequence an update only moves it forward", u.Status, cur.Status))
		default:
			asked, storeKey = u.Status, u.Keyed() && order > 0
		}
	}
	status, refunded, err := settle(cur.Status, asked, cur.Amount, refunded)
	if err != nil {
		return Decision{}, err
	}
	if u.Status != "" && asked == u.Status && status != asked && status == Refunded {
		kept = append(kept, fmt.Sprintf("refunded in full, the sale is refunded, not %s", asked))
	}
	d := Decision{Status: status, Refunded: refunded, StoreKey: storeKey}
	var head string
	switch {
	case status != cur.Status || refunded != cur.Refunded:
		d.Outcome, head = Applied, fmt.Sprintf("applied: %s → %s, refunded %d → %d", cur.Status, status, cur.Refunded, refunded)
	case len(ignored) > 0 && !storeKey:
		d.Outcome, head = Stale, "ignored as stale: "+ignored[0]
		ignored = ignored[1:]
	default:
		d.Outcome, head = Unchanged, fmt.Sprintf("unchanged: the sale is %s with %d refunded already", status, refunded)
	}
	parts := []string{head}
	for _, part := range ignored {
		parts = append(parts, "ignored "+part)
	}
	d.Message = strings.Join(append(parts, kept...), "; ")
	return d, nil
}

// key names the last applied order key of the kind u carries.
func (s State) key(u Update) string {
	if u.Sequence > 0 {
		return fmt.Sprintf("sequence %d", s.Sequence)
	}
	return "updated_at " + s.UpdatedAt.UTC().Format(time.RFC3339Nano)
}
