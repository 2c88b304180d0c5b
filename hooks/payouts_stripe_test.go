package hooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// stripePayoutEnv is an app with the schema (no hooks), a fake Stripe and payable affiliates.
type stripePayoutEnv struct {
	t       testing.TB
	app     core.App
	fake    *FakeStripe
	api     stripeAPI
	clock   *pbatest.Clock
	program string
	// affiliates and accounts are parallel: affiliate i is paid into accounts[i].
	affiliates []string
	accounts   []string
	seeded     int64 // total commission seeded
}

// newStripePayoutEnv builds an empty env whose Stripe client talks to a fresh fake.
func newStripePayoutEnv(t testing.TB) *stripePayoutEnv {
	t.Helper()
	app := pbatest.TempApp(t)
	fake := NewFakeStripe(t)
	p, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	return &stripePayoutEnv{t: t, app: app, fake: fake, clock: pbatest.NewClock(time.Now().UTC()), program: p.Id,
		api: newStripeAPI(Config{StripeSecretKey: FakeStripeKey, StripeAPIBase: fake.URL})}
}

// seed adds n approved Stripe affiliates with onboarding done, each with two payable
// commissions (4000 + 2500 = 6500, above the 5000 minimum). Raw inserts keep 10,000 fast.
func (s *stripePayoutEnv) seed(n int) {
	s.t.Helper()
	err := s.app.RunInTransaction(func(tx core.App) error {
		now := store.DBTime(s.clock.Now())
		for i := 0; i < n; i++ {
			k := len(s.affiliates)
			id, acct := fmt.Sprintf("aff%012d", k), fmt.Sprintf("acct_%d", k)
			_, err := tx.DB().NewQuery(`INSERT INTO affiliates (id, email, tokenKey, password, name, code, status, program,
					payout_method, stripe_account_id, payouts_enabled, created, updated)
				VALUES ({:id}, {:email}, {:id}, 'x', {:id}, {:id}, 'approved', {:p}, 'stripe', {:acct}, TRUE, {:now}, {:now})`).
				Bind(dbx.Params{"id": id, "email": id + "@example.test", "p": s.program, "acct": acct, "now": now}).Execute()
			if err != nil {
				return err
			}
			for j, amount := range []int64{4000, 2500} {
				_, err := tx.DB().NewQuery(`INSERT INTO commissions (id, affiliate, program, kind, amount, currency, status, payout, created, updated)
					VALUES ({:id}, {:a}, {:p}, 'sale', {:amount}, 'usd', 'payable', '', {:now}, {:now})`).
					Bind(dbx.Params{"id": fmt.Sprintf("com%06d%06d", k, j), "a": id, "p": s.program, "amount": amount, "now": now}).Execute()
				if err != nil {
					return err
				}
				s.seeded += amount
			}
			s.affiliates = append(s.affiliates, id)
			s.accounts = append(s.accounts, acct)
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("seed: %v", err)
	}
}

// engine is the payout engine as registerPayouts builds it with Stripe on.
func (s *stripePayoutEnv) engine() *payoutEngine {
	return &payoutEngine{app: s.app, stripe: true, api: s.api, now: s.clock.Now,
		exec: newStripeExecutor(s.app, s.api, s.clock.Now, 0)}
}

// createPayouts runs the program now: one pending Stripe payout per affiliate.
func (s *stripePayoutEnv) createPayouts() []payoutReport {
	s.t.Helper()
	reports, err := s.engine().runNow("", false)
	if err != nil {
		s.t.Fatalf("payout run: %v", err)
	}
	s.clock.Advance(time.Millisecond) // the next run is claimed at another instant
	return reports
}

// executor is a fresh executor ("a restarted process") without rate limit or 429 pause.
func (s *stripePayoutEnv) executor() *stripeExecutor {
	x := newStripeExecutor(s.app, s.api, s.clock.Now, 0)
	x.pause = 0
	return x
}

// payoutRow is what the tests read back of a payout.
type payoutRow struct {
	ID        string `db:"id"`
	Affiliate string `db:"affiliate"`
	Amount    int64  `db:"amount"`
	Status    string `db:"status"`
	Transfer  string `db:"stripe_transfer_id"`
	Attempts  int    `db:"attempts"`
	Error     string `db:"error"`
	Key       string `db:"idempotency_key"`
}

// payouts reads every payout, in id order (the order executors work in).
func (s *stripePayoutEnv) payouts() []payoutRow {
	s.t.Helper()
	var rows []payoutRow
	err := s.app.DB().NewQuery(`SELECT id, affiliate, amount, status, stripe_transfer_id, attempts, error, idempotency_key
		FROM payouts ORDER BY id`).All(&rows)
	if err != nil {
		s.t.Fatal(err)
	}
	return rows
}

// assertPaidOnce checks the end state after any sequence of crashes and restarts: every
// affiliate has exactly one paid payout and exactly one transfer, into its own account, for
// the sum of the payout's commissions; nothing else was transferred; the ledger holds.
func (s *stripePayoutEnv) assertPaidOnce() {
	s.t.Helper()
	transfers := s.fake.Transfers()
	byPayout := map[string][]FakeTransfer{}
	var transferred int64
	for _, tr := range transfers {
		byPayout[tr.Payout] = append(byPayout[tr.Payout], tr)
		transferred += tr.Amount
	}
	paidBy := map[string]int{}
	for _, p := range s.payouts() {
		if p.Status != collections.PayoutPaid {
			continue
		}
		paidBy[p.Affiliate]++
		trs := byPayout[p.ID]
		if len(trs) != 1 || trs[0].ID != p.Transfer || trs[0].Amount != p.Amount || trs[0].IdempotencyKey != p.Key {
			s.t.Errorf("payout %s (%d, transfer %q): transfers %+v", p.ID, p.Amount, p.Transfer, trs)
		}
		var sum int64
		if err := s.app.DB().NewQuery("SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE payout = {:id} AND status = 'paid'").
			Bind(dbx.Params{"id": p.ID}).Row(&sum); err != nil || sum != p.Amount {
			s.t.Errorf("payout %s: amount %d, paid commissions %d (%v)", p.ID, p.Amount, sum, err)
		}
	}
	for i, a := range s.affiliates {
		if paidBy[a] != 1 {
			s.t.Errorf("affiliate %s has %d paid payouts, want 1", a, paidBy[a])
		}
		for _, tr := range transfers {
			if tr.Affiliate == a && tr.Destination != s.accounts[i] {
				s.t.Errorf("transfer %s of %s went to %s, want %s", tr.ID, a, tr.Destination, s.accounts[i])
			}
		}
	}
	if len(transfers) != len(s.affiliates) || transferred != s.seeded {
		s.t.Errorf("%d transfers of %d in total; want %d of %d", len(transfers), transferred, len(s.affiliates), s.seeded)
	}
	var unpaid int
	if err := s.app.DB().NewQuery("SELECT COUNT(*) FROM commissions WHERE status != 'paid'").Row(&unpaid); err != nil || unpaid != 0 {
		s.t.Errorf("%d commissions not paid (%v)", unpaid, err)
	}
	s.ledgerOK()
}

// ledgerOK fails the test unless checkLedger finds the ledger consistent.
func (s *stripePayoutEnv) ledgerOK() {
	s.t.Helper()
	rep, err := checkLedger(s.app, "")
	if err != nil || !rep.OK {
		s.t.Fatalf("ledger: %v %v", err, rep.Problems)
	}
}

// errCrash is the injected crash: the run stops where a killed process would.
var errCrash = errors.New("injected crash")

// TestStripePayoutHappyPath: a run pays every due payout with one transfer carrying the payout's
// amount, currency, destination, run, metadata and idempotency key; a second run does nothing.
func TestStripePayoutHappyPath(t *testing.T) {
	t.Parallel()
	s := newStripePayoutEnv(t)
	s.seed(3)
	reports := s.createPayouts()
	st, err := s.executor().run(context.Background())
	if err != nil || st.Paid != 3 {
		t.Fatalf("run: %+v %v", st, err)
	}
	s.assertPaidOnce()
	for _, tr := range s.fake.Transfers() {
		if tr.Currency != "usd" || tr.TransferGroup != reports[0].Run || tr.Amount != 6500 ||
			tr.IdempotencyKey != "pba_payout_"+tr.Payout || tr.Affiliate == "" {
			t.Errorf("transfer %+v (run %s)", tr, reports[0].Run)
		}
	}
	for _, p := range s.payouts() {
		if p.Attempts != 1 || p.Error != "" {
			t.Errorf("payout %+v", p)
		}
	}
	calls := s.fake.Calls()
	if st, err := s.executor().run(context.Background()); err != nil || st != (executeStats{}) || s.fake.Calls() != calls {
		t.Fatalf("second run: %+v %v, %d new calls", st, err, s.fake.Calls()-calls)
	}
}

// TestStripePayoutCrashRecovery is the crash-safety test: a run is killed at every step of
// executing a payout (after the claim, after Stripe answered but before the answer is stored,
// after storing) and, separately, between creating the payouts and executing them; Stripe also
// "crashes after commit" (makes the transfer, then drops the connection). After restarting
// (a new executor, once the lease has passed) every affiliate is paid exactly once.
func TestStripePayoutCrashRecovery(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"created", stepClaimed, stepSent, stepStored} {
		for _, victim := range []int{0, 1, 2} {
			t.Run(fmt.Sprintf("%s/payout%d", step, victim), func(t *testing.T) {
				t.Parallel() // each case has its own app and fake
				s := newStripePayoutEnv(t)
				s.seed(3)
				s.createPayouts()
				if step != "created" { // "created": the process died right after the payout rows were written
					ids := s.payouts()
					x := s.executor()
					x.afterStep = func(at, payoutID string) error {
						if at == step && payoutID == ids[victim].ID {
							return errCrash
						}
						return nil
					}
					if _, err := x.run(context.Background()); !errors.Is(err, errCrash) {
						t.Fatalf("run with a crash: %v", err)
					}
					if got := len(s.fake.Transfers()); step == stepClaimed && got != victim || step != stepClaimed && got != victim+1 {
						t.Fatalf("%d transfers before the restart", got)
					}
				}
				s.ledgerOK() // consistent at the moment of the crash, too

				// Restarted at once: the crashed payout's lease still holds, the rest is paid.
				if _, err := s.executor().run(context.Background()); err != nil {
					t.Fatalf("restart: %v", err)
				}
				// After the lease the crashed payout is claimed again, with the same key.
				s.clock.Advance(stripePayoutLease + time.Second)
				if _, err := s.executor().run(context.Background()); err != nil {
					t.Fatalf("run after the lease: %v", err)
				}
				s.assertPaidOnce()
				if step == stepSent {
					if p := s.payouts()[victim]; p.Attempts != 2 {
						t.Errorf("crashed payout: %d attempts, want 2", p.Attempts)
					}
				}
			})
		}
	}

	t.Run("stripe crashes after commit", func(t *testing.T) {
		t.Parallel()
		s := newStripePayoutEnv(t)
		s.seed(2)
		s.createPayouts()
		// Three dropped answers: the first request and both of stripe-go's retries.
		s.fake.CrashAfterCommit(1 + stripeMaxNetworkRetries)
		st, err := s.executor().run(context.Background())
		if err == nil || st.Paid != 1 || st.Retrying != 1 {
			t.Fatalf("run: %+v %v", st, err)
		}
		if n := len(s.fake.Transfers()); n != 2 {
			t.Fatalf("%d transfers made, want 2 (one of them unseen by us)", n)
		}
		retrying := s.payouts()[0]
		if retrying.Status != collections.PayoutProcessing || retrying.Error == "" {
			t.Fatalf("unseen transfer's payout: %+v", retrying)
		}
		s.ledgerOK()
		s.clock.Advance(retryBackoff(1))
		if _, err := s.executor().run(context.Background()); err != nil {
			t.Fatalf("retry: %v", err)
		}
		s.assertPaidOnce()
	})

	t.Run("answer lost and the server down past Stripe's 24 h key window", func(t *testing.T) {
		t.Parallel()
		s := newStripePayoutEnv(t)
		s.seed(2)
		s.createPayouts()
		s.fake.CrashAfterCommit(1 + stripeMaxNetworkRetries)
		if _, err := s.executor().run(context.Background()); err == nil {
			t.Fatal("run with a lost answer reported no failure")
		}
		// Two days later Stripe no longer knows the key: only the lookup of the transfer
		// keeps the retry from paying a second time.
		s.fake.ForgetIdempotencyKeys()
		s.clock.Advance(48 * time.Hour)
		if _, err := s.executor().run(context.Background()); err != nil {
			t.Fatalf("retry: %v", err)
		}
		s.assertPaidOnce()
	})

	t.Run("parallel executors", func(t *testing.T) {
		t.Parallel()
		s := newStripePayoutEnv(t)
		s.seed(20)
		s.createPayouts()
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.executor().run(context.Background()); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		s.assertPaidOnce()
	})
}

// TestStripePayoutPermanentFailure: Stripe refuses a transfer (a 400 about the account): the
// payout fails with Stripe's message, its commissions return to the pool, and once the account
// is fixed the next run pays them with a new payout.
func TestStripePayoutPermanentFailure(t *testing.T) {
	t.Parallel()
	s := newStripePayoutEnv(t)
	s.seed(2)
	s.fake.RefuseDestination(s.accounts[1], "Your destination account needs to have at least one of the following capabilities enabled: transfers")
	s.createPayouts()
	st, err := s.executor().run(context.Background())
	if err == nil || st.Paid != 1 || st.Failed != 1 {
		t.Fatalf("run: %+v %v", st, err)
	}
	var failed payoutRow
	for _, p := range s.payouts() {
		if p.Affiliate == s.affiliates[1] {
			failed = p
		}
	}
	if failed.Status != collections.PayoutFailed || !strings.Contains(failed.Error, "400") || !strings.Contains(failed.Error, "capabilities") {
		t.Fatalf("failed payout: %+v", failed)
	}
	var pool int64
	if err := s.app.DB().NewQuery("SELECT SUM(amount) FROM commissions WHERE affiliate = {:a} AND status = 'payable' AND payout = ''").
		Bind(dbx.Params{"a": s.affiliates[1]}).Row(&pool); err != nil || pool != 6500 {
		t.Fatalf("commissions back in the pool: %d %v", pool, err)
	}
	s.ledgerOK()
	// A failed payout is not retried.
	if st, err := s.executor().run(context.Background()); err != nil || st != (executeStats{}) {
		t.Fatalf("failed payout retried: %+v %v", st, err)
	}

	s.fake.RefuseDestination(s.accounts[1], "")
	reports := s.createPayouts()
	if reports[0].Payouts != 1 || reports[0].Lines[0].Payout == failed.ID {
		t.Fatalf("next run: %+v", reports)
	}
	if _, err := s.executor().run(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.assertPaidOnce()
}

// TestStripePayoutRetries: 429 twice, then success. Each failure keeps the payout processing
// with its error and exponential backoff; nothing is retried before the backoff has passed.
func TestStripePayoutRetries(t *testing.T) {
	t.Parallel()
	s := newStripePayoutEnv(t)
	s.seed(1)
	s.createPayouts()
	s.fake.FailTransfers(http.StatusTooManyRequests, http.StatusTooManyRequests)
	for attempt := 1; attempt <= 2; attempt++ {
		st, err := s.executor().run(context.Background())
		p := s.payouts()[0]
		if err == nil || st.Retrying != 1 || p.Status != collections.PayoutProcessing || p.Attempts != attempt ||
			!strings.Contains(p.Error, "429") {
			t.Fatalf("attempt %d: %+v %v %+v", attempt, st, err, p)
		}
		calls := s.fake.Calls()
		s.clock.Advance(retryBackoff(attempt) - time.Second)
		if st, _ := s.executor().run(context.Background()); st != (executeStats{}) || s.fake.Calls() != calls {
			t.Fatalf("retried before the backoff: %+v", st)
		}
		s.clock.Advance(time.Second)
	}
	if st, err := s.executor().run(context.Background()); err != nil || st.Paid != 1 {
		t.Fatalf("third attempt: %+v %v", st, err)
	}
	if p := s.payouts()[0]; p.Attempts != 3 || p.Error != "" {
		t.Fatalf("paid payout: %+v", p)
	}
	s.assertPaidOnce()

	t.Run("5xx and network errors are retryable", func(t *testing.T) {
		s := newStripePayoutEnv(t)
		s.seed(1)
		s.createPayouts()
		s.fake.FailTransfers(http.StatusInternalServerError)
		if st, _ := s.executor().run(context.Background()); st.Retrying != 1 {
			t.Fatalf("500: %+v", st)
		}
		s.clock.Advance(retryBackoff(1))
		s.api = newStripeAPI(Config{StripeSecretKey: FakeStripeKey, StripeAPIBase: "http://127.0.0.1:1"}) // nothing listens
		if st, _ := s.executor().run(context.Background()); st.Retrying != 1 {
			t.Fatalf("connection refused: %+v", st)
		}
		s.api = newStripeAPI(Config{StripeSecretKey: FakeStripeKey, StripeAPIBase: s.fake.URL})
		s.clock.Advance(retryBackoff(2))
		if st, err := s.executor().run(context.Background()); err != nil || st.Paid != 1 {
			t.Fatalf("after the outage: %+v %v", st, err)
		}
		s.assertPaidOnce()
	})
}

// TestStripePayoutRetryBackoff: the wait doubles from a minute and stops at an hour.
func TestStripePayoutRetryBackoff(t *testing.T) {
	for attempts, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute,
		6: 32 * time.Minute, 7: time.Hour, 50: time.Hour} {
		if got := retryBackoff(attempts); got != want {
			t.Errorf("retryBackoff(%d) = %v, want %v", attempts, got, want)
		}
	}
}

// TestStripePayoutErrorClasses: only refusals that prove no transfer was made are permanent.
func TestStripePayoutErrorClasses(t *testing.T) {
	stripeErr := func(status int, typ stripe.ErrorType) error {
		return fmt.Errorf("create transfer: %w", stripeErrorSummary(&stripe.Error{HTTPStatusCode: status, Type: typ}))
	}
	for _, tc := range []struct {
		name                 string
		err                  error
		permanent, ratelimit bool
	}{
		{"invalid request", stripeErr(400, stripe.ErrorTypeInvalidRequest), true, false},
		{"no such destination", stripeErr(404, stripe.ErrorTypeInvalidRequest), true, false},
		{"idempotency conflict", stripeErr(400, stripe.ErrorTypeIdempotency), false, false},
		{"rate limited", stripeErr(429, stripe.ErrorTypeInvalidRequest), false, true},
		{"server error", stripeErr(500, stripe.ErrorTypeAPI), false, false},
		{"bad key", stripeErr(401, stripe.ErrorTypeInvalidRequest), false, false},
		{"network", errors.New("dial tcp: connection refused"), false, false},
		{"canceled", context.Canceled, false, false},
		{"no account", &permanentTransferError{msg: "x"}, true, false},
	} {
		if p, r := classifyTransferError(tc.err); p != tc.permanent || r != tc.ratelimit {
			t.Errorf("%s: permanent %t, rate limited %t", tc.name, p, r)
		}
	}
}

// TestStripePayoutRateLimit: the token bucket paces requests to the configured rate, and a run
// with a limit takes at least as long as the rate demands.
func TestStripePayoutRateLimit(t *testing.T) {
	t.Parallel()
	if newTokenBucket(0) != nil {
		t.Fatal("rate 0 must mean no limit")
	}
	b := newTokenBucket(200)
	start := time.Now()
	for i := 0; i < 21; i++ {
		if err := b.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 95*time.Millisecond {
		t.Errorf("21 requests at 200/s took %v, want ≥ 100ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := newTokenBucket(1)
	_ = slow.wait(context.Background())
	if err := slow.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with a canceled context: %v", err)
	}

	s := newStripePayoutEnv(t)
	s.seed(6)
	s.createPayouts()
	x := s.executor()
	x.limiter = newTokenBucket(50)
	start = time.Now()
	if st, err := x.run(context.Background()); err != nil || st.Paid != 6 {
		t.Fatalf("run: %+v %v", st, err)
	}
	if d := time.Since(start); d < 95*time.Millisecond {
		t.Errorf("6 transfers at 50/s took %v, want ≥ 100ms", d)
	}
	s.assertPaidOnce()
}

// TestStripePayoutWithoutAccount: a payout whose affiliate lost its Stripe account fails without
// asking Stripe on its first attempt; after an attempt that may have reached Stripe it waits
// for a person instead, so commissions are never paid twice.
func TestStripePayoutWithoutAccount(t *testing.T) {
	t.Parallel()
	s := newStripePayoutEnv(t)
	s.seed(2)
	s.createPayouts()
	s.fake.FailTransfers(http.StatusInternalServerError)
	if st, _ := s.executor().run(context.Background()); st.Retrying != 1 || st.Paid != 1 {
		t.Fatalf("first run: %+v", st)
	}
	if _, err := s.app.DB().NewQuery("UPDATE affiliates SET stripe_account_id = ''").Execute(); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(retryBackoff(1))
	calls := s.fake.Calls()
	if st, _ := s.executor().run(context.Background()); st.Retrying != 1 || s.fake.Calls() != calls {
		t.Fatalf("second attempt without account: %+v", st)
	}
	if p := s.payouts()[0]; p.Status != collections.PayoutProcessing || !strings.Contains(p.Error, "check Stripe") {
		t.Fatalf("payout: %+v", p)
	}
	s.ledgerOK()

	fresh := newStripePayoutEnv(t)
	fresh.seed(1)
	fresh.createPayouts()
	if _, err := fresh.app.DB().NewQuery("UPDATE affiliates SET stripe_account_id = ''").Execute(); err != nil {
		t.Fatal(err)
	}
	if st, _ := fresh.executor().run(context.Background()); st.Failed != 1 || fresh.fake.Calls() != 0 {
		t.Fatalf("first attempt without account: %+v, %d calls", st, fresh.fake.Calls())
	}
	fresh.ledgerOK()
}

// TestStripePayoutExecuteDue: the engine's entry point runs the executor only with Stripe.
func TestStripePayoutExecuteDue(t *testing.T) {
	t.Parallel()
	s := newStripePayoutEnv(t)
	s.seed(2)
	s.createPayouts()
	if err := (&payoutEngine{app: s.app, now: s.clock.Now}).executeDue(context.Background()); err != nil || len(s.fake.Transfers()) != 0 {
		t.Fatalf("without Stripe: %v, %d transfers", err, len(s.fake.Transfers()))
	}
	if err := s.engine().executeDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.assertPaidOnce()
}

// BenchmarkStripePayouts executes 10,000 payouts against the fake with the rate limit off.
func BenchmarkStripePayouts(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := newStripePayoutEnv(b)
		s.seed(n)
		s.createPayouts()
		x := s.executor()
		b.StartTimer()
		start := time.Now()
		st, err := x.run(context.Background())
		elapsed := time.Since(start)
		b.StopTimer()
		if err != nil || st.Paid != n {
			b.Fatalf("run: %+v %v", st, err)
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "payouts/s")
	}
}

// startStripeMock runs the real stripe-mock (Stripe's OpenAPI-validating mock) on loopback and
// returns its URL. It skips when the binary is absent, except under CI=true where it must run
// (install: go install github.com/stripe/stripe-mock@v0.203.0).
func startStripeMock(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("stripe-mock")
	if err != nil {
		if gopath, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			candidate := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "stripe-mock")
			if _, serr := os.Stat(candidate); serr == nil {
				bin, err = candidate, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("stripe-mock is required in CI: go install github.com/stripe/stripe-mock@v0.203.0")
		}
		t.Skip("stripe-mock not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-http-addr", addr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr
}

// TestStripePayoutStripeMock runs onboarding calls and a payout run against stripe-mock, which
// validates every request against Stripe's OpenAPI spec (it is stateless: idempotency and
// balances are the fake's job).
func TestStripePayoutStripeMock(t *testing.T) {
	base := startStripeMock(t)
	api := newStripeAPI(Config{StripeSecretKey: "sk_test_123", StripeAPIBase: base})
	ctx := context.Background()
	// The webhook's lookup of a Checkout Session's discounts is a valid request (expand included).
	if _, err := api.CheckoutSessionPromotionCodes(ctx, "cs_test_123"); err != nil {
		t.Fatalf("checkout session with expanded breakdown against stripe-mock: %v", err)
	}
	acct, err := api.CreateExpressAccount(ctx, "a@example.test", "pba_connect_mock")
	if err != nil || !strings.HasPrefix(acct, "acct_") {
		t.Fatalf("CreateExpressAccount = %q, %v", acct, err)
	}
	if url, err := api.AccountLink(ctx, acct, "https://x.example/portal/?stripe=refresh", "https://x.example/portal/?stripe=return"); err != nil || url == "" {
		t.Fatalf("AccountLink = %q, %v", url, err)
	}
	// The lookup before a late retry is a valid list request (stripe-mock's fixtures carry no
	// payout metadata, so nothing matches).
	if id, err := api.FindTransfer(ctx, acct, "run_1", "payout_1"); err != nil || id != "" {
		t.Fatalf("FindTransfer = %q, %v", id, err)
	}

	s := newStripePayoutEnv(t)
	s.api = api
	s.seed(3)
	s.createPayouts()
	if st, err := s.executor().run(ctx); err != nil || st.Paid != 3 {
		t.Fatalf("run against stripe-mock: %+v %v", st, err)
	}
	for _, p := range s.payouts() {
		if p.Status != collections.PayoutPaid || !strings.HasPrefix(p.Transfer, "tr_") {
			t.Errorf("payout %+v", p)
		}
	}
	s.ledgerOK()
}
