package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/netpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/worker"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Events sent to an affiliate's own webhook_url.
const eventConversionCreated = "conversion.created"

// enqueueConversionWebhook adds a notification of conv to the outbox when its affiliate has a
// webhook_url. It runs inside the conversion's transaction (the outbox pattern): the
// notification exists exactly when the conversion does, and sending it later can never block
// or fail the ingestion.
func enqueueConversionWebhook(tx core.App, conv *core.Record) error {
	affiliate, err := tx.FindRecordById(collections.Affiliates, conv.GetString(collections.FieldAffiliate))
	if err != nil {
		return err
	}
	url := affiliate.GetString(collections.AffiliateWebhookURL)
	if url == "" {
		return nil
	}
	col, err := tx.FindCachedCollectionByNameOrId(collections.WebhookDeliveries)
	if err != nil {
		return err
	}
	d := core.NewRecord(col)
	d.Load(map[string]any{
		collections.FieldAffiliate:         affiliate.Id,
		collections.WebhookDeliveryEvent:   eventConversionCreated,
		collections.WebhookDeliveryEventID: eventConversionCreated + ":" + conv.Id,
		collections.WebhookDeliveryURL:     url,
		collections.WebhookDeliveryPayload: map[string]any{
			"event": eventConversionCreated,
			"data": map[string]any{
				"id":          conv.Id,
				"program":     conv.GetString(collections.FieldProgram),
				"link":        conv.GetString(collections.FieldLink),
				"amount":      conv.GetInt(collections.FieldAmount),
				"currency":    conv.GetString(collections.FieldCurrency),
				"status":      conv.GetString(collections.FieldStatus),
				"occurred_at": conv.GetDateTime(collections.ConversionOccurredAt).Time().UTC().Format(time.RFC3339),
			},
		},
		collections.FieldStatus:                  collections.WebhookDeliveryPending,
		collections.WebhookDeliveryAttempts:      0,
		collections.WebhookDeliveryNextAttemptAt: time.Now().UTC(),
	})
	return tx.Save(d)
}

// Delivery of the outbox. The outbox holds two kinds of rows: an affiliate's own notification
// (affiliate set, sent to the url it had when the sale was recorded, signed with the affiliate's
// webhook_secret) and an event for one of the merchant's endpoints (webhook set, sent to the
// endpoint's current url, signed with its secret; webhook_events.go writes them). Both are
// signed per Standard Webhooks (https://www.standardwebhooks.com), with its Go library:
//
//	webhook-id:        the event id (msg_…), the same across retries and endpoints
//	webhook-timestamp: unix seconds of this attempt
//	webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>, key = base64 part of whsec_…
//
// Affiliates' notifications also carry the headers of the previous scheme for one release
// (deprecated, documented in docs/http-api.md):
//
//	X-PBA-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>." + body)>
//
// Receivers verify over the raw body, reject old timestamps (replays) and dedupe on the id
// (delivery is at least once). An endpoint's events go out in order: only its oldest pending
// delivery is due (the head of line), so a later event waits while an earlier one is retried.
//
// URL policy: only http and https. Outside dev mode (app.IsDev()) plain http is refused unless
// the host is localhost, 127.0.0.1 or ::1, so secrets and sales data never cross the network
// unencrypted. Against SSRF, the dialer refuses loopback, private, link-local and other
// non-public addresses after DNS resolution (so a name rebound to 127.0.0.1 is refused too),
// unless Config.WebhookAllowPrivateNetworks is set (local development, tests, intranet
// receivers). Redirects are never followed. last_error (hidden) holds the status line or the
// transport error, response_body (hidden) the start of the answer: both for superusers; the
// affiliate reads the generic reason.
const (
	// webhookUserAgent identifies the sender to receivers and their logs.
	webhookUserAgent = "pbaffiliate-webhooks/1"
	// webhookTimeout bounds one POST, so a slow receiver costs at most this much per attempt.
	webhookTimeout = 10 * time.Second
	// webhookLease is how long a claimed delivery is withheld from other runs and processes.
	// It exceeds webhookTimeout by a wide margin: a claim only expires when its process died
	// mid-send, and then the delivery is retried (at least once).
	webhookLease = 2 * time.Minute
	// webhookBatch is how many due deliveries one query picks up; a full batch makes the run
	// query again.
	webhookBatch = 50
	// webhookParallel is how many deliveries of a batch are in flight at once (to different
	// endpoints or affiliates), so one slow receiver does not hold up everyone else's.
	webhookParallel = 4
	// webhookMaxAttempts is after how many failed attempts a delivery is given up: with the
	// backoff below, about 3 days (1m, 2m, … 4h16m, then every 6h: 20 attempts ≈ 74 h, ±20%).
	// An endpoint whose delivery is given up has failed every attempt for that long (its later
	// events wait behind it), so it is disabled and superusers are mailed.
	webhookMaxAttempts = 20
	// webhookBackoffBase and webhookBackoffMax shape the exponential retry schedule
	// (1m, 2m, 4m, … capped at 6h), each delay jittered by ±webhookJitter so retries of many
	// deliveries to one receiver spread out.
	webhookBackoffBase = time.Minute
	webhookBackoffMax  = 6 * time.Hour
	webhookJitter      = 0.2
	// webhookMaxError is the length of last_error (the field's limit, in characters).
	webhookMaxError = 1000
	// webhookMaxResponse is how much of a response is kept in response_body (characters).
	webhookMaxResponse = 500
	// webhookSecretPrefix marks a signing secret (Standard Webhooks: whsec_ + base64 key).
	webhookSecretPrefix = "whsec_"
	// webhookSecretBytes is the random key of a new secret (192 bits; 32 base64 characters).
	webhookSecretBytes = 24
	// webhookCronJob is the id of the cron job in the dashboard.
	webhookCronJob = "pbaWebhooks"
)

