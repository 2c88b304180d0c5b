package saleupdate

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"
)

func TestSettle(t *testing.T) {
	cases := []struct {
		stored, asked    string
		amount, refunded int64
		status           string
		wantRefunded     int64
		errField         string
	}{
		{Approved, Refunded, 1000, 0, Refunded, 1000, ""},          // status refunded: refunded in full
		{Approved, Refunded, 1000, 300, Refunded, 1000, ""},        // a partial refund completed
		{Approved, Approved, 1000, 300, Approved, 300, ""},         // partial refund keeps approved
		{Pending, Pending, 1000, 1000, Refunded, 1000, ""},         // a full refund refunds a held sale
		{Approved, Approved, 1000, 1000, Refunded, 1000, ""},       // a full refund
		{Rejected, Rejected, 1000, 1000, Rejected, 1000, ""},       // a rejected sale stays rejected
		{Rejected, Approved, 1000, 1000, Refunded, 1000, ""},       // undoing a rejection of a refunded sale
		{Rejected, Approved, 1000, 400, Approved, 400, ""},         // approved again, partly refunded
		{Refunded, Rejected, 1000, 1000, Rejected, 1000, ""},       // a refunded sale can be rejected
		{Refunded, Approved, 1000, 1000, "", 0, "status"},          // refunds are not undone
		{Refunded, Pending, 1000, 1000, "", 0, "status"},           //
		{Refunded, Refunded, 1000, 1000, Refunded, 1000, ""},       //
		{Approved, Approved, 1000, 1001, "", 0, "refunded_amount"}, // more than the sale
		{Approved, Approved, 0, 0, Approved, 0, ""},                // a zero sale is not refunded by nothing
	}
	for _, tc := range cases {
		status, refunded, err := Settle(tc.stored, tc.asked, tc.amount, tc.refunded)
		var se *Error
		switch {
		case tc.errField != "":
			if !errors.As(err, &se) || se.Field != tc.errField {
				t.Errorf("%+v: err %v, want one naming %s", tc, err, tc.errField)
			}
		case err != nil || status != tc.status || refunded != tc.wantRefunded:
			t.Errorf("%+v: %s %d %v, want %s %d", tc, status, refunded, err, tc.status, tc.wantRefunded)
		}
	}
}

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	sale := State{Status: Approved, Amount: 1000}
	cases := []struct {
		name     string
		cur      State
		u        Update
		outcome  Outcome
		status   string
		refunded int64
		storeKey bool
	}{
		{"refund in full", sale, Update{Status: Refunded, Refunded: -1}, Applied, Refunded, 1000, false},
		{"partial refund", sale, Update{Refunded: 250}, Applied, Approved, 250, false},
		{"partial refund again", State{Status: Approved, Amount: 1000, Refunded: 250}, Update{Refunded: 250}, Unchanged, Approved, 250, false},
		{"smaller refund is stale", State{Status: Approved, Amount: 1000, Refunded: 250}, Update{Refunded: 100}, Stale, Approved, 250, false},
		{"reject", sale, Update{Status: Rejected, Refunded: -1}, Applied, Rejected, 0, false},
		{"unkeyed re-approval ignored", State{Status: Rejected, Amount: 1000}, Update{Status: Approved, Refunded: -1}, Stale, Rejected, 0, false},
		{"unkeyed hold ignored", sale, Update{Status: Pending, Refunded: -1}, Stale, Approved, 0, false},
		{"unkeyed approval of pending", State{Status: Pending, Amount: 1000}, Update{Status: Approved, Refunded: -1}, Applied, Approved, 0, false},
		{"keyed re-approval", State{Status: Rejected, Amount: 1000, Sequence: 2}, Update{Status: Approved, Refunded: -1, Sequence: 3}, Applied, Approved, 0, true},
		{"older sequence", State{Status: Rejected, Amount: 1000, Sequence: 2}, Update{Status: Approved, Refunded: -1, Sequence: 1}, Stale, Rejected, 0, false},
		{"same sequence, other status", State{Status: Rejected, Amount: 1000, Sequence: 2}, Update{Status: Approved, Refunded: -1, Sequence: 2}, Stale, Rejected, 0, false},
		{"same sequence replayed", State{Status: Rejected, Amount: 1000, Sequence: 2}, Update{Status: Rejected, Refunded: -1, Sequence: 2}, Unchanged, Rejected, 0, false},
		{"same sequence replayed after a full refund", State{Status: Refunded, Amount: 1000, Refunded: 1000, Sequence: 2}, Update{Status: Approved, Refunded: -1, Sequence: 2}, Unchanged, Refunded, 1000, false},
		{"first sequence", sale, Update{Status: Pending, Refunded: -1, Sequence: 9}, Applied, Pending, 0, true},
		{"older updated_at", State{Status: Rejected, Amount: 1000, UpdatedAt: t0}, Update{Status: Approved, Refunded: -1, UpdatedAt: t0.Add(-time.Second)}, Stale, Rejected, 0, false},
		{"newer updated_at", State{Status: Rejected, Amount: 1000, UpdatedAt: t0}, Update{Status: Approved, Refunded: -1, UpdatedAt: t0.Add(time.Millisecond)}, Applied, Approved, 0, true},
		{"updated_at within the millisecond", State{Status: Rejected, Amount: 1000, UpdatedAt: t0}, Update{Status: Approved, Refunded: -1, UpdatedAt: t0.Add(time.Microsecond)}, Stale, Rejected, 0, false},
		{"older status, its refund counts", State{Status: Approved, Amount: 1000, Sequence: 5}, Update{Status: Pending, Refunded: 300, Sequence: 4}, Applied, Approved, 300, false},
		{"keyed refund-only keeps the key", State{Status: Approved, Amount: 1000, Sequence: 5}, Update{Refunded: 300, Sequence: 9}, Applied, Approved, 300, false},
		{"keyed approval of a refunded sale", State{Status: Refunded, Amount: 1000, Refunded: 1000, Sequence: 1}, Update{Status: Approved, Refunded: -1, Sequence: 2}, Unchanged, Refunded, 1000, true},
		{"refund of a rejected sale, unkeyed", State{Status: Rejected, Amount: 1000}, Update{Status: Refunded, Refunded: -1}, Applied, Rejected, 1000, false},
		{"refunded sale rejected", State{Status: Refunded, Amount: 1000, Refunded: 1000}, Update{Status: Rejected, Refunded: -1}, Applied, Rejected, 1000, false},
		{"full refund of a held sale", State{Status: Pending, Amount: 1000}, Update{Refunded: 1000}, Applied, Refunded, 1000, false},
	}
	for _, tc := range cases {
		d, err := Decide(tc.cur, tc.u)
		if err != nil || d.Outcome != tc.outcome || d.Status != tc.status || d.Refunded != tc.refunded || d.StoreKey != tc.storeKey {
			t.Errorf("%s: %+v %v, want %s %s %d storeKey %v", tc.name, d, err, tc.outcome, tc.status, tc.refunded, tc.storeKey)
		}
		if d.Message == "" {
			t.Errorf("%s: no message", tc.name)
		}
	}
	if _, err := Decide(sale, Update{Refunded: 1001}); err == nil {
		t.Error("a refund above the amount was accepted")
	}
}

