package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
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
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/security"

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

// Delivery of the outbox. Each delivery is a POST of the event's JSON to the affiliate's
// webhook_url, signed with the affiliate's webhook_secret:
//
//	X-PBA-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>." + body)>
//
// Receivers recompute the HMAC over the raw body, compare in constant time, reject old
// timestamps (replays) and dedupe on X-PBA-Delivery, which is the event id and stays the same
// across retries (delivery is at least once).
//
// URL policy: only http and https. Outside dev mode (app.IsDev()) plain http is refused unless
// the host is localhost, 127.0.0.1 or ::1, so secrets and sales data never cross the network
// unencrypted. Against SSRF, the dialer refuses loopback, private, link-local and other
// non-public addresses after DNS resolution (so a name rebound to 127.0.0.1 is refused too),
// unless Config.WebhookAllowPrivateNetworks is set (local development, tests, intranet
// receivers). A response body is never stored or shown (last_error holds the status line or
// transport error only) and redirects are never followed.
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
	// webhookParallel is how many deliveries of a batch are in flight at once, so one slow
	// receiver does not hold up everyone else's notifications.
	webhookParallel = 4
	// webhookMaxAttempts is after how many failed attempts a delivery is given up (about 8.5
	// hours of retries with the backoff below).
	webhookMaxAttempts = 10
	// webhookBackoffBase and webhookBackoffMax shape the exponential retry schedule
	// (1m, 2m, 4m, … capped at 6h), each delay jittered by ±webhookJitter so retries of many
	// deliveries to one receiver spread out.
	webhookBackoffBase = time.Minute
	webhookBackoffMax  = 6 * time.Hour
	webhookJitter      = 0.2
	// webhookMaxError is the length of last_error (the field's limit, in characters).
	webhookMaxError = 1000
	// webhookSecretPrefix marks the affiliate's signing secret so it is recognisable in a
	// receiver's configuration (and in a secret scanner).
	webhookSecretPrefix = "whsec_"
	// webhookSecretLength is the random part of a secret (alphanumeric, ~190 bits).
	webhookSecretLength = 32
	// webhookCronJob is the id of the cron job in the dashboard.
	webhookCronJob = "pbaWebhooks"
)

// webhookSender delivers due webhook_deliveries. The clock, the HTTP client and the jitter
// source are fields so tests can drive retries and point the client at an httptest server.
type webhookSender struct {
	app    core.App
	client *http.Client
	now    func() time.Time
	jitter func() float64 // in [0, 1)

	// worker runs the deliveries while the app serves, woken when one is created, and keeps
	// runs from overlapping in this process.
	worker *worker.Worker
}

// newWebhookSender returns a sender with the production clock, jitter and HTTP client
// (10 s timeout, redirects returned as responses instead of followed: a redirect to another
// host would carry the signed payload somewhere the affiliate did not configure).
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
		now:    time.Now,
		jitter: rand.Float64,
	}
	s.worker = worker.New(func(ctx context.Context) error {
		_, err := s.run(ctx)
		metricsOf(app).jobDone(webhookCronJob, err) // the job's runs are the worker's, woken by cron or a new sale
		return err
	}, func(err error) {
		app.Logger().Error("webhook deliveries", "error", err)
	})
	return s
}

// registerAffiliateWebhooks gives affiliates with a webhook_url a signing secret and delivers
// the outbox that enqueueConversionWebhook fills: a cron job (pbaWebhooks, every minute,
// runnable from the dashboard) retries what is due, and a worker started with the server
// delivers new notifications right after their transaction commits.
func registerAffiliateWebhooks(app core.App, cfg Config) {
	s := newWebhookSender(app, cfg.WebhookAllowPrivateNetworks)

	ensureSecret := func(e *core.RecordEvent) error {
		ensureWebhookSecret(e.Record)
		return e.Next()
	}
	app.OnRecordCreate(collections.Affiliates).BindFunc(ensureSecret)
	app.OnRecordUpdate(collections.Affiliates).BindFunc(ensureSecret)

	// AfterCreateSuccess runs after the conversion's transaction commits, so the worker finds
	// the row; signal never blocks, so ingestion never waits for delivery.
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
}

