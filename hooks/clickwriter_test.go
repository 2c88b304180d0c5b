package hooks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

func testClick(i int) clickRow {
	now := time.Now().UTC()
	return clickRow{ID: store.NewOrderedID(now), LinkID: "link00000000001", AffiliateID: "aff000000000001", ProgramID: "prg000000000001",
		Visitor: store.NewOrderedID(now), NewVisitor: true, IPHash: "h", Created: now, SubID: string(rune('a' + i%26))}
}

func countClicks(t testing.TB, w *clickWriter) int {
	t.Helper()
	n, err := w.app.CountRecords("clicks")
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func TestClickWriterBatches(t *testing.T) {
	app := pbatest.TempApp(t)
	var mu sync.Mutex
	var batches []int
	w := newClickWriter(app, clickWriterConfig{BatchSize: 10, MaxWait: 20 * time.Millisecond, QueueSize: 200, EnqueueTimeout: time.Second},
		func(rows []clickRow) {
			mu.Lock()
			batches = append(batches, len(rows))
			mu.Unlock()
		})
	w.start()
	defer w.stop()

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.record(context.Background(), testClick(i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countClicks(t, w); n != 100 {
		t.Fatalf("stored %d clicks, want 100", n)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, b := range batches {
		if b > 10 {
			t.Fatalf("batch of %d exceeds BatchSize 10", b)
		}
		total += b
	}
	if total != 100 || len(batches) < 10 || len(batches) > 60 {
		t.Fatalf("batches %v: want 100 rows grouped into at least 10 commits (and far fewer than one per click)", batches)
	}
}

func TestClickWriterBackPressure(t *testing.T) {
	app := pbatest.TempApp(t)
	w := newClickWriter(app, clickWriterConfig{BatchSize: 10, QueueSize: 2, EnqueueTimeout: 30 * time.Millisecond}, nil)
	// Not started yet: the queue fills up and the third click must be refused, not buffered.
	results := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { results <- w.record(context.Background(), testClick(i)) }()
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(w.queue) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the first two clicks were never queued")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := w.record(context.Background(), testClick(3)); !errors.Is(err, errQueueFull) {
		t.Fatalf("third click: %v, want errQueueFull", err)
	}
	if waited := time.Since(start); waited < 25*time.Millisecond {
		t.Fatalf("refused after %v: the caller should wait up to EnqueueTimeout for room", waited)
	}
	w.start()
	for i := 0; i < 2; i++ {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	w.stop()
	if n := countClicks(t, w); n != 2 {
		t.Fatalf("stored %d, want the 2 accepted clicks", n)
	}
}

func TestClickWriterDrainsOnStop(t *testing.T) {
	app := pbatest.TempApp(t)
	w := newClickWriter(app, clickWriterConfig{BatchSize: 1000, MaxWait: time.Hour, QueueSize: 100, EnqueueTimeout: time.Second}, nil)
	w.start()
	var wg sync.WaitGroup
	var failed sync.Map
	const n = batchTarget - 1 // below the batch target, the writer holds them for MaxWait
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.record(context.Background(), testClick(i)); err != nil {
				failed.Store(i, err)
			}
		}()
	}
	// With an hour-long batch wait nothing commits until stop drains the held batch.
	time.Sleep(100 * time.Millisecond)
	if c := countClicks(t, w); c != 0 {
		t.Fatalf("%d clicks committed before stop; the test needs them held", c)
	}
	w.stop()
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("click %v failed: %v", k, v); return true })
	if c := countClicks(t, w); c != n {
		t.Fatalf("stored %d after drain, want %d", c, n)
	}
	if err := w.record(context.Background(), testClick(0)); !errors.Is(err, errWriterStopped) {
		t.Fatalf("after stop: %v, want errWriterStopped", err)
	}
}