// webhookSender delivers due webhook_deliveries. The clock, the HTTP client and the jitter
// source are fields so tests can drive retries and point the client at an httptest server.
type webhookSender struct {
	app          core.App
	client       *http.Client
	now          func() time.Time
	jitter       func() float64 // in [0, 1)
	allowPrivate bool

	// worker runs the deliveries while the app serves, woken when one is committed, and keeps
	// runs from overlapping in this process.
	worker *worker.Worker
}

// newWebhookSender returns a sender with the production clock, jitter and HTTP client
// (10 s timeout, redirects returned as responses instead of followed: a redirect to another
// host would carry the signed payload somewhere the receiver's owner did not configure).
func newWebhookSender(app core.App, allowPrivateNetworks bool) *webhookSender {
	dialer := &net.Dialer{Timeout: webhookTimeout}
	if !allowPrivateNetworks {
		dialer.Control = refuseNonPublicAddress
	}
	s := &webhookSender{
		app: app,
		client: &http.Client{
			Timeout:   webhookTimeout,
			Transport: &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: webhookTimeout, MaxIdleConnsPerHost: 2},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		now:          time.Now,
		jitter:       rand.Float64,
		allowPrivate: allowPrivateNetworks,
	}
	s.worker = worker.New(func(ctx context.Context) error {
		_, err := s.run(ctx)
		metricsOf(app).jobDone(webhookCronJob, err) // the job's runs are the worker's, woken by cron or a new event
		return err
	}, func(err error) {
		app.Logger().Error("webhook deliveries", "error", err)
	})
	return s
}

// registerWebhooks wires both kinds of webhooks onto one outbox and sender: affiliates with a
// webhook_url get a signing secret, the merchant's endpoints are validated (webhook_endpoints.go),
// changes emit their events (webhook_events.go), and the outbox is delivered by a cron job
// (pbaWebhooks, every minute, runnable from the dashboard) that retries what is due and by a
// worker, started with the server, that delivers new rows right after their transaction commits.
func registerWebhooks(app core.App, cfg Config) *webhookSender {
	s := newWebhookSender(app, cfg.WebhookAllowPrivateNetworks)
	app.Store().Set(webhookSenderKey, s) // emitters wake it after their commit

	ensureSecret := func(e *core.RecordEvent) error {
		ensureWebhookSecret(e.Record)
		return e.Next()
	}
	app.OnRecordCreate(collections.Affiliates).BindFunc(ensureSecret)
	app.OnRecordUpdate(collections.Affiliates).BindFunc(ensureSecret)
	bindWebhookEndpoints(app, cfg.WebhookAllowPrivateNetworks)
	bindEventHooks(app)

	// AfterCreateSuccess runs after the conversion's transaction commits, so the worker finds
	// the row; signal never blocks, so ingestion never waits for delivery. (Rows written with
	// SQL by emitters signal through their transaction's OnComplete.)
	app.OnRecordAfterCreateSuccess(collections.WebhookDeliveries).BindFunc(func(e *core.RecordEvent) error {
		s.worker.Signal()
		return e.Next()
	})

	app.Cron().MustAdd(webhookCronJob, "* * * * *", s.worker.Tick)

	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		s.worker.Start() // also delivers what became due while the server was down
		return se.Next()
	})
	// Stop before PocketBase closes the database: in-flight sends are canceled and their
	// claims released, so they are retried by the next process.
	app.OnTerminate().BindFunc(func(e *core.TerminateEvent) error {
		s.worker.Stop()
		return e.Next()
	})
	return s
}

