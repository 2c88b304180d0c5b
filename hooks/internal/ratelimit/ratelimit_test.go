package ratelimit

import (
	"testing"
	"time"
)

// TestFixedWindow: max requests per key in a window that starts at the key's first request;
// keys and rules count apart; the next window refills.
func TestFixedWindow(t *testing.T) {
	s := NewSet()
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		if !s.Allow("POST /api/pba/clicks", 3, 10, "192.0.2.1", t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("request %d refused within the limit", i+1)
		}
	}
	if s.Allow("POST /api/pba/clicks", 3, 10, "192.0.2.1", t0.Add(9*time.Second)) {
		t.Fatal("4th request in the window allowed")
	}
	if !s.Allow("POST /api/pba/clicks", 3, 10, "192.0.2.2", t0.Add(9*time.Second)) {
		t.Fatal("another address refused")
	}
	if !s.Allow("/api/", 3, 10, "192.0.2.1", t0.Add(9*time.Second)) {
		t.Fatal("another rule refused")
	}
	if !s.Allow("POST /api/pba/clicks", 3, 10, "192.0.2.1", t0.Add(10*time.Second)) {
		t.Fatal("the next window did not refill")
	}
}

// TestCleanDropsOldWindows: a flood of distinct addresses is forgotten once their windows
// ended more than 30 minutes ago.
func TestCleanDropsOldWindows(t *testing.T) {
	s := NewSet()
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 100 {
		s.Allow("r", 1, 10, "198.51.100."+string(rune('0'+i%10))+string(rune('0'+i/10)), t0)
	}
	if s.Len() != 100 {
		t.Fatalf("%d windows, want 100", s.Len())
	}
	s.Allow("r", 1, 10, "203.0.113.1", t0.Add(5*time.Minute))
	if s.Len() != 101 {
		t.Fatalf("cleaned too early: %d windows", s.Len())
	}
	s.Allow("r", 1, 10, "203.0.113.2", t0.Add(31*time.Minute))
	if s.Len() != 2 {
		t.Fatalf("%d windows after the clean, want 2 (the two recent ones)", s.Len())
	}
}

func TestExcluded(t *testing.T) {
	list := []string{"10.0.0.0/8", "2001:db8::1", "not an ip"}
	for ip, want := range map[string]bool{"10.1.2.3": true, "11.0.0.1": false, "2001:db8::1": true,
		"2001:db8::2": false, "": false, "garbage": false} {
		if got := Excluded(list, ip); got != want {
			t.Errorf("Excluded(%q) = %v, want %v", ip, got, want)
		}
	}
}
