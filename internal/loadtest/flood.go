package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The flood (`-flood 5s`): one IP posts track.js clicks as fast as it can, each carrying more
// attacker-chosen text than any field keeps (user agent, referrer, sub), and the table says
// how much disk that cost: the growth of the data dir, measured on closed databases (WAL
// checkpointed), and the rows stored. It runs the server twice on fresh data, with the per-IP
// ceiling off (PBA_CLICK_IP_CEILING=0: every click a row, as before the ceiling existed) and
// with the default ceiling.

// floodText is the attacker's text per click: more than the caps keep of each field.
var floodText = struct{ userAgent, referrer, sub string }{
	userAgent: "Mozilla/5.0 (flood) " + strings.Repeat("u", 700),
	referrer:  "https://flood.test/" + strings.Repeat("r", 2200),
	sub:       strings.Repeat("s", 150),
}

// floodResult is one run of the flood.
type floodResult struct {
	name     string
	byStatus map[int]int64
	rows     int64 // click rows stored
	counted  int64 // clicks counted in click_overflow instead
	aggRows  int64 // click_overflow rows holding them
	dataMB   float64
	auxMB    float64 // auxiliary.db (PocketBase's logs)
}

func runFlood(bin string, d time.Duration, conns int) error {
	work, err := os.MkdirTemp("", "pba_flood_")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if bin == "" {
		if bin, err = buildServer(work); err != nil {
			return err
		}
	}
	var results []floodResult
	for _, sc := range []struct {
		name string
		env  []string
	}{
		{"ceiling off (0)", []string{"PBA_CLICK_IP_CEILING=0"}},
		{"default ceiling", []string{"PBA_CLICK_IP_CEILING="}},
	} {
		fmt.Printf("flood, %s: one IP, %d connections, %s…\n", sc.name, conns, d)
		r, err := flood(bin, filepath.Join(work, fmt.Sprint(len(results))), sc.env, d, conns)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		r.name = sc.name
		results = append(results, r)
	}
	printFlood(results, d)
	return nil
}

// flood starts a server on a fresh demo database in dir, measures the data dir, floods
// POST /api/pba/clicks for d, stops the server and measures again.
func flood(bin, dir string, env []string, d time.Duration, conns int) (floodResult, error) {
	var r floodResult
	srv, err := startServer(bin, dir, env)
	if err != nil {
		return r, err
	}
	srv.stop() // sizes are compared on closed databases: the WAL is checkpointed into the file
	data0, aux0 := dirSize(dir, "data.db"), dirSize(dir, "auxiliary.db")
	if srv, err = startServer(bin, dir, env); err != nil {
		return r, err
	}
	body, _ := json.Marshal(map[string]string{"code": linkCode, "sub": floodText.sub, "referrer": floodText.referrer})
	client := noRedirectClient()
	var mu sync.Mutex
	r.byStatus = map[int]int64{}
	var sent atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts := map[int]int64{}
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, srv.base+"/api/pba/clicks", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("User-Agent", floodText.userAgent)
				res, err := client.Do(req)
				if err != nil {
					counts[0]++
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				counts[res.StatusCode]++
				sent.Add(1)
			}
			mu.Lock()
			for s, n := range counts {
				r.byStatus[s] += n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	time.Sleep(1500 * time.Millisecond) // background writes (PocketBase's log batches) land
	if r.rows, err = srv.countClicks(); err != nil {
		srv.stop()
		return r, err
	}
	// A binary older than the ceiling has no click_overflow: nothing counted there.
	_ = srv.query("SELECT IFNULL(SUM(clicks), 0), COUNT(*) FROM click_overflow").Scan(&r.counted, &r.aggRows)
	srv.stop()
	r.dataMB = mb(dirSize(dir, "data.db") - data0)
	r.auxMB = mb(dirSize(dir, "auxiliary.db") - aux0)
	return r, nil
}

// dirSize is the size of a database in dir with its -wal and -shm files.
func dirSize(dir, db string) int64 {
	var n int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(filepath.Join(dir, db+suffix)); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func printFlood(rs []floodResult, d time.Duration) {
	fmt.Println()
	fmt.Printf("| %-16s | %-26s | %9s | %16s | %11s | %11s |\n", "scenario", "answers", "rows", "counted (in rows)", "data.db MB", "logs MB")
	fmt.Println("|------------------|----------------------------|-----------|-------------------|-------------|-------------|")
	for _, r := range rs {
		statuses := make([]int, 0, len(r.byStatus))
		for s := range r.byStatus {
			statuses = append(statuses, s)
		}
		sort.Ints(statuses)
		var parts []string
		for _, s := range statuses {
			label := fmt.Sprint(s)
			if s == 0 {
				label = "err"
			}
			parts = append(parts, fmt.Sprintf("%s×%d", label, r.byStatus[s]))
		}
		counted := fmt.Sprintf("%d (%d)", r.counted, r.aggRows)
		fmt.Printf("| %-16s | %-26s | %9d | %17s | %11.1f | %11.1f |\n", r.name, strings.Join(parts, " "), r.rows, counted, r.dataMB, r.auxMB)
	}
	fmt.Printf("\n%s of POST /api/pba/clicks from 127.0.0.1, %d+%d+%d bytes of user agent, referrer and sub a request.\n",
		d, len(floodText.userAgent), len(floodText.referrer), len(floodText.sub))
	if len(rs) == 2 && rs[1].dataMB > 0 {
		fmt.Printf("data.db growth, ceiling off / default ceiling = %.1fx; rows %.1fx\n", rs[0].dataMB/rs[1].dataMB, float64(rs[0].rows)/float64(max(rs[1].rows, 1)))
	}
}
