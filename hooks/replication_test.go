package hooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