// ensureWebhookSecret gives an affiliate with a webhook_url a signing secret if it has none.
// Clearing the secret (superusers only) therefore rotates it on the same save.
func ensureWebhookSecret(r *core.Record) {
	if r.GetString(collections.AffiliateWebhookURL) != "" && r.GetString(collections.AffiliateWebhookSecret) == "" {
		r.Set(collections.AffiliateWebhookSecret, newWebhookSecret())
	}
}

// newWebhookSecret returns a fresh signing secret: whsec_ + base64 of 24 random bytes, the
// Standard Webhooks form. (Affiliates' secrets made before were whsec_ + 32 alphanumerics,
// which is valid base64 too: their receivers keep working.)
func newWebhookSecret() string {
	key := make([]byte, webhookSecretBytes)
	_, _ = crand.Read(key) // crypto/rand.Read never fails (it panics on a broken kernel source)
	return webhookSecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// run delivers every due delivery and returns how many it attempted. Runs never overlap in
// this process: a run that finds another in progress asks it to look again and returns at
// once (the running one then picks up whatever this one would have). Across processes the
// per-delivery claim in the database keeps a delivery from being sent twice at once.
func (s *webhookSender) run(ctx context.Context) (int, error) {
	total := 0
	err := s.worker.Exclusive(ctx, func(next func() bool) error {
		for next() {
			n, more, err := s.runBatch(ctx)
			total += n
			if err != nil {
				return err
			}
			if more {
				s.worker.Again() // more may be due: a full batch, or an endpoint's next event
			}
		}
		return nil
	})
	return total, err
}

// headOfLine keeps due only the pending rows an endpoint may receive now: none of a disabled
// endpoint, and only its oldest pending one (an earlier pending row of the same endpoint is
// its head of line). Affiliates' rows have no order between them.
const headOfLine = `([[webhook_deliveries.webhook]] = '' OR (
	EXISTS (SELECT 1 FROM {{webhooks}} w WHERE w.[[id]] = [[webhook_deliveries.webhook]] AND w.[[active]] = TRUE)
	AND NOT EXISTS (SELECT 1 FROM {{webhook_deliveries}} e WHERE e.[[webhook]] = [[webhook_deliveries.webhook]]
		AND e.[[status]] = {:pending} AND e.[[id]] < [[webhook_deliveries.id]])))`

// runBatch delivers up to webhookBatch due deliveries, webhookParallel at a time. It returns
// how many it picked up and whether another pass may find more: a full batch, or an endpoint
// whose delivery succeeded (its next event is now the head of its line).
func (s *webhookSender) runBatch(ctx context.Context) (int, bool, error) {
	var due []*core.Record
	err := s.app.RecordQuery(collections.WebhookDeliveries).
		AndWhere(dbx.HashExp{collections.FieldStatus: collections.WebhookDeliveryPending}).
		AndWhere(dbx.NewExp("[[next_attempt_at]] <= {:now}", dbx.Params{"now": store.DBTime(s.now())})).
		AndWhere(dbx.NewExp(headOfLine, dbx.Params{"pending": collections.WebhookDeliveryPending})).
		OrderBy(collections.WebhookDeliveryNextAttemptAt, core.FieldNameId).
		Limit(webhookBatch).
		All(&due)
	if err != nil {
		return 0, false, fmt.Errorf("find due webhook deliveries: %w", err)
	}
	sem := make(chan struct{}, webhookParallel)
	var wg sync.WaitGroup
	var advanced atomic.Bool
	for _, d := range due {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sent, err := s.deliver(ctx, d)
			if err != nil && ctx.Err() == nil {
				s.app.Logger().Error("webhook delivery", "delivery", d.Id, "error", err)
			}
			if sent && d.GetString(collections.WebhookDeliveryWebhook) != "" {
				advanced.Store(true)
			}
		}()
	}
	wg.Wait()
	return len(due), len(due) == webhookBatch || advanced.Load(), nil
}

