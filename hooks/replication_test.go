package hooks

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// A replica URL that cannot work stops the server at start, not at the first backup.
func TestReplicaURLCheckedAtStart(t *testing.T) {
	app := pbatest.TempApp(t)
	for _, bad := range []string{"ftp://host/path", "not a url", "/no/scheme"} {
		if err := Register(app, nil, Config{ReplicaURL: bad}); err == nil || !strings.Contains(err.Error(), "PBA_REPLICA_URL") {
			t.Errorf("PBA_REPLICA_URL=%q: %v, want an error naming the variable", bad, err)
		}
	}
	if DBConnect(Config{}) != nil {
		t.Error("without replication PocketBase's own connection must be used")
	}
}

// restore writes into an empty dir only, and says what it needs.
func TestRestoreRefusesExistingDatabase(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, dataDBName), []byte("live"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := restoreReplica(t.Context(), "file://"+t.TempDir(), dir, time.Time{}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("restore over a database: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, dataDBName)); string(b) != "live" {
		t.Fatal("restore touched the existing database")
	}
	if _, err := restoreReplica(t.Context(), "", t.TempDir(), time.Time{}); err == nil {
		t.Fatal("restore without a replica URL")
	}
	if _, err := restoreReplica(t.Context(), "file://"+t.TempDir(), filepath.Join(t.TempDir(), "new"), time.Time{}); err == nil {
		t.Fatal("restore from an empty replica succeeded")
	}
}

func TestRedactReplicaURL(t *testing.T) {
	for in, want := range map[string]string{
		"sftp://ops:s3cret@backup.example.com/pba": "sftp://ops@backup.example.com/pba",
		"s3://bucket/pba?endpoint=https://x":       "s3://bucket/pba?endpoint=https://x",
		"file:///var/backups/pba":                  "file:///var/backups/pba",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Writes made while replication is not holding its read transaction (the second after it
// starts, a pause) are shipped when it resumes, whatever else the app writes meanwhile. Before
// PocketBase's own WAL checkpoints were turned off with replication on, enough writes in such a
// window made PocketBase checkpoint the whole WAL and the next write restart it; Litestream,
// finding its last frame intact, read on from the new WAL's start and silently skipped the
// transactions in between. The restored database then failed SQLite's integrity check ("Page
// N: never used", wrong index entry counts), as the restore drill found in CI.
func TestReplicationShipsWritesMadeWhileItWasAway(t *testing.T) {
	dir, replicaDir := t.TempDir(), t.TempDir()
	replicaURL := "file://" + replicaDir
	cfg := Config{ReplicaURL: replicaURL, ReplicaSyncInterval: time.Hour} // syncs are driven below
	app := core.NewBaseApp(core.BaseAppConfig{DataDir: dir, DBConnect: DBConnect(cfg), DataMaxOpenConns: 4, DataMaxIdleConns: 2})
	if err := app.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	defer app.ResetBootstrapState()
	// Writes go through both of PocketBase's connections to data.db (the write connection and
	// the read pool, which a query may write through too), one after the other.
	conns, written := []dbx.Builder{app.NonconcurrentDB(), app.ConcurrentDB()}, 0
	exec := func(sql string, params dbx.Params) {
		t.Helper()
		written++
		if _, err := conns[written%2].NewQuery(sql).Bind(params).Execute(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE TABLE sales (id INTEGER PRIMARY KEY, ref TEXT NOT NULL, body BLOB)", nil)
	exec("CREATE UNIQUE INDEX sales_ref ON sales (ref)", nil)
	insert := func(ref string, size int) {
		exec("INSERT INTO sales (ref, body) VALUES ({:ref}, zeroblob({:size}))", dbx.Params{"ref": ref, "size": size})
	}

	r := &replication{app: app, url: replicaURL, interval: cfg.ReplicaSyncInterval}
	sync := func() {
		t.Helper()
		if err := r.store.DBs()[0].SyncAndWait(t.Context()); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		insert(fmt.Sprintf("before-%d", i), 100)
	}
	sync()
	// The day's snapshot is taken (the next start takes none, so the restore below replays the
	// frames shipped after it).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if snaps, _ := filepath.Glob(filepath.Join(replicaDir, "ltx", strconv.Itoa(litestream.SnapshotLevel), "*.ltx")); len(snaps) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot in the replica")
		}
	}
	r.stop()

	// Litestream is away: one sale, then bigger ones up to nearly a thousand WAL pages (where
	// SQLite's default autocheckpoint runs), then small ones until the WAL restarts (as it did
	// before the fix) or well past that point.
	wal := filepath.Join(dir, dataDBName+"-wal")
	walHeader := func() (salt string, size int64) {
		t.Helper()
		f, err := os.Open(wal)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		hdr := make([]byte, 32)
		fi, err := f.Stat()
		if _, rerr := f.ReadAt(hdr, 0); err != nil || rerr != nil {
			t.Fatalf("read the WAL: %v %v", err, rerr)
		}
		return string(hdr[16:24]), fi.Size()
	}
	salt, _ := walHeader()
	insert("while-away", 100)
	want := 40 + 1
	for _, size := walHeader(); size < 900*(4096+24); _, size = walHeader() {
		insert(fmt.Sprintf("bulk-%d", want), 4*4096)
		want++
	}
	for range 150 { // ~3 pages each: the WAL passes 1,000 pages well before the end
		insert(fmt.Sprintf("small-%d", want), 100)
		want++
		if now, _ := walHeader(); now != salt {
			t.Logf("the WAL restarted while replication was away, after %d sales", want)
			break
		}
	}

	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	sync()
	r.stop()

	restored := filepath.Join(t.TempDir(), "new")
	if _, err := restoreReplica(t.Context(), replicaURL, restored, time.Time{}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	rdb, err := dbx.Open("sqlite", filepath.Join(restored, dataDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var n int
	if err := rdb.NewQuery("SELECT COUNT(*) FROM sales").Row(&n); err != nil || n != want {
		t.Fatalf("restored %d sales (%v), want %d", n, err, want)
	}
}
