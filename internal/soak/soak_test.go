package soak

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestSoak is `make soak` (SOAK=3m; CI runs SOAK=60s): the real binary, built once, takes
// clicks (/r/ and the clicks API), sales, refunds and status updates, commission and payout
// runs with Stripe transfers to a loopback fake Stripe that enforces idempotency keys, all in
// parallel, while it is SIGKILLed and restarted twice (replicating to a file replica all the
// while). Afterwards the ledger check passes, every answered click and every accepted sale is
// stored exactly once, no payout is paid twice, and stats_daily and its rollups equal the facts.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set SOAK to a duration (make soak: SOAK=3m; CI: SOAK=60s)")
	}
	root := t.TempDir()
	bin, dir := filepath.Join(root, "pbaffiliate"), filepath.Join(root, "pb_data")
	if out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	command := func(args ...string) *exec.Cmd { return exec.Command(bin, args...) }
	if out, err := command("demo", "--days=0", "--dir="+dir).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	world, err := ReadWorld(dir)
	if err != nil {
		t.Fatal(err)
	}
	fake := pbatest.NewFakeStripe(t)
	srv := &Server{Dir: dir, Command: command, Env: []string{
		"STRIPE_SECRET_KEY=" + pbatest.FakeStripeKey, "STRIPE_API_BASE=" + fake.URL, "PBA_STRIPE_RATE_LIMIT=0",
		"PBA_CLICK_IP_CEILING=0", // every click a row: each answered click must be one
		"PBA_REPLICA_URL=file://" + filepath.Join(root, "replica"),
	}}
	admin := srv.MustSuperuser(t)
	srv.MustStart(t)
	defer srv.Kill()
	must := func(code int, err error) {
		t.Helper()
		if err != nil || code != http.StatusOK {
			t.Fatalf("setup: %d %v", code, err)
		}
	}
	if err := admin.ExcludeLoopback(); err != nil {
		t.Fatal(err)
	}
	// Commissions payable at once, paid from the first cent, through Stripe.
	must(admin.Do(http.MethodPatch, "/api/collections/programs/records/"+world.Program, map[string]any{"hold_days": 0, "min_payout": 1}, nil))
	var affiliates struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	must(admin.Do(http.MethodGet, "/api/collections/affiliates/records?perPage=100&filter="+url.QueryEscape("status='approved'"), nil, &affiliates))
	for i, a := range affiliates.Items {
		must(admin.Do(http.MethodPatch, "/api/collections/affiliates/records/"+a.ID, map[string]any{
			"payout_method": "stripe", "stripe_account_id": fmt.Sprintf("acct_soak%d", i), "payouts_enabled": true}, nil))
	}

	var (
		mu       sync.Mutex
		clicks   = map[string]bool{}  // answered click ids
		sales    = map[string]int64{} // accepted external ids → amount
		saleIDs  []string
		counts   = map[string]*atomic.Int64{}
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	for _, k := range []string{"redirects", "click_api", "sales", "updates", "engine_runs", "payout_runs", "errors"} {
		counts[k] = new(atomic.Int64)
	}
	worker := func(step func(rng *rand.Rand) bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for !stopping.Load() {
				if !step(rng) {
					counts["errors"].Add(1)
					time.Sleep(50 * time.Millisecond) // the server is down or restarting
				}
			}
		}()
	}
	noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for range 2 {
		worker(func(rng *rand.Rand) bool { // /r/{code}
			res, err := noRedirect.Get(srv.URL() + "/r/" + world.Links[rng.IntN(len(world.Links))])
			if err != nil {
				return false
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			loc, _ := url.Parse(res.Header.Get("Location"))
			if res.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("pba_click") == "" {
				return false
			}
			mu.Lock()
			clicks[loc.Query().Get("pba_click")] = true
			mu.Unlock()
			counts["redirects"].Add(1)
			return true
		})
	}
	worker(func(rng *rand.Rand) bool { // the clicks API (track.js)
		var out struct {
			ClickID *string `json:"click_id"`
		}
		code, err := doJSON(noRedirect, http.MethodPost, srv.URL()+"/api/pba/clicks", "", map[string]any{"code": world.Links[rng.IntN(len(world.Links))]}, &out)
		if err != nil || code != http.StatusOK || out.ClickID == nil {
			return false
		}
		mu.Lock()
		clicks[*out.ClickID] = true
		mu.Unlock()
		counts["click_api"].Add(1)
		return true
	})
	merchant := NewSales(srv.URL(), world)
	var saleN atomic.Int64
	for range 2 {
		worker(func(rng *rand.Rand) bool { // sales
			id, amount := fmt.Sprintf("soak-%d", saleN.Add(1)), int64(1000+rng.IntN(100000))
			code, err := merchant.Send(id, world.Codes[rng.IntN(len(world.Codes))], amount)
			if err != nil || (code != http.StatusCreated && code != http.StatusOK) {
				return false
			}
			mu.Lock()
			sales[id] = amount
			saleIDs = append(saleIDs, id)
			mu.Unlock()
			counts["sales"].Add(1)
			return true
		})
	}
	worker(func(rng *rand.Rand) bool { // refunds and status updates of accepted sales
		mu.Lock()
		if len(saleIDs) == 0 {
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			return true
		}
		id := saleIDs[rng.IntN(len(saleIDs))]
		amount := sales[id]
		mu.Unlock()
		change := []map[string]any{{"refunded_amount": amount / 2}, {"status": "rejected"}, {"status": "approved"}, {"status": "refunded"}}[rng.IntN(4)]
		code, err := merchant.Update(id, change)
		if err != nil || code >= 500 {
			return false
		}
		counts["updates"].Add(1)
		return true
	})
	worker(func(*rand.Rand) bool { // the commission engine and payout runs (Stripe transfers follow each run)
		time.Sleep(500 * time.Millisecond)
		if code, err := admin.Do(http.MethodPost, "/api/pba/commissions/run", nil, nil); err != nil || code != http.StatusOK {
			return false
		}
		counts["engine_runs"].Add(1)
		if code, err := admin.Do(http.MethodPost, "/api/pba/payouts/run", nil, nil); err != nil || code != http.StatusOK {
			return false
		}
		counts["payout_runs"].Add(1)
		return true
	})

	// Two crashes: SIGKILL at a third and two thirds of the run, restarted at once.
	for i := 1; i <= 2; i++ {
		time.Sleep(d / 3)
		srv.Kill()
		srv.MustStart(t)
		t.Logf("soak: killed and restarted (%d) at %v", i, time.Duration(i)*d/3)
	}
	time.Sleep(d / 10)
	stopping.Store(true)
	wg.Wait()

	// Settle: a last engine and payout run, then the transfers of the payouts still pending.
	must(admin.Do(http.MethodPost, "/api/pba/commissions/run", nil, nil))
	must(admin.Do(http.MethodPost, "/api/pba/payouts/run", nil, nil))
	time.Sleep(3 * time.Second)
	if err := admin.LedgerOK(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	app, err := OpenApp(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer app.ResetBootstrapState()

	// Every answered click is one row.
	ids := make([]any, 0, len(clicks))
	for id := range clicks {
		ids = append(ids, id)
	}
	stored, err := StoredClicks(app, ids)
	if err != nil {
		t.Fatal(err)
	}
	if stored != len(clicks) {
		t.Fatalf("%d answered clicks, %d of them stored", len(clicks), stored)
	}

	// Every accepted sale is one row with its amount.
	var rows []struct {
		ExternalID string `db:"external_id"`
		Amount     int64  `db:"amount"`
		N          int    `db:"n"`
	}
	if err := app.DB().NewQuery("SELECT external_id, MAX(amount) AS amount, COUNT(*) AS n FROM conversions WHERE source = 'api' GROUP BY external_id").All(&rows); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, r := range rows {
		if r.N != 1 {
			t.Fatalf("sale %s stored %d times", r.ExternalID, r.N)
		}
		if amount, ok := sales[r.ExternalID]; ok && amount != r.Amount {
			t.Fatalf("sale %s stored with %d, accepted with %d", r.ExternalID, r.Amount, amount)
		}
		found[r.ExternalID] = true
	}
	for id := range sales {
		if !found[id] {
			t.Fatalf("accepted sale %s is not stored", id)
		}
	}

	// No payout paid twice: at most one transfer a payout, exactly one for each paid Stripe
	// payout, of its amount, and none for a payout that is not paid or in flight.
	var payouts []struct {
		ID     string `db:"id"`
		Status string `db:"status"`
		Amount int64  `db:"amount"`
	}
	if err := app.DB().NewQuery("SELECT id, status, amount FROM payouts WHERE method = 'stripe'").All(&payouts); err != nil {
		t.Fatal(err)
	}
	transfers := map[string][]pbatest.FakeTransfer{}
	for _, tr := range fake.Transfers() {
		transfers[tr.Payout] = append(transfers[tr.Payout], tr)
	}
	paid := 0
	statuses := map[string]int{}
	for _, p := range payouts {
		statuses[p.Status]++
		trs := transfers[p.ID]
		delete(transfers, p.ID)
		switch {
		case len(trs) > 1:
			t.Fatalf("payout %s paid %d times: %+v", p.ID, len(trs), trs)
		case p.Status == "paid" && (len(trs) != 1 || trs[0].Amount != p.Amount):
			t.Fatalf("paid payout %s (%d) has transfers %+v", p.ID, p.Amount, trs)
		case len(trs) == 1 && p.Status != "paid" && p.Status != "processing":
			t.Fatalf("payout %s is %s but was transferred", p.ID, p.Status)
		}
		if p.Status == "paid" {
			paid++
		}
	}
	if len(transfers) > 0 {
		t.Fatalf("transfers of no payout: %v", transfers)
	}

	if problems, err := store.RollupProblems(app); err != nil || len(problems) > 0 {
		t.Fatalf("rollups: %v %v\nsales of the first sale gap that changed after they were recorded:\n%s", problems, err, changedSalesOfGap(app))
	}
	if len(clicks) == 0 || len(sales) == 0 || paid == 0 {
		t.Fatalf("the soak did too little: %d clicks, %d sales, %d payouts paid", len(clicks), len(sales), paid)
	}
	var summary []string
	for _, k := range []string{"redirects", "click_api", "sales", "updates", "engine_runs", "payout_runs", "errors"} {
		summary = append(summary, fmt.Sprintf("%s=%d", k, counts[k].Load()))
	}
	t.Logf("soak %v, 2 SIGKILLs: %s; %d clicks and %d sales answered, all stored once; %d Stripe payouts %v, %d transfers, none twice; ledger and rollups consistent",
		d, strings.Join(summary, " "), len(clicks), len(sales), len(payouts), statuses, len(fake.Transfers()))
}

// changedSalesOfGap lists, for the first stats_daily key whose conversions or revenue differ
// from its sales, the sales of that key that have a history (status or refund changes): what
// a person fixing the gap needs to see.
func changedSalesOfGap(app core.App) string {
	gaps, err := store.SaleGaps(app)
	if err != nil || len(gaps) == 0 {
		return fmt.Sprint(err)
	}
	parts := strings.Split(gaps[0].Key, "/")
	var rows []struct {
		Line string `db:"line"`
	}
	err = app.DB().NewQuery(`SELECT v.external_id || ' ' || v.status || ' amount ' || v.amount || ' refunded ' || v.refunded_amount ||
			' applied ' || v.refund_applied || ': ' || IFNULL((SELECT group_concat(e.status_before || '>' || e.status_after || ' ' ||
			e.refunded_before || '>' || e.refunded_after || ' ' || e.door || ' commission ' || e.commission_change, '; ')
			FROM (SELECT * FROM conversion_events WHERE conversion = v.id ORDER BY rowid) e), '') AS line
		FROM conversions v WHERE substr(v.occurred_at, 1, 10) = {:day} AND v.affiliate = {:a} AND v.program = {:p} AND v.link = {:l}
			AND EXISTS (SELECT 1 FROM conversion_events WHERE conversion = v.id) LIMIT 40`).
		Bind(dbx.Params{"day": parts[0], "a": parts[1], "p": parts[2], "l": parts[3]}).All(&rows)
	if err != nil {
		return err.Error()
	}
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = r.Line
	}
	return strings.Join(lines, "\n")
}
