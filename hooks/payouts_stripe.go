package hooks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Tunables of Stripe payout execution.
const (
	// stripePayoutLease is how long a claimed payout belongs to the executor that claimed it.
	// An executor that died (crash, deploy) leaves the payout processing; once the lease has
	// passed another run claims it again and retries with the same idempotency key.
	stripePayoutLease = 10 * time.Minute
	// stripeRetryBase and stripeRetryMax bound the exponential backoff of retryable failures.
	stripeRetryBase = time.Minute
	stripeRetryMax  = time.Hour
	// stripeRateLimitedPause is how long a run waits after a 429 before its next request, so a
	// rate-limited run does not fail every remaining payout in a row.
	stripeRateLimitedPause = time.Second
	// stripePayoutPage is how many due payouts one query reads.
	stripePayoutPage = 200
	// payoutErrorMax is the length of the payouts.error field.
	payoutErrorMax = 2000
)

// Steps of executing one payout, at which tests inject a crash (stripeExecutor.afterStep).
const (
	stepClaimed = "claimed" // the claim is committed, Stripe not asked yet
	stepSent    = "sent"    // Stripe answered, the answer is not stored yet
	stepStored  = "stored"  // the outcome is committed
)

// stripeExecutor sends the Connect transfers of due Stripe payouts. Each payout is claimed in
// the database first (so parallel runs and restarted processes never send it concurrently),
// then transferred outside any transaction with the payout's fixed idempotency key (so any
// retry, even after a crash that lost Stripe's answer, returns the transfer already made), and
// only then marked paid together with its commissions.
type stripeExecutor struct {
	app       core.App
	api       stripeAPI
	now       func() time.Time
	limiter   *tokenBucket // nil: no client-side rate limit
	lease     time.Duration
	pause     time.Duration                     // wait after a 429
	afterStep func(step, payoutID string) error // tests: an error here stops the run like a crash
}

// newStripeExecutor builds an executor with the production tunables; ratePerSecond 0 turns the
// client-side rate limit off.
func newStripeExecutor(app core.App, api stripeAPI, now func() time.Time, ratePerSecond int) *stripeExecutor {
	if now == nil {
		now = time.Now
	}
	return &stripeExecutor{app: app, api: api, now: now, limiter: newTokenBucket(ratePerSecond),
		lease: stripePayoutLease, pause: stripeRateLimitedPause}
}

// executeDue sends the Stripe transfers of due payouts. Without Stripe it does nothing: manual
// payouts are paid by an admin.
func (e *payoutEngine) executeDue(ctx context.Context) error {
	if e.exec == nil {
		return nil
	}
	_, err := e.exec.run(ctx)
	return err
}

// executeStats counts what one run did, for logs, tests and the benchmark.
type executeStats struct {
	Paid     int
	Retrying int
	Failed   int
}

// duePayout is a Stripe payout that may be claimed now.
type duePayout struct {
	ID        string `db:"id"`
	Affiliate string `db:"affiliate"`
	Amount    int64  `db:"amount"`
	Currency  string `db:"currency"`
	Key       string `db:"idempotency_key"`
	Run       string `db:"run"`
	Account   string `db:"account"`
}

// run executes every payout due at the start of the run, each once, in id order (keyset
// pages, so a payout that fails and becomes due again during a long run waits for the next).
// It returns an error for database failures, a canceled context, or when transfers failed.
func (x *stripeExecutor) run(ctx context.Context) (executeStats, error) {
	var st executeStats
	var firstFailure error
	after := ""
	for {
		var due []duePayout
		err := x.app.DB().NewQuery(`SELECT p.id AS id, p.affiliate AS affiliate, p.amount AS amount, p.currency AS currency,
				p.idempotency_key AS idempotency_key, p.run AS run, IFNULL(a.stripe_account_id, '') AS account
			FROM payouts p LEFT JOIN affiliates a ON a.id = p.affiliate
			WHERE p.method = 'stripe' AND p.id > {:after} AND (p.status = 'pending' OR (p.status = 'processing' AND p.next_attempt_at <= {:now}))
			ORDER BY p.id LIMIT {:n}`).
			Bind(dbx.Params{"after": after, "now": store.DBTime(x.now()), "n": stripePayoutPage}).All(&due)
		if err != nil {
			return st, fmt.Errorf("due Stripe payouts: %w", err)
		}
		if len(due) == 0 {
			break
		}
		for _, p := range due {
			after = p.ID
			if err := ctx.Err(); err != nil {
				return st, fmt.Errorf("payouts through Stripe interrupted: %w", err)
			}
			failure, err := x.execute(ctx, p, &st)
			if err != nil {
				return st, err
			}
			if failure != nil && firstFailure == nil {
				firstFailure = failure
			}
		}
	}
	if n := st.Retrying + st.Failed; n > 0 {
		return st, fmt.Errorf("%d Stripe transfers failed (%d retried later), first: %w", n, st.Retrying, firstFailure)
	}
	return st, nil
}