// ensureWebhookSecret gives an affiliate with a webhook_url a signing secret if it has none.
// Clearing the secret (superusers only) therefore rotates it on the same save.
func ensureWebhookSecret(r *core.Record) {
	if r.GetString(collections.AffiliateWebhookURL) != "" && r.GetString(collections.AffiliateWebhookSecret) == "" {
		r.Set(collections.AffiliateWebhookSecret, newWebhookSecret())
	}
}

// newWebhookSecret returns a fresh signing secret.
func newWebhookSecret() string {
	return webhookSecretPrefix + security.RandomString(webhookSecretLength)
}

// run delivers every due delivery and returns how many it attempted. Runs never overlap in
// this process: a run that finds another in progress asks it to look again and returns at
// once (the running one then picks up whatever this one would have). Across processes the
// per-delivery claim in the database keeps a delivery from being sent twice at once.
func (s *webhookSender) run(ctx context.Context) (int, error) {
	total := 0
	err := s.worker.Exclusive(ctx, func(next func() bool) error {
		for next() {
			n, err := s.runBatch(ctx)
			total += n
			if err != nil {
				return err
			}
			if n == webhookBatch {
				s.worker.Again() // more may be due
			}
		}
		return nil
	})
	return total, err
}

// runBatch delivers up to webhookBatch due deliveries, webhookParallel at a time, and returns
// how many it picked up.
func (s *webhookSender) runBatch(ctx context.Context) (int, error) {
	var due []*core.Record
	err := s.app.RecordQuery(collections.WebhookDeliveries).
		AndWhere(dbx.HashExp{collections.FieldStatus: collections.WebhookDeliveryPending}).
		AndWhere(dbx.NewExp("[[next_attempt_at]] <= {:now}", dbx.Params{"now": store.DBTime(s.now())})).
		OrderBy(collections.WebhookDeliveryNextAttemptAt, core.FieldNameId).
		Limit(webhookBatch).
		All(&due)
	if err != nil {
		return 0, fmt.Errorf("find due webhook deliveries: %w", err)
	}
	sem := make(chan struct{}, webhookParallel)
	var wg sync.WaitGroup
	for _, d := range due {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.deliver(ctx, d); err != nil && ctx.Err() == nil {
				s.app.Logger().Error("webhook delivery", "delivery", d.Id, "error", err)
			}
		}()
	}
	wg.Wait()
	return len(due), nil
}

