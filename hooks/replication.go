package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/spf13/cobra"

	// Replica kinds PBA_REPLICA_URL may name: file:///path, s3://bucket/path (AWS or any
	// S3-compatible store, credentials from the standard AWS_* variables) and sftp://.
	_ "github.com/benbjohnson/litestream/file"
	_ "github.com/benbjohnson/litestream/s3"
	_ "github.com/benbjohnson/litestream/sftp"
)

// DefaultReplicaSyncInterval is how often replication reads new WAL frames and ships them:
// the replication lag (RPO) is about two of these (docs/operations.md).
const DefaultReplicaSyncInterval = time.Second

// dataDBName is the database pbaffiliate replicates: the ledger, the facts and the settings.
// auxiliary.db holds PocketBase's request logs only and is recreated empty when missing.
const dataDBName = "data.db"

// replication streams data.db to a Litestream replica while the server runs, so losing the
// machine loses at most the last seconds of writes.
//
// Litestream runs in the process, on the same modernc SQLite library as PocketBase (a second
// driver in one process would break SQLite's POSIX locks). It holds a read transaction open
// so no checkpoint restarts the WAL before it has copied the frames, and it is the only one to
// checkpoint data.db (PASSIVE, under its own write lock; DBConnect turns PocketBase's automatic
// checkpoints off). PocketBase's own daily TRUNCATE checkpoint of data.db would wait for that
// read transaction while holding the write lock (up to the busy timeout, 10 s, every night), so
// with replication on the daily job keeps only its other work.
type replication struct {
	app      core.App
	url      string
	interval time.Duration

	mu    sync.Mutex
	store *litestream.Store // nil while stopped
}

func registerReplication(app core.App, cfg Config) (*replication, error) {
	if cfg.ReplicaURL == "" {
		return nil, nil
	}
	if _, err := litestream.NewReplicaClientFromURL(cfg.ReplicaURL); err != nil {
		return nil, fmt.Errorf("PBA_REPLICA_URL: %w", err)
	}
	r := &replication{app: app, url: cfg.ReplicaURL, interval: cfg.ReplicaSyncInterval}
	if r.interval <= 0 {
		r.interval = DefaultReplicaSyncInterval
	}
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		if err := r.start(); err != nil {
			return fmt.Errorf("replication: %w", err)
		}
		r.replaceDailyCheckpoint()
		return se.Next()
	})
	// Stopped after every other terminate handler (and PocketBase closing its databases), so
	// the last sync ships what the click writer and the other workers flushed on the way out.
	app.OnTerminate().BindFunc(func(e *core.TerminateEvent) error {
		err := e.Next()
		r.stop()
		return err
	})
	app.OnBackupCreate().BindFunc(func(e *core.BackupEvent) error {
		// Litestream's working files are not part of a backup (and are large). Replication goes
		// on during the backup: PocketBase archives pb_data inside a transaction of the write
		// connection, which begins IMMEDIATE (DBConnect), so the TRUNCATE checkpoint it runs
		// first fails at once (SQLITE_LOCKED, ignored by PocketBase) and the archive holds data.db
		// with its WAL, which no one can change while the transaction holds the write lock.
		e.Exclude = append(e.Exclude, "."+dataDBName+litestream.MetaDirSuffix)
		return e.Next()
	})
	return r, nil
}

func (r *replication) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store != nil {
		return nil
	}
	client, err := litestream.NewReplicaClientFromURL(r.url)
	if err != nil {
		return err
	}
	logger := r.app.Logger().With("component", "litestream")
	db := litestream.NewDB(filepath.Join(r.app.DataDir(), dataDBName))
	db.MonitorInterval = r.interval
	replica := litestream.NewReplicaWithClient(db, client)
	replica.SyncInterval = r.interval
	db.Replica = replica

	store := litestream.NewStore([]*litestream.DB{db}, litestream.DefaultCompactionLevels)
	store.Logger = logger
	db.SetLogger(logger) // after NewStore, which gives its databases the default logger
	if err := store.Open(context.Background()); err != nil {
		return fmt.Errorf("open %s: %w", r.url, err)
	}
	r.store = store
	r.app.Logger().Info("replicating data.db", "replica", redactURL(r.url), "interval", r.interval.String())
	return nil
}