// errEndpointOff: the delivery's endpoint was disabled after the batch was read.
var errEndpointOff = errors.New("endpoint disabled")

// deliver claims one delivery, sends it outside any transaction and records the outcome. It
// reports whether the delivery was sent.
func (s *webhookSender) deliver(ctx context.Context, d *core.Record) (bool, error) {
	now := s.now().UTC()
	lease, claimed, err := s.claim(d.Id, now)
	if err != nil || !claimed {
		return false, err // not claimed: another run or process has it, or it is no longer due
	}
	attempts := d.GetInt(collections.WebhookDeliveryAttempts)
	target, secret, err := s.destination(d)
	if err != nil {
		// The endpoint went off, or a database problem, not the receiver's: release the claim.
		if errors.Is(err, errEndpointOff) {
			err = nil
		}
		return false, errors.Join(err, s.release(d.Id, lease))
	}
	if err := checkWebhookURL(target, s.app.IsDev()); err != nil {
		return false, s.finish(d, lease, webhookOutcome{status: collections.WebhookDeliveryFailed, attempts: attempts, err: err.Error(), at: now})
	}
	body, err := webhookBody(d)
	if err != nil {
		return false, s.finish(d, lease, webhookOutcome{status: collections.WebhookDeliveryFailed, attempts: attempts, err: err.Error(), at: now})
	}

	code, answer, sendErr := s.send(ctx, d, target, secret, body, now)
	if ctx.Err() != nil {
		// Shutting down: the attempt does not count; the next process retries it.
		return false, s.release(d.Id, lease)
	}
	attempts++
	if sendErr == nil {
		return true, s.finish(d, lease, webhookOutcome{status: collections.WebhookDeliverySent, attempts: attempts, code: code, body: answer, at: now})
	}
	out := webhookOutcome{status: collections.WebhookDeliveryPending, attempts: attempts, code: code, body: answer, err: sendErr.Error(),
		at: now, next: now.Add(webhookBackoff(attempts, s.jitter()))}
	if attempts >= webhookMaxAttempts {
		out.status = collections.WebhookDeliveryFailed
		out.err = fmt.Sprintf("gave up after %d attempts: %s", attempts, out.err)
	}
	return false, s.finish(d, lease, out)
}

// destination is where a delivery goes and the secret it is signed with: an endpoint's
// current url and secret (an edit or a rotation applies to pending retries), or the url an
// affiliate's notification was queued for and the affiliate's current secret.
func (s *webhookSender) destination(d *core.Record) (string, string, error) {
	id := d.GetString(collections.WebhookDeliveryWebhook)
	if id == "" {
		secret, err := s.secretFor(d.GetString(collections.FieldAffiliate))
		return d.GetString(collections.WebhookDeliveryURL), secret, err
	}
	ep, err := s.app.FindRecordById(collections.Webhooks, id)
	if err != nil {
		return "", "", fmt.Errorf("find webhook %s: %w", id, err)
	}
	if !ep.GetBool(collections.WebhookActive) {
		return "", "", errEndpointOff
	}
	return ep.GetString(collections.WebhookURL), ep.GetString(collections.WebhookSecret), nil
}