// deliver claims one delivery, sends it outside any transaction and records the outcome.
func (s *webhookSender) deliver(ctx context.Context, d *core.Record) error {
	now := s.now().UTC()
	lease, claimed, err := s.claim(d.Id, now)
	if err != nil || !claimed {
		return err // not claimed: another run or process has it, or it is no longer due
	}
	target := d.GetString(collections.WebhookDeliveryURL)
	if err := checkWebhookURL(target, s.app.IsDev()); err != nil {
		return s.finish(d.Id, lease, webhookOutcome{status: collections.WebhookDeliveryFailed, attempts: d.GetInt(collections.WebhookDeliveryAttempts), err: err.Error()})
	}
	secret, err := s.secretFor(d.GetString(collections.FieldAffiliate))
	if err != nil {
		// A database problem, not the receiver's: release the claim and try again next run.
		return errors.Join(err, s.release(d.Id, lease))
	}
	body, err := webhookBody(d)
	if err != nil {
		return s.finish(d.Id, lease, webhookOutcome{status: collections.WebhookDeliveryFailed, attempts: d.GetInt(collections.WebhookDeliveryAttempts), err: err.Error()})
	}

	code, sendErr := s.send(ctx, target, d.GetString(collections.WebhookDeliveryEvent), d.GetString(collections.WebhookDeliveryEventID), secret, body, now)
	if ctx.Err() != nil {
		// Shutting down: the attempt does not count; the next process retries it.
		return s.release(d.Id, lease)
	}
	attempts := d.GetInt(collections.WebhookDeliveryAttempts) + 1
	if sendErr == nil {
		return s.finish(d.Id, lease, webhookOutcome{status: collections.WebhookDeliverySent, attempts: attempts, code: code})
	}
	out := webhookOutcome{status: collections.WebhookDeliveryPending, attempts: attempts, code: code, err: sendErr.Error(),
		next: now.Add(webhookBackoff(attempts, s.jitter()))}
	if attempts >= webhookMaxAttempts {
		out.status = collections.WebhookDeliveryFailed
		out.err = fmt.Sprintf("gave up after %d attempts: %s", attempts, out.err)
	}
	return s.finish(d.Id, lease, out)
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
	err      string    // empty on success
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
func (s *webhookSender) finish(id, lease string, out webhookOutcome) error {
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
	res, err := s.app.DB().NewQuery(
		"UPDATE {{webhook_deliveries}} SET [[status]] = {:status}, [[attempts]] = {:attempts}, " +
			"[[response_status]] = {:code}, [[last_error]] = {:err}, [[reason]] = {:reason}, [[next_attempt_at]] = {:next}, [[updated]] = {:now} " +
			"WHERE [[id]] = {:id} AND [[status]] = {:pending} AND [[next_attempt_at]] = {:lease}").
		Bind(dbx.Params{
			"status": out.status, "attempts": out.attempts, "code": out.code, "err": webhookErrorText(out.err), "reason": out.publicReason(),
			"next": next, "now": store.DBTime(s.now()), "id": id, "pending": collections.WebhookDeliveryPending, "lease": lease,
		}).
		Execute()
	if err != nil {
		return fmt.Errorf("record webhook delivery %s as %s: %w", id, out.status, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		s.app.Logger().Warn("webhook delivery claim expired before its outcome was recorded", "delivery", id, "status", out.status)
	}
	return nil
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

// send POSTs one signed notification. It returns the response status and an error for
// anything but 2xx; the response body is drained (for connection reuse) but never kept.
func (s *webhookSender) send(ctx context.Context, target, event, eventID, secret string, body []byte, now time.Time) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", webhookUserAgent)
	req.Header.Set("X-PBA-Event", event)
	req.Header.Set("X-PBA-Delivery", eventID)
	req.Header.Set("X-PBA-Signature", signWebhook(secret, now, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, fmt.Errorf("HTTP %s (redirects are not followed)", resp.Status)
	default:
		return resp.StatusCode, fmt.Errorf("HTTP %s", resp.Status)
	}
}

// signWebhook is the X-PBA-Signature value: the timestamp is inside the MAC so a captured
// request cannot be replayed later with a fresh timestamp.
func signWebhook(secret string, at time.Time, body []byte) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// webhookBody is the JSON sent: the stored payload plus id (the event id, for dedupe) and
// created (when the event happened). It is the same bytes on every retry.
func webhookBody(d *core.Record) ([]byte, error) {
	raw := []byte(d.GetString(collections.WebhookDeliveryPayload))
	payload := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 && string(bytes.TrimSpace(raw)) != "null" {
		if err := json.Unmarshal(raw, &payload); err != nil {
			payload = map[string]any{"data": json.RawMessage(raw)} // not an object: send it as data
		}
	}
	if _, ok := payload["event"]; !ok {
		payload["event"] = d.GetString(collections.WebhookDeliveryEvent)
	}
	payload["id"] = d.GetString(collections.WebhookDeliveryEventID)
	payload["created"] = d.GetDateTime(collections.FieldCreated).Time().UTC().Format(time.RFC3339)
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

// webhookErrorText cuts an error message to last_error's limit (in characters, the unit of a
// text field's Max), keeping valid UTF-8.
func webhookErrorText(s string) string {
	if utf8.RuneCountInString(s) <= webhookMaxError {
		return s
	}
	return string([]rune(s)[:webhookMaxError])
}