func (r *replication) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.store.Close(ctx); err != nil {
		// PocketBase's logger is closed by now.
		fmt.Fprintf(os.Stderr, "pbaffiliate: replication: final sync: %v\n", err)
	}
	r.store = nil
}

// replaceDailyCheckpoint keeps PocketBase's nightly __pbDBOptimize__ job without its
// TRUNCATE checkpoint of data.db, which Litestream's read transaction would make wait for the
// busy timeout with the write lock held (see replication).
func (r *replication) replaceDailyCheckpoint() {
	const job = "__pbDBOptimize__"
	for _, j := range r.app.Cron().Jobs() {
		if j.Id() != job {
			continue
		}
		_ = r.app.Cron().Add(job, j.Expression(), func() {
			if _, err := r.app.AuxNonconcurrentDB().NewQuery("PRAGMA wal_checkpoint(TRUNCATE)").Execute(); err != nil {
				r.app.Logger().Warn("periodic checkpoint of the auxiliary DB", "error", err)
			}
			if _, err := r.app.NonconcurrentDB().NewQuery("PRAGMA optimize").Execute(); err != nil {
				r.app.Logger().Warn("periodic PRAGMA optimize", "error", err)
			}
		})
	}
}

// DBConnect is the connection function of PocketBase's databases for this configuration (nil:
// PocketBase's own). With replication on, two things change on data.db's connections:
//
//   - None checkpoints the WAL (wal_autocheckpoint 0): Litestream is its only checkpointer.
//     SQLite's default checkpoints a WAL of 1,000 pages after a commit; while Litestream holds
//     no read transaction (the second after it starts, its shutdown, a CLI command) that copies
//     the whole WAL into data.db and the next write restarts the WAL from its start. Litestream,
//     finding the last frame it shipped still in place, reads on from the new start and skips
//     the transactions committed in between without a word: the replica then restores a
//     database that fails SQLite's integrity check (wrong index entry counts, "Page N: never
//     used"; TestReplicationShipsWritesMadeWhileItWasAway). Without PocketBase's checkpoints the
//     WAL only restarts under Litestream's eye, after it has shipped every frame.
//   - The write connection begins its transactions IMMEDIATE. PocketBase begins them DEFERRED:
//     a transaction that reads before it writes holds a snapshot, and when another writer
//     (Litestream's bookkeeping after each checkpoint) commits in between, its first write fails
//     with SQLITE_BUSY_SNAPSHOT, which PocketBase's lock retry cannot cure inside the transaction
//     (it retried for 12 s and every write waited behind it). IMMEDIATE takes the write lock at
//     BEGIN, waiting in the busy timeout like any other write. The read pool stays DEFERRED: a
//     read transaction must not wait for the write lock (the board's snapshot opens one while
//     holding the write connection).
//
// PocketBase opens data.db twice, the read pool first and the write connection second
// (core.BaseApp.initDataDB), on every bootstrap.
func DBConnect(cfg Config) func(dbPath string) (*dbx.DB, error) {
	if cfg.ReplicaURL == "" {
		return nil
	}
	var mu sync.Mutex
	opened := map[string]int{}
	return func(dbPath string) (*dbx.DB, error) {
		if filepath.Base(dbPath) != dataDBName {
			return core.DefaultDBConnect(dbPath)
		}
		mu.Lock()
		opened[dbPath]++
		writer := opened[dbPath]%2 == 0
		mu.Unlock()
		// core.DefaultDBConnect's pragmas, plus ours.
		dsn := dbPath + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=journal_size_limit(200000000)" +
			"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)&_pragma=cache_size(-32000)" +
			"&_pragma=wal_autocheckpoint(0)"
		if writer {
			dsn += "&_txlock=immediate"
		}
		return dbx.Open("sqlite", dsn)
	}
}