// claim moves a due delivery's next_attempt_at to now+lease. Only one of several concurrent
// claimers sees a row affected (SQLite serializes the writes), so only it sends. The lease
// value is the claim's token for writing the outcome.
func (s *webhookSender) claim(id string, now time.Time) (string, bool, error) {
	lease := store.DBTime(now.Add(webhookLease))
	res, err := s.app.DB().NewQuery(
		"UPDATE {{webhook_deliveries}} SET [[next_attempt_at]] = {:lease}, [[updated]] = {:now} " +
			"WHERE [[id]] = {:id} AND [[status]] = {:pending} AND [[next_attempt_at]] <= {:now}").
		Bind(dbx.Params{"lease": lease, "now": store.DBTime(now), "id": id, "pending": collections.WebhookDeliveryPending}).
		Execute()
	if err != nil {
		return "", false, fmt.Errorf("claim webhook delivery %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return "", false, fmt.Errorf("claim webhook delivery %s: %w", id, err)
	}
	return lease, n == 1, nil
}

// release makes a claimed delivery due again without counting an attempt.
func (s *webhookSender) release(id, lease string) error {
	_, err := s.app.DB().NewQuery(
		"UPDATE {{webhook_deliveries}} SET [[next_attempt_at]] = {:now}, [[updated]] = {:now} " +
			"WHERE [[id]] = {:id} AND [[status]] = {:pending} AND [[next_attempt_at]] = {:lease}").
		Bind(dbx.Params{"now": store.DBTime(s.now()), "id": id, "pending": collections.WebhookDeliveryPending, "lease": lease}).
		Execute()
	if err != nil {
		return fmt.Errorf("release webhook delivery %s: %w", id, err)
	}
	return nil
}

// webhookOutcome is what one attempt leaves on the delivery.
type webhookOutcome struct {
	status   string
	attempts int
	code     int       // HTTP status, 0 when no response arrived
	body     string    // the start of the response
	err      string    // empty on success
	at       time.Time // when the attempt was made
	next     time.Time // next attempt, for a pending outcome
}

// publicReason is what the affiliate may read of a failed attempt: the HTTP status, or the
// kind of failure, never the dial error's detail (resolver addresses, DNS answers).
func (o webhookOutcome) publicReason() string {
	switch {
	case o.err == "":
		return ""
	case o.code > 0:
		return fmt.Sprintf("HTTP %d", o.code)
	case strings.Contains(o.err, "refused:"):
		return "address refused: the URL must resolve to a public address"
	default:
		return "no response: the connection failed or timed out"
	}
}

// finish writes an outcome, but only while the claim is still ours (its lease unchanged): a
// claim that expired mid-send may have been taken over, and the newer attempt's outcome wins.
// For an endpoint's delivery it also keeps the endpoint's failure streak, and a delivery given
// up disables its endpoint and mails every superuser, in the same transaction.
func (s *webhookSender) finish(d *core.Record, lease string, out webhookOutcome) error {
	result := attemptSent
	switch out.status {
	case collections.WebhookDeliveryPending:
		result = attemptRetry
	case collections.WebhookDeliveryFailed:
		result = attemptFailed
	}
	metricsOf(s.app).webhookAttempts.WithLabelValues(result).Inc()
	next := lease
	if out.status == collections.WebhookDeliveryPending {
		next = store.DBTime(out.next)
	}
	endpoint := d.GetString(collections.WebhookDeliveryWebhook)
	err := s.app.RunInTransaction(func(tx core.App) error {
		now := store.DBTime(s.now())
		res, err := tx.DB().NewQuery(
			"UPDATE {{webhook_deliveries}} SET [[status]] = {:status}, [[attempts]] = {:attempts}, [[response_status]] = {:code}, " +
				"[[response_body]] = {:body}, [[last_error]] = {:err}, [[reason]] = {:reason}, [[next_attempt_at]] = {:next}, " +
				"[[last_attempt_at]] = {:at}, [[updated]] = {:now} " +
				"WHERE [[id]] = {:id} AND [[status]] = {:pending} AND [[next_attempt_at]] = {:lease}").
			Bind(dbx.Params{
				"status": out.status, "attempts": out.attempts, "code": out.code, "body": truncateChars(out.body, webhookMaxResponse),
				"err": truncateChars(out.err, webhookMaxError), "reason": out.publicReason(), "next": next, "at": store.DBTime(out.at),
				"now": now, "id": d.Id, "pending": collections.WebhookDeliveryPending, "lease": lease,
			}).
			Execute()
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			s.app.Logger().Warn("webhook delivery claim expired before its outcome was recorded", "delivery", d.Id, "status", out.status)
			return err
		}
		if endpoint == "" {
			return nil
		}
		return s.endpointOutcome(tx, endpoint, out)
	})
	if err != nil {
		return fmt.Errorf("record webhook delivery %s as %s: %w", d.Id, out.status, err)
	}
	return nil
}