func TestNewClickIDSortsByTime(t *testing.T) {
	a := store.NewOrderedID(time.Unix(1_800_000_000, 0))
	b := store.NewOrderedID(time.Unix(1_800_000_000, 1000))
	if len(a) != 15 || len(b) != 15 || !(a < b) {
		t.Fatalf("ids %q, %q: want 15 characters, ordered by time", a, b)
	}
	if !ValidVisitor(a) {
		t.Fatalf("%q must be a valid visitor id too", a)
	}
	// Ids handed out for one instant still differ and keep their order.
	var g store.OrderedIDs
	now := time.Unix(1_800_000_000, 0)
	prev := ""
	for i := 0; i < 1000; i++ {
		id := g.Next(now)
		if !(id > prev) || len(id) != 15 {
			t.Fatalf("id %d %q after %q: want strictly increasing 15-character ids", i, id, prev)
		}
		prev = id
	}
	if later := g.Next(now.Add(time.Second)); later[:10] != store.NewOrderedID(now.Add(time.Second))[:10] {
		t.Fatalf("once the clock passes the handed-out instants, ids follow it again: %q", later)
	}
}

// TestWriteClicksChunks writes batches of every size up to three full chunks: each row is
// stored once, with its own values, whichever of the 8/4/2/1-row statements carried it.
func TestWriteClicksChunks(t *testing.T) {
	app := pbatest.TempApp(t)
	var ids store.OrderedIDs
	total := 0
	for n := 0; n <= 3*clickChunks[0]+clickChunks[0]-1; n++ {
		rows := make([]clickRow, n)
		for i := range rows {
			rows[i] = testClick(i)
			rows[i].ID, rows[i].Visitor = ids.Next(time.Now()), ids.Next(time.Now())
			rows[i].SubID = fmt.Sprintf("n%d-r%d", n, i)
		}
		if err := app.RunInTransaction(func(tx core.App) error { return writeClicks(tx, rows) }); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
		total += n
		for i, r := range rows {
			var sub string
			var unique bool
			err := app.DB().NewQuery("SELECT sub_id, [[unique]] FROM clicks WHERE id = {:id}").
				Bind(dbx.Params{"id": r.ID}).Row(&sub, &unique)
			if err != nil || sub != r.SubID || !unique {
				t.Fatalf("batch of %d, row %d: sub %q unique %v (%v), want %q and unique", n, i, sub, unique, err, r.SubID)
			}
		}
	}
	if c, err := app.CountRecords("clicks"); err != nil || int(c) != total {
		t.Fatalf("stored %d clicks (%v), want %d", c, err, total)
	}
}

// TestWriteClicksFailureLeavesNothing makes one row of a batch clash with a stored click,
// in a full chunk and in the last few rows: the batch fails as a whole, none of its rows is
// stored, its stats are not counted, and the connection is usable for the next batch (the
// inserts end the transaction themselves on a conflict).
func TestWriteClicksFailureLeavesNothing(t *testing.T) {
	app := pbatest.TempApp(t)
	var ids store.OrderedIDs
	batch := func(n int) []clickRow {
		rows := make([]clickRow, n)
		for i := range rows {
			rows[i] = testClick(i)
			rows[i].ID, rows[i].Visitor = ids.Next(time.Now()), ids.Next(time.Now())
		}
		return rows
	}
	write := func(rows []clickRow) error {
		return app.RunInTransaction(func(tx core.App) error { return writeClicks(tx, rows) })
	}
	stored := batch(1)
	if err := write(stored); err != nil {
		t.Fatal(err)
	}
	for _, clash := range []int{3, 9} { // inside the 8-row statement; inside the 1-row tail (8+2+1)
		rows := batch(11)
		rows[clash].ID = stored[0].ID
		if err := write(rows); err == nil {
			t.Fatalf("row %d reuses a stored id: the batch must fail", clash)
		}
		if c, _ := app.CountRecords("clicks"); c != 1 {
			t.Fatalf("clash at row %d: %d clicks stored, want only the first one", clash, c)
		}
	}
	var clicks int
	if err := app.DB().NewQuery("SELECT COALESCE(SUM(clicks), 0) FROM stats_daily").Row(&clicks); err != nil || clicks != 1 {
		t.Fatalf("stats_daily counts %d clicks (%v), want 1", clicks, err)
	}
	if err := write(batch(13)); err != nil {
		t.Fatalf("the next batch after a failed one: %v", err)
	}
	if c, _ := app.CountRecords("clicks"); c != 14 {
		t.Fatalf("%d clicks stored, want 14", c)
	}
}