// redactURL drops a password from a replica URL before it is logged (sftp://user:pass@host).
func redactURL(raw string) string {
	scheme, host, path, _, user, err := litestream.ParseReplicaURLWithQuery(raw)
	if err != nil || user == nil {
		return raw
	}
	return scheme + "://" + user.Username() + "@" + host + "/" + path
}

// NewRestoreCommand is `pbaffiliate restore --replica URL --to DIR`: it writes the newest
// state of the replica (or the state at --timestamp) into DIR/data.db on a new machine.
// main runs it before PocketBase starts, so it never creates or migrates a data dir itself.
func NewRestoreCommand() *cobra.Command {
	var replicaURL, to, at string
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore the data dir's database from a Litestream replica (PBA_REPLICA_URL)",
		Long: "Restore writes the replicated data.db into a new data dir. Start the server on that dir\n" +
			"afterwards (serve --dir DIR). The dir must not hold a data.db yet.",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if replicaURL == "" {
				replicaURL = os.Getenv("PBA_REPLICA_URL")
			}
			var ts time.Time
			if at != "" {
				var err error
				if ts, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--timestamp: %w", err)
				}
			}
			updated, err := restoreReplica(cmd.Context(), replicaURL, to, ts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restore: %s written from %s (its state of %s)\n",
				filepath.Join(to, dataDBName), redactURL(replicaURL), updated.UTC().Format(time.RFC3339Nano))
			for _, secret := range []string{ipSaltFile, messagingSecretFile} {
				if _, err := os.Stat(filepath.Join(to, secret)); err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "restore: copy %s from the old data dir or your secrets store into %s (see docs/operations.md)\n", secret, to)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&replicaURL, "replica", "", "replica URL (default $PBA_REPLICA_URL)")
	cmd.Flags().StringVar(&to, "to", "", "data dir to restore into (created if missing)")
	cmd.Flags().StringVar(&at, "timestamp", "", "restore the state at this RFC 3339 time instead of the newest")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// restoreReplica writes the replica's database into dir/data.db and returns when the replica
// last received the state it restored.
func restoreReplica(ctx context.Context, replicaURL, dir string, at time.Time) (time.Time, error) {
	if replicaURL == "" {
		return time.Time{}, errors.New("--replica (or PBA_REPLICA_URL) is required")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	target := filepath.Join(dir, dataDBName)
	if _, err := os.Stat(target); err == nil {
		return time.Time{}, fmt.Errorf("%s exists: restore into an empty data dir", target)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return time.Time{}, fmt.Errorf("create %s: %w", dir, err)
	}
	client, err := litestream.NewReplicaClientFromURL(replicaURL)
	if err != nil {
		return time.Time{}, fmt.Errorf("replica: %w", err)
	}
	replica := litestream.NewReplicaWithClient(nil, client)
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = target
	opt.Timestamp = at
	opt.IntegrityCheck = litestream.IntegrityCheckNone // checkRestored checks, with the full check
	updated, err := replica.CalcRestoreTarget(ctx, opt)
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s: %w", redactURL(replicaURL), err)
	}
	if err := replica.Restore(ctx, opt); err != nil {
		return time.Time{}, fmt.Errorf("restore from %s: %w", redactURL(replicaURL), err)
	}
	if err := checkRestored(target); err != nil {
		_ = os.Remove(target)
		return time.Time{}, fmt.Errorf("restore from %s: %w", redactURL(replicaURL), err)
	}
	return updated, nil
}

// checkRestored runs SQLite's integrity_check on a restored database: any finding fails the
// restore. A replica that skipped transactions restores pages of different moments side by
// side, which shows as wrong index entry counts or orphan pages ("Page N: never used"); no
// finding is safe to mend, since each means writes are missing.
func checkRestored(path string) error {
	db, err := dbx.Open("sqlite", path)
	if err != nil {
		return fmt.Errorf("open restored database: %w", err)
	}
	defer db.Close()
	var rows []string
	if err := db.NewQuery("PRAGMA integrity_check").Column(&rows); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(rows) != 1 || rows[0] != "ok" {
		return fmt.Errorf("integrity check failed: %s", strings.Join(rows, "; "))
	}
	return nil
}