// endpointOutcome keeps an endpoint's failure streak; a delivery given up disables it
// (superusers enable it again in the back office) and tells every superuser by mail.
func (s *webhookSender) endpointOutcome(tx core.App, endpoint string, out webhookOutcome) error {
	now := s.now().UTC()
	if out.status == collections.WebhookDeliverySent {
		_, err := tx.DB().NewQuery("UPDATE {{webhooks}} SET [[failure_streak]] = 0 WHERE [[id]] = {:id} AND [[failure_streak]] != 0").
			Bind(dbx.Params{"id": endpoint}).Execute()
		return err
	}
	if _, err := tx.DB().NewQuery("UPDATE {{webhooks}} SET [[failure_streak]] = [[failure_streak]] + 1 WHERE [[id]] = {:id}").
		Bind(dbx.Params{"id": endpoint}).Execute(); err != nil {
		return err
	}
	if out.status != collections.WebhookDeliveryFailed {
		return nil
	}
	reason := truncateChars("Every delivery attempt failed for about 3 days; the last: "+out.err, webhookMaxError)
	res, err := tx.DB().NewQuery("UPDATE {{webhooks}} SET [[active]] = FALSE, [[disabled_at]] = {:now}, [[disabled_reason]] = {:reason}, " +
		"[[updated]] = {:now} WHERE [[id]] = {:id} AND [[active]] = TRUE").
		Bind(dbx.Params{"id": endpoint, "now": store.DBTime(now), "reason": reason}).Execute()
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // already disabled
	}
	s.app.Logger().Warn("webhook endpoint disabled after persistent failure", "webhook", endpoint, "reason", reason)
	return queueWebhookDisabledMail(tx, endpoint, reason, now)
}

// secretFor looks the affiliate's signing secret up at send time, so a rotated secret applies
// to pending retries. An affiliate whose webhook_url predates secrets gets one here.
func (s *webhookSender) secretFor(affiliateID string) (string, error) {
	a, err := s.app.FindRecordById(collections.Affiliates, affiliateID)
	if err != nil {
		return "", fmt.Errorf("find affiliate %s for its webhook secret: %w", affiliateID, err)
	}
	if secret := a.GetString(collections.AffiliateWebhookSecret); secret != "" {
		return secret, nil
	}
	_, err = s.app.DB().NewQuery(
		"UPDATE {{affiliates}} SET [[webhook_secret]] = {:secret} WHERE [[id]] = {:id} AND [[webhook_secret]] = ''").
		Bind(dbx.Params{"secret": newWebhookSecret(), "id": affiliateID}).
		Execute()
	if err != nil {
		return "", fmt.Errorf("generate webhook secret of affiliate %s: %w", affiliateID, err)
	}
	var secret string
	err = s.app.DB().Select(collections.AffiliateWebhookSecret).From(collections.Affiliates).
		Where(dbx.HashExp{core.FieldNameId: affiliateID}).Row(&secret)
	if err != nil {
		return "", fmt.Errorf("read webhook secret of affiliate %s: %w", affiliateID, err)
	}
	return secret, nil
}

// send POSTs one signed delivery. It returns the response status, the start of the response
// body (for the delivery log) and an error for anything but 2xx.
func (s *webhookSender) send(ctx context.Context, d *core.Record, target, secret string, body []byte, now time.Time) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, "", fmt.Errorf("build request: %w", err)
	}
	eventID := d.GetString(collections.WebhookDeliveryEventID)
	signature, err := standardSignature(secret, eventID, now, body)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", webhookUserAgent)
	req.Header.Set(standardwebhooks.HeaderWebhookID, eventID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, signature)
	if d.GetString(collections.WebhookDeliveryWebhook) == "" {
		// Deprecated: the affiliates' previous scheme, kept for one release.
		req.Header.Set("X-PBA-Event", d.GetString(collections.WebhookDeliveryEvent))
		req.Header.Set("X-PBA-Delivery", eventID)
		req.Header.Set("X-PBA-Signature", signWebhook(secret, now, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4*webhookMaxResponse))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // for connection reuse
	answer := strings.ToValidUTF8(string(head), "")
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, answer, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, answer, fmt.Errorf("HTTP %s (redirects are not followed)", resp.Status)
	default:
		return resp.StatusCode, answer, fmt.Errorf("HTTP %s", resp.Status)
	}
}

