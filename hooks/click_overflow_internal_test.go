package hooks

import (
	"errors"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// overflowClick is testClick flagged "rate" past its IP's ceiling, at at.
func overflowClick(i int, at time.Time) clickRow {
	r := testClick(i)
	r.Flag, r.Overflow, r.Created = collections.FlagRate, true, at
	return r
}

// overflowCounts is click_overflow's clicks by hour.
func overflowCounts(t *testing.T, app core.App) map[string]int {
	t.Helper()
	var rows []struct {
		Hour   string
		Clicks int
	}
	if err := app.DB().NewQuery("SELECT hour, SUM(clicks) AS clicks FROM click_overflow GROUP BY hour").All(&rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Hour] = r.Clicks
	}
	return out
}

// TestClickOverflowInBatchTransaction: the clicks counted instead of stored are written by
// the batch that holds them, adding up across batches, and vanish with a batch that fails.
func TestClickOverflowInBatchTransaction(t *testing.T) {
	app := pbatest.TempApp(t)
	hour := time.Now().UTC().Truncate(time.Hour)
	write := func(rows ...clickRow) error {
		return app.RunInTransaction(func(tx core.App) error { return writeClicks(tx, rows) })
	}
	stored := testClick(0)
	if err := write(stored, overflowClick(1, hour.Add(time.Minute)), overflowClick(2, hour.Add(59*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := write(overflowClick(3, hour.Add(time.Second)), overflowClick(4, hour.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	at := func(h time.Time) string { return h.Format("2006-01-02 15:04:05.000Z") }
	want := map[string]int{at(hour): 3, at(hour.Add(-time.Hour)): 1}
	if got := overflowCounts(t, app); len(got) != 2 || got[at(hour)] != 3 || got[at(hour.Add(-time.Hour))] != 1 {
		t.Fatalf("click_overflow %v, want %v", got, want)
	}
	if n, _ := app.CountRecords(collections.Clicks); n != 1 {
		t.Fatalf("%d click rows, want only the one not past the ceiling", n)
	}
	// The counts are written in the batch's transaction: a batch that fails, after them or at a
	// click (a duplicate id), leaves none behind.
	err := app.RunInTransaction(func(tx core.App) error {
		if err := writeClicks(tx, []clickRow{overflowClick(5, hour)}); err != nil {
			return err
		}
		return errors.New("the batch fails after its counts")
	})
	if err == nil {
		t.Fatal("the failing batch committed")
	}
	if err := write(overflowClick(5, hour), stored); err == nil {
		t.Fatal("a batch repeating a click id committed")
	}
	if got := overflowCounts(t, app); got[at(hour)] != 3 {
		t.Fatalf("a failed batch's count was kept: %v", got)
	}
	// Only a flagged click is ever counted instead of stored.
	unflagged := overflowClick(6, hour)
	unflagged.Flag = ""
	if err := write(unflagged); err != nil {
		t.Fatal(err)
	}
	if n, _ := app.CountRecords(collections.Clicks); n != 2 || overflowCounts(t, app)[at(hour)] != 3 {
		t.Fatal("an unflagged click marked Overflow was not stored as a row")
	}
}

// TestConfigClickIPCeiling: PBA_CLICK_IP_CEILING defaults to DefaultClickIPCeiling, 0 turns
// the ceiling off, and a value that is not a non-negative number stops the start.
func TestConfigClickIPCeiling(t *testing.T) {
	for env, want := range map[string]int{"": DefaultClickIPCeiling, "0": 0, " 250 ": 250, "-1": -1, "many": -1} {
		t.Setenv("PBA_CLICK_IP_CEILING", env)
		cfg := ConfigFromEnv()
		if cfg.ClickIPCeiling != want {
			t.Errorf("PBA_CLICK_IP_CEILING=%q: %d, want %d", env, cfg.ClickIPCeiling, want)
		}
		if err := cfg.validate(); (err != nil) != (want < 0) {
			t.Errorf("PBA_CLICK_IP_CEILING=%q: validate %v", env, err)
		}
	}
}