// apply delivers updates in order to a sale and returns where it ends.
func apply(t *testing.T, start State, updates []Update) State {
	t.Helper()
	cur := start
	for _, u := range updates {
		d, err := Decide(cur, u)
		if err != nil {
			t.Fatalf("%+v on %+v: %v", u, cur, err)
		}
		cur.Status, cur.Refunded = d.Status, d.Refunded
		if d.StoreKey {
			cur.Sequence, cur.UpdatedAt = max(cur.Sequence, u.Sequence), u.UpdatedAt.Truncate(time.Millisecond)
			if u.UpdatedAt.IsZero() {
				cur.UpdatedAt = start.UpdatedAt
			}
		}
	}
	return cur
}

// TestDeliveryOrderDoesNotMatter: a consistent sender (refunds only grow, each change has its own
// sequence or updated_at, or none has any) reports a sale's changes; delivered in any order, with
// any replays, they leave the sale where the sender's order does.
func TestDeliveryOrderDoesNotMatter(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	statuses := []string{"", Approved, Pending, Rejected, Refunded}
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for round := 0; round < 20000; round++ {
		amount := int64(1 + rng.Intn(5000))
		start := State{Status: []string{Approved, Pending, Rejected}[rng.Intn(3)], Amount: amount}
		keying := rng.Intn(3) // 0 none, 1 sequence, 2 updated_at
		n := 1 + rng.Intn(6)
		var updates []Update
		var refunded int64
		for i := 0; i < n; i++ {
			u := Update{Status: statuses[rng.Intn(len(statuses))], Refunded: -1}
			if rng.Intn(3) == 0 {
				refunded = min(amount, refunded+int64(rng.Intn(int(amount)+1)))
			}
			if u.Status == Refunded {
				refunded = amount
			}
			if u.Status == "" || rng.Intn(2) == 0 {
				u.Refunded = refunded
			}
			switch keying {
			case 1:
				u.Sequence = int64(i + 1)
			case 2:
				u.UpdatedAt = t0.Add(time.Duration(i) * time.Second)
			}
			updates = append(updates, u)
		}
		want := apply(t, start, updates)
		for perm := 0; perm < 4; perm++ {
			delivered := slices.Clone(updates)
			for i := 0; i < rng.Intn(3); i++ { // replays
				delivered = append(delivered, updates[rng.Intn(n)])
			}
			rng.Shuffle(len(delivered), func(i, j int) { delivered[i], delivered[j] = delivered[j], delivered[i] })
			got := apply(t, start, delivered)
			if got.Status != want.Status || got.Refunded != want.Refunded {
				t.Fatalf("round %d: start %+v\nin order %s → %s %d\ndelivered %s → %s %d",
					round, start, show(updates), want.Status, want.Refunded, show(delivered), got.Status, got.Refunded)
			}
		}
	}
}

func show(us []Update) string {
	s := ""
	for _, u := range us {
		s += fmt.Sprintf("{%s r%d s%d t%s} ", u.Status, u.Refunded, u.Sequence, u.UpdatedAt.Format("15:04:05"))
	}
	return s
}