// execute claims, transfers and settles one payout. The first result is the transfer's failure
// (already recorded on the payout); the second stops the run (database error, injected crash).
func (x *stripeExecutor) execute(ctx context.Context, p duePayout, st *executeStats) (failure, stop error) {
	now := x.now()
	var attempts int
	err := x.app.DB().NewQuery(`UPDATE payouts SET status = 'processing', attempts = attempts + 1, next_attempt_at = {:lease}, updated = {:now}
		WHERE id = {:id} AND method = 'stripe' AND (status = 'pending' OR (status = 'processing' AND next_attempt_at <= {:now}))
		RETURNING attempts`).
		Bind(dbx.Params{"id": p.ID, "now": store.DBTime(now), "lease": store.DBTime(now.Add(x.lease))}).Row(&attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // another run claimed it meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("claim payout %s: %w", p.ID, err)
	}
	if err := x.step(stepClaimed, p.ID); err != nil {
		return nil, err
	}

	var transferID string
	var transferErr error
	switch {
	case p.Account == "" && attempts > 1:
		// An earlier attempt may have reached Stripe with the account that is gone now:
		// returning the commissions could pay them twice, so a person has to look.
		transferErr = errors.New("the affiliate no longer has a Stripe account, and an earlier attempt may have been paid: check Stripe before canceling")
	case p.Account == "":
		transferErr = &permanentTransferError{msg: "the affiliate has no Stripe account"}
	default:
		if err := x.limiter.wait(ctx); err != nil {
			transferErr = err
			break
		}
		if attempts > 1 {
			// An earlier attempt may have reached Stripe, longer ago than Stripe keeps
			// idempotency keys (24 h): look for its transfer before sending again.
			transferID, transferErr = x.api.FindTransfer(ctx, p.Account, p.Run, p.ID)
			if transferID != "" || transferErr != nil {
				break
			}
			if err := x.limiter.wait(ctx); err != nil {
				transferErr = err
				break
			}
		}
		transferID, transferErr = x.api.Transfer(ctx, transferRequest{
			Amount: p.Amount, Currency: p.Currency, Destination: p.Account, TransferGroup: p.Run,
			Payout: p.ID, Affiliate: p.Affiliate, IdempotencyKey: p.Key,
		})
	}
	if err := x.step(stepSent, p.ID); err != nil {
		return nil, err
	}

	permanent, rateLimited := classifyTransferError(transferErr)
	switch {
	case transferErr == nil:
		err = x.markPaid(p.ID, transferID)
		st.Paid++
	case permanent:
		err = x.markFailed(p.ID, transferErr)
		st.Failed++
	default:
		err = x.markRetry(p.ID, attempts, transferErr)
		st.Retrying++
	}
	if err != nil {
		return nil, err
	}
	if err := x.step(stepStored, p.ID); err != nil {
		return nil, err
	}
	if rateLimited {
		x.sleep(ctx, x.pause)
	}
	if transferErr != nil {
		return fmt.Errorf("payout %s: %w", p.ID, transferErr), nil
	}
	return nil, nil
}

// markPaid stores the transfer and pays the commissions in one transaction. A payout that is
// no longer processing (an admin canceled it while the transfer was under way) keeps its
// status, and the transfer is logged loudly: the money has left, a person must reconcile it.
func (x *stripeExecutor) markPaid(payoutID, transferID string) error {
	err := x.app.RunInTransaction(func(tx core.App) error {
		now := store.DBTime(x.now())
		res, err := tx.DB().NewQuery(`UPDATE payouts SET status = 'paid', stripe_transfer_id = {:tr}, paid_at = {:now}, error = '',
				next_attempt_at = '', updated = {:now} WHERE id = {:id} AND status = 'processing'`).
			Bind(dbx.Params{"id": payoutID, "tr": transferID, "now": now}).Execute()
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var status string
			_ = tx.DB().NewQuery("SELECT status FROM payouts WHERE id = {:id}").Bind(dbx.Params{"id": payoutID}).Row(&status)
			if status != collections.PayoutPaid {
				x.app.Logger().Error("Stripe transfer made for a payout that is no longer processing: reconcile it",
					"payout", payoutID, "transfer", transferID, "status", status)
			}
			return nil
		}
		if err := settleCommissions(tx, payoutID, collections.PayoutPaid); err != nil {
			return err
		}
		return newEventEmitter(tx).emitRecord(eventPayoutPaid, collections.Payouts, payoutID)
	})
	if err != nil {
		return fmt.Errorf("store transfer %s of payout %s: %w", transferID, payoutID, err)
	}
	announcePayout(x.app, payoutID)
	return nil
}

