package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/soak"
)

// TestRestoreDrill is the restore drill of docs/operations.md: under a load of sales through
// the conversions API (and a PocketBase backup in the middle, taken while replication goes on),
// the server replicates to a local file replica; then the machine is lost (SIGKILL, data dir
// deleted), the replica is restored into a fresh dir and the server started there. The ledger
// and the rollups check out, and every sale answered more than the replication bound before
// the loss is there. The lag measured (the age at the loss of the oldest sale that did not
// make it) is logged: it is the RPO reported in docs/operations.md.
func TestRestoreDrill(t *testing.T) {
	root := t.TempDir()
	dir, replica, restored := filepath.Join(root, "pb_data"), filepath.Join(root, "replica"), filepath.Join(root, "new_machine")
	if out, err := runProgram(t, "demo --days=0 --dir="+dir).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	world, err := soak.ReadWorld(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &soak.Server{Dir: dir, Command: drillCommand(t), Env: []string{"PBA_REPLICA_URL=file://" + replica}}
	admin := srv.MustSuperuser(t)
	srv.MustStart(t)
	defer srv.Kill()
	if err := admin.ExcludeLoopback(); err != nil {
		t.Fatal(err)
	}

	// Sales from 4 senders; each answered sale is kept with the time of its answer.
	type sale struct {
		id string
		at time.Time
	}
	var (
		mu       sync.Mutex
		answered []sale
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	sender := soak.NewSales(srv.URL(), world)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("drill-%d-%d", g, i)
				if code, err := sender.Send(id, world.Codes[i%len(world.Codes)], int64(1000+i)); err == nil && (code == 201 || code == 200) {
					mu.Lock()
					answered = append(answered, sale{id, time.Now()})
					mu.Unlock()
				}
			}
		}()
	}
	// The commission engine runs alongside, so the ledger restored holds commissions too.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				_, _ = admin.Do(http.MethodPost, "/api/pba/commissions/run", nil, nil)
			}
		}
	}()
	time.Sleep(3 * time.Second)
	backupStart := time.Now()
	if code, err := admin.Do(http.MethodPost, "/api/backups", map[string]any{"name": "drill.zip"}, nil); err != nil || code != 204 {
		t.Fatalf("backup during replication: %d %v", code, err)
	}
	backupTook := time.Since(backupStart)
	time.Sleep(5 * time.Second)

	// The machine is lost: the process dies and its disk with it.
	lostAt := time.Now()
	if err := srv.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	out, err := runProgram(t, fmt.Sprintf("restore --replica file://%s --to %s", replica, restored)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "data.db written from") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(restored, "auxiliary.db")); err == nil {
		t.Fatal("restore wrote an auxiliary.db; it only restores data.db")
	}

	present := map[string]bool{}
	db, err := sql.Open("sqlite", filepath.Join(restored, "data.db"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SELECT external_id FROM conversions WHERE external_id LIKE 'drill-%'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	rows.Close()
	db.Close()

	// RPO: the age at the loss of the oldest answered sale that is missing.
	sort.Slice(answered, func(i, j int) bool { return answered[i].at.Before(answered[j].at) })
	var lag time.Duration
	lost := 0
	for _, s := range answered {
		if !present[s.id] {
			lost++
			if lag == 0 {
				lag = lostAt.Sub(s.at)
			}
		}
	}
	bound := 2*hooks.DefaultReplicaSyncInterval + time.Second
	if len(answered) < 20 || lag > bound { // under -race on 2 busy cores ~100 sales arrive
		t.Fatalf("%d sales answered, %d missing after the restore; the oldest missing was answered %v before the loss (bound %v)",
			len(answered), lost, lag, bound)
	}
	t.Logf("restore drill: %d sales answered, %d restored, %d lost; replication lag (RPO) this run %v (bound %v); backup %v; %s",
		len(answered), len(answered)-lost, lost, lag.Round(time.Millisecond), bound, backupTook.Round(time.Millisecond), regexp.MustCompile(`its state of [^)]*`).Find(out))

	// The new machine serves the restored ledger.
	next := &soak.Server{Dir: restored, Command: drillCommand(t)}
	admin = next.MustSuperuser(t)
	next.MustStart(t)
	defer next.Kill()
	if err := admin.LedgerOK(); err != nil {
		t.Fatal(err)
	}
	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	if problems, err := soak.RollupProblems(restored); err != nil || len(problems) > 0 {
		t.Fatalf("rollups of the restored database: %v %v", problems, err)
	}
}

// drillCommand runs this test binary as the program (TestMain).
func drillCommand(t *testing.T) func(args ...string) *exec.Cmd {
	return func(args ...string) *exec.Cmd { return runProgram(t, strings.Join(args, " ")) }
}