// standardSignature is the webhook-signature header, made by the Standard Webhooks library.
// A secret that is not whsec_ + base64 (none is generated so) signs with its bytes as the key.
func standardSignature(secret, eventID string, at time.Time, body []byte) (string, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		if wh, err = standardwebhooks.NewWebhookRaw([]byte(secret)); err != nil {
			return "", fmt.Errorf("signing key: %w", err)
		}
	}
	sig, err := wh.Sign(eventID, at, body)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}

// signWebhook is the deprecated X-PBA-Signature value: the timestamp is inside the MAC so a
// captured request cannot be replayed later with a fresh timestamp.
func signWebhook(secret string, at time.Time, body []byte) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// webhookBody is the JSON sent, the same bytes on every retry. An endpoint's event is stored
// as sent ({"type", "timestamp", "data"}). An affiliate's notification is its stored payload
// with the Standard Webhooks fields (type, timestamp) and the previous scheme's (event, id,
// created) around the data.
func webhookBody(d *core.Record) ([]byte, error) {
	raw := []byte(d.GetString(collections.WebhookDeliveryPayload))
	if d.GetString(collections.WebhookDeliveryWebhook) != "" {
		return raw, nil
	}
	payload := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 && string(bytes.TrimSpace(raw)) != "null" {
		if err := json.Unmarshal(raw, &payload); err != nil {
			payload = map[string]any{"data": json.RawMessage(raw)} // not an object: send it as data
		}
	}
	if _, ok := payload["event"]; !ok {
		payload["event"] = d.GetString(collections.WebhookDeliveryEvent)
	}
	created := d.GetDateTime(collections.FieldCreated).Time().UTC()
	payload["type"] = payload["event"]
	payload["timestamp"] = created.Format(time.RFC3339Nano)
	payload["id"] = d.GetString(collections.WebhookDeliveryEventID)
	payload["created"] = created.Format(time.RFC3339)
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode webhook payload: %w", err)
	}
	return body, nil
}

// checkWebhookURL enforces the URL policy described at the top of this section.
func checkWebhookURL(raw string, dev bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("refused: webhook_url is not a valid URL: %w", err)
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("refused: webhook_url must be an absolute http(s) URL, got scheme %q", u.Scheme)
	}
	if u.User != nil {
		return errors.New("refused: webhook_url must not contain credentials")
	}
	if u.Scheme == "http" && !dev {
		switch strings.ToLower(u.Hostname()) {
		case "localhost", "127.0.0.1", "::1":
		default:
			return errors.New("refused: webhook_url must use https (plain http only for localhost)")
		}
	}
	return nil
}

// refuseNonPublicAddress is the dialer's last word on where a webhook may connect: only to
// public unicast addresses (hooks/internal/netpolicy), checked on the resolved IP so DNS tricks
// cannot reach the server's own network.
func refuseNonPublicAddress(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("refused: %w", err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("refused: unparsable address %q", host)
	}
	if !netpolicy.Public(ip) { // IPv4 inside IPv6 (NAT64, 6to4, Teredo, compatible) judged too
		return fmt.Errorf("refused: %s is not a public address (set PBA_WEBHOOK_ALLOW_PRIVATE=true to allow)", ip.Unmap())
	}
	return nil
}

// webhookBackoff is the delay before the attempt after the given number of failed ones:
// 1m, 2m, 4m, … capped at 6h, scaled by a jitter factor in [0.8, 1.2) from r in [0, 1).
func webhookBackoff(failed int, r float64) time.Duration {
	d := webhookBackoffMax
	if failed >= 1 && failed <= 20 {
		d = min(webhookBackoffBase<<(failed-1), webhookBackoffMax)
	}
	return time.Duration(float64(d) * (1 - webhookJitter + 2*webhookJitter*r))
}

// truncateChars cuts s to max characters (the unit of a text field's Max), keeping valid
// UTF-8.
func truncateChars(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max])
}