// markFailed records a transfer Stripe refused and returns the commissions to the pool, so the
// next run pays them with a new payout (once the affiliate fixed the account).
func (x *stripeExecutor) markFailed(payoutID string, cause error) error {
	err := x.app.RunInTransaction(func(tx core.App) error {
		now := store.DBTime(x.now())
		res, err := tx.DB().NewQuery(`UPDATE payouts SET status = 'failed', error = {:err}, next_attempt_at = '', updated = {:now}
			WHERE id = {:id} AND status = 'processing'`).
			Bind(dbx.Params{"id": payoutID, "err": truncateError(cause), "now": now}).Execute()
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if err := settleCommissions(tx, payoutID, collections.PayoutFailed); err != nil {
			return err
		}
		return newEventEmitter(tx).emitRecord(eventPayoutFailed, collections.Payouts, payoutID)
	})
	if err != nil {
		return fmt.Errorf("store failure of payout %s: %w", payoutID, err)
	}
	announcePayout(x.app, payoutID)
	return nil
}

// markRetry keeps the payout processing (its commissions stay linked) and schedules the next
// attempt with exponential backoff.
func (x *stripeExecutor) markRetry(payoutID string, attempts int, cause error) error {
	now := x.now()
	_, err := x.app.DB().NewQuery(`UPDATE payouts SET error = {:err}, next_attempt_at = {:next}, updated = {:now}
		WHERE id = {:id} AND status = 'processing'`).
		Bind(dbx.Params{"id": payoutID, "err": truncateError(cause), "next": store.DBTime(now.Add(retryBackoff(attempts))),
			"now": store.DBTime(now)}).Execute()
	if err != nil {
		return fmt.Errorf("schedule retry of payout %s: %w", payoutID, err)
	}
	return nil
}

// step calls the test hook, if any.
func (x *stripeExecutor) step(name, payoutID string) error {
	if x.afterStep == nil {
		return nil
	}
	return x.afterStep(name, payoutID)
}

// sleep waits d or until ctx ends.
func (x *stripeExecutor) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// retryBackoff is the wait before attempt attempts+1: 1, 2, 4 … minutes, at most an hour, so a
// long Stripe outage is retried well within the 24 hours an idempotency key lives.
func retryBackoff(attempts int) time.Duration {
	d := stripeRetryBase
	for i := 1; i < attempts && d < stripeRetryMax; i++ {
		d *= 2
	}
	return min(d, stripeRetryMax)
}

// permanentTransferError is a refusal decided before asking Stripe.
type permanentTransferError struct{ msg string }

// Error returns the reason.
func (e *permanentTransferError) Error() string { return e.msg }

// classifyTransferError decides whether a failed transfer can succeed later. Permanent are
// Stripe's refusals of the request itself (400 invalid, 402, 404 no such destination): Stripe
// made no transfer, so the commissions may return to the pool. An idempotency error is not:
// it means this key was used before with other values (the destination changed), so a transfer
// may exist. Network errors, 5xx, 429 and 401/403 are retryable.
func classifyTransferError(err error) (permanent, rateLimited bool) {
	if err == nil {
		return false, false
	}
	var pe *permanentTransferError
	if errors.As(err, &pe) {
		return true, false
	}
	var se *stripe.Error
	if !errors.As(err, &se) {
		return false, false
	}
	if se.HTTPStatusCode == http.StatusTooManyRequests {
		return false, true
	}
	if se.Type == stripe.ErrorTypeIdempotency {
		return false, false
	}
	switch se.HTTPStatusCode {
	case http.StatusBadRequest, http.StatusPaymentRequired, http.StatusNotFound:
		return true, false
	}
	return false, false
}

// truncateError fits an error into the payouts.error field.
func truncateError(err error) string {
	s := err.Error()
	if len(s) > payoutErrorMax {
		s = s[:payoutErrorMax]
	}
	return s
}

// tokenBucket paces requests to at most rate per second with a burst of one: each request
// reserves the next free slot and sleeps until it. Stripe counts requests per second, so an
// even pace stays under the limit where a burst at the start of a second might not. A nil
// bucket does not limit.
type tokenBucket struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

// newTokenBucket returns nil (no limit) for a rate of 0 or less.
func newTokenBucket(ratePerSecond int) *tokenBucket {
	if ratePerSecond <= 0 {
		return nil
	}
	return &tokenBucket{interval: time.Second / time.Duration(ratePerSecond)}
}

// wait blocks until the caller may send a request, or returns ctx's error.
func (b *tokenBucket) wait(ctx context.Context) error {
	if b == nil {
		return ctx.Err()
	}
	b.mu.Lock()
	now := time.Now()
	if b.next.Before(now) {
		b.next = now
	}
	d := b.next.Sub(now)
	b.next = b.next.Add(b.interval)
	b.mu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the Stripe rate limit: %w", ctx.Err())
	}
}
