package surveyround

import (
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDueOnce(t *testing.T) {
	send := at("2026-03-01T10:00:00Z")
	created := at("2026-02-01T00:00:00Z")
	if _, due, _ := Due("", send, time.Time{}, created, send.Add(-time.Second)); due {
		t.Fatal("due before send_at")
	}
	round, due, err := Due("", send, time.Time{}, created, send)
	if err != nil || !due || !round.Equal(send) {
		t.Fatalf("at send_at: %v %v %v", round, due, err)
	}
	if _, due, _ := Due("", send, send, created, send.Add(time.Hour)); due {
		t.Fatal("a one-off survey sent twice")
	}
	if _, due, _ := Due("", time.Time{}, time.Time{}, created, send); due {
		t.Fatal("due without send_at or schedule")
	}
}

func TestDueQuarterly(t *testing.T) {
	q := Presets()["quarterly"]
	created := at("2026-02-10T12:00:00Z")
	if _, due, _ := Due(q, time.Time{}, time.Time{}, created, at("2026-04-01T08:59:59Z")); due {
		t.Fatal("due before the first occurrence")
	}
	r1, due, err := Due(q, time.Time{}, time.Time{}, created, at("2026-04-01T09:00:00Z"))
	if err != nil || !due || !r1.Equal(at("2026-04-01T09:00:00Z")) {
		t.Fatalf("first round: %v %v %v", r1, due, err)
	}
	if _, due, _ := Due(q, time.Time{}, r1, created, at("2026-06-30T23:59:59Z")); due {
		t.Fatal("due again within the quarter")
	}
	// A server down for two quarters sends the latest round only.
	r3, due, _ := Due(q, time.Time{}, r1, created, at("2026-11-15T00:00:00Z"))
	if !due || !r3.Equal(at("2026-10-01T09:00:00Z")) {
		t.Fatalf("catch-up round: %v %v", r3, due)
	}
	// send_at holds the schedule back; an occurrence at send_at itself counts.
	r, due, _ := Due(q, at("2026-07-01T09:00:00Z"), time.Time{}, created, at("2026-07-01T09:00:00Z"))
	if !due || !r.Equal(at("2026-07-01T09:00:00Z")) {
		t.Fatalf("send_at on an occurrence: %v %v", r, due)
	}
	if _, _, err := Due("every day", time.Time{}, time.Time{}, created, created); err == nil || Check("every day") == nil {
		t.Fatal("a bad spec accepted")
	}
	if Check(q) != nil || Check("") != nil || Check("CRON_TZ=Europe/Berlin 0 9 1 * *") != nil {
		t.Fatal("a good spec refused")
	}
}

func TestKey(t *testing.T) {
	r := at("2026-04-01T09:00:00Z")
	k := Key(r)
	back, err := ParseKey(k)
	if k != "20260401T090000Z" || err != nil || !back.Equal(r) {
		t.Fatalf("%s %v %v", k, back, err)
	}
}
