package scaleout_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
)

// TestPrimaryResnapshotRepairs: changes no record hook of this process saw (another process
// on the same database: `pbaffiliate import`, `demo`; written here with SQL) reach the edge by
// the periodic re-snapshot, which afterwards finds nothing to change.
func TestPrimaryResnapshotRepairs(t *testing.T) {
	c := newClusterWith(t, fx.Config, scaleout.Options{Embedded: "127.0.0.1:0", Resnapshot: 20 * time.Millisecond})
	aff, err := c.app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	code := aff.GetString(collections.FieldCode)
	gone, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, params dbx.Params) {
		t.Helper()
		if _, err := c.app.DB().NewQuery(sql).Bind(params).Execute(); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO links (id, code, affiliate, program, destination) VALUES ('sqlwrittenlink1', 'written-by-sql', {:a}, {:p}, 'https://example.com/sql')`,
		dbx.Params{"a": fx.A.ID, "p": fx.ProgramP})
	exec(`UPDATE affiliates SET status = 'suspended' WHERE id = {:a}`, dbx.Params{"a": fx.B.ID})
	exec(`DELETE FROM links WHERE id = {:l}`, dbx.Params{"l": fx.RowsA.Link})
	b, err := c.app.FindRecordById(collections.Affiliates, fx.B.ID)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		written, suspended := c.get("/r/written-by-sql"), c.get("/r/"+b.GetString(collections.FieldCode))
		deleted := c.get("/r/" + gone.GetString(collections.FieldCode))
		if written.StatusCode == http.StatusFound && cookie(written, "pba_click") != nil &&
			suspended.StatusCode == http.StatusFound && cookie(suspended, "pba_click") == nil && deleted.StatusCode == http.StatusNotFound {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("not repaired in 3s: new link %d, suspended affiliate %d, deleted link %d", written.StatusCode, suspended.StatusCode, deleted.StatusCode)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("repaired in %v (interval 20ms)", time.Since(start))
	if res := c.get("/r/" + code); res.StatusCode != http.StatusFound {
		t.Fatalf("an unchanged code: %d", res.StatusCode)
	}
	if n, err := c.primary.Resnapshot(context.Background()); err != nil || n != 0 {
		t.Fatalf("a re-snapshot after the repair changed %d keys (%v), want 0", n, err)
	}
}

// BenchmarkResnapshot: the periodic re-snapshot's cost with 10,000 links: "unchanged" is the
// steady state (read the catalog, put nothing), "all-changed" puts every link (a start into an
// empty bucket costs about this), in the same run.
func BenchmarkResnapshot(b *testing.B) {
	c := newClusterWith(b, fx.Config, scaleout.Options{Embedded: "127.0.0.1:0"})
	const links = 10_000
	err := c.app.RunInTransaction(func(tx core.App) error {
		for i := range links {
			_, err := tx.DB().NewQuery(`INSERT INTO links (id, code, affiliate, program, destination) VALUES ({:id}, {:code}, {:a}, {:p}, 'https://example.com/x')`).
				Bind(dbx.Params{"id": fmt.Sprintf("benchlink%06d", i), "code": fmt.Sprintf("bench-%06d", i), "a": fx.A.ID, "p": fx.ProgramP}).Execute()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.primary.Resnapshot(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if n, err := c.primary.Resnapshot(ctx); err != nil || n != 0 {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("all-changed", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			if _, err := c.app.DB().NewQuery(`UPDATE links SET sub_id = {:s} WHERE id LIKE 'benchlink%'`).Bind(dbx.Params{"s": fmt.Sprint(i)}).Execute(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if n, err := c.primary.Resnapshot(ctx); err != nil || n < links {
				b.Fatal(n, err)
			}
		}
	})
}

// TestResnapshotNeverPutsAnOlderValue: saves racing with re-snapshots (which read the
// database without holding up saves) leave the bucket with each record's last value.
func TestResnapshotNeverPutsAnOlderValue(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if _, err := c.primary.Resnapshot(ctx); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	aff, err := c.app.FindRecordById(collections.Affiliates, fx.B.ID)
	if err != nil {
		t.Fatal(err)
	}
	statuses := []string{collections.AffiliateSuspended, collections.AffiliateApproved}
	for i := range 40 {
		aff.Set(collections.FieldStatus, statuses[i%2])
		if err := c.app.Save(aff); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	flush, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := c.primary.Flush(flush); err != nil {
		t.Fatal(err)
	}
	kv, err := c.js.KeyValue(context.Background(), scaleout.CodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), edgewire.AffiliateKey(fx.B.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(entry.Value()), `"status":"`+collections.AffiliateApproved+`"`) {
		t.Fatalf("the bucket holds %s after the last save made it approved", entry.Value())
	}
}
