package hooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/security"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/worker"
)

// Tunables of the mail worker.
const (
	// messagingBatchSize is Resend's batch limit.
	messagingBatchSize = 100
	// messagingSingles is how many transactional deliveries one query picks up.
	messagingSingles = 50
	// messagingInsertChunk is how many delivery rows one transaction writes when an audience
	// is resolved (short transactions keep the single write connection available).
	messagingInsertChunk = 500
	// messagingMaxAttempts is after how many failed runs a delivery is given up.
	messagingMaxAttempts = 8
	// messagingBackoffBase and messagingBackoffMax shape retries across runs: 1m, 2m, 4m … 1h.
	messagingBackoffBase = time.Minute
	messagingBackoffMax  = time.Hour
	// messagingCronJob is the dashboard id of the worker's cron job.
	messagingCronJob = "pbaMessages"
	// messagingSecretFile keeps the unsubscribe-token key in the data dir (never in a collection).
	messagingSecretFile = ".pba_mail_secret"
	// messagingMaxError is the length of deliveries.error.
	messagingMaxError = 1000
	// messagingLease names the database lease a process holds while it sends, so two
	// processes on one database never send the same delivery; messagingLeaseTTL is how long
	// a crashed holder blocks the others. Renewed before every send.
	messagingLease    = "mail-worker"
	messagingLeaseTTL = 5 * time.Minute
	// digestCronJob is the dashboard id of the weekly digest job (hourly: each affiliate's
	// week ends at midnight in their own time zone).
	digestCronJob = "pbaDigest"
)

// messagingEngine turns lifecycle events and scheduled broadcasts into deliveries rows and
// sends them outside any transaction. The clock, the sleep and the sender factory are fields
// so tests can drive retries and restarts.
type messagingEngine struct {
	app    core.App
	cfg    Config
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	resend *resendSender // nil without RESEND_API_KEY

	// worker runs the engine while the app serves and keeps runs from overlapping in this
	// process; across processes the messagingLease row does, held under holder.
	worker *worker.Worker
	holder string

	// commissionsSeen is up to when new commissions were scanned for mail (zero: not yet in
	// this process). Only runs touch it, and runs are exclusive.
	commissionsSeen time.Time

	keyMu sync.Mutex
	key   []byte // unsubscribe-token HMAC key, loaded on first use
}

// newMessagingEngine builds the engine; a malformed RESEND_BASE_URL is an error at start.
func newMessagingEngine(app core.App, cfg Config) (*messagingEngine, error) {
	e := &messagingEngine{app: app, cfg: cfg, now: time.Now, sleep: sleepCtx, holder: security.RandomString(15)}
	e.worker = worker.New(e.run, func(err error) { app.Logger().Error("mail worker", "error", err) })
	if cfg.ResendAPIKey != "" {
		s, err := newResendSender(cfg.ResendAPIKey, cfg.ResendBaseURL, func(ctx context.Context, d time.Duration) error { return e.sleep(ctx, d) })
		if err != nil {
			return nil, err
		}
		e.resend = s
	}
	return e, nil
}

// registerMessaging wires lifecycle emails, broadcasts, the unsubscribe and Resend webhook
// routes and the pbaMessages cron job into app.
func registerMessaging(app core.App, cfg Config) {
	e, err := newMessagingEngine(app, cfg)
	if err != nil {
		// Only a malformed RESEND_BASE_URL gets here; fail loudly at start, like MustRegister.
		panic(fmt.Errorf("pbaffiliate messaging: %w", err))
	}
	e.bind()
}

// bind registers the engine's hooks, routes, cron job and worker lifecycle.
func (e *messagingEngine) bind() {
	app := e.app
	// After success: the affiliate's transaction has committed, so the delivery is written
	// right after it and the mail is never sent inside a transaction.
	app.OnRecordAfterCreateSuccess(collections.Affiliates).BindFunc(func(ev *core.RecordEvent) error {
		switch ev.Record.GetString(collections.FieldStatus) {
		case collections.AffiliatePending:
			e.queueLifecycleLogged(ev.App, ev.Record, templateApplicationReceived)
		case collections.AffiliateApproved: // auto-approved signups
			e.queueLifecycleLogged(ev.App, ev.Record, templateApproved)
		}
		return ev.Next()
	})
	app.OnRecordAfterUpdateSuccess(collections.Affiliates).BindFunc(func(ev *core.RecordEvent) error {
		before, after := ev.Record.Original().GetString(collections.FieldStatus), ev.Record.GetString(collections.FieldStatus)
		if before != after {
			switch after {
			case collections.AffiliateApproved:
				e.queueLifecycleLogged(ev.App, ev.Record, templateApproved)
			case collections.AffiliateRejected:
				e.queueLifecycleLogged(ev.App, ev.Record, templateRejected)
			}
		}
		return ev.Next()
	})
	// Payouts: the engine announces its raw-SQL changes by re-saving the record, and admins
	// mark manual payouts paid in the dashboard; both land here once the change committed.
	app.OnRecordAfterUpdateSuccess(collections.Payouts).BindFunc(func(ev *core.RecordEvent) error {
		var template string
		switch ev.Record.GetString(collections.FieldStatus) {
		case collections.PayoutPaid:
			template = templatePayoutSent
		case collections.PayoutFailed:
			template = templatePayoutFailed
		default:
			return ev.Next()
		}
		e.queuePayoutLogged(ev.App, ev.Record, template)
		return ev.Next()
	})
	app.OnRecordAfterCreateSuccess(collections.TierChanges).BindFunc(func(ev *core.RecordEvent) error {
		e.queueTierLogged(ev.App, ev.Record)
		return ev.Next()
	})
	app.OnRecordValidate(collections.MailTemplates).BindFunc(validateMailTemplate)
	e.bindAuthMail()
	kickOnScheduled := func(ev *core.RecordEvent) error {
		if ev.Record.GetString(collections.FieldStatus) == collections.MessageScheduled {
			e.signal()
		}
		return ev.Next()
	}
	app.OnRecordAfterCreateSuccess(collections.Messages).BindFunc(kickOnScheduled)
	app.OnRecordAfterUpdateSuccess(collections.Messages).BindFunc(kickOnScheduled)

	app.Cron().MustAdd(messagingCronJob, "* * * * *", e.worker.Tick)
	app.Cron().MustAdd(digestCronJob, "5 * * * *", func() {
		if err := e.queueDigests(); err != nil {
			e.app.Logger().Error("weekly digest", "error", err)
		}
		e.signal()
	})
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		if err := ensureMailTemplates(se.App); err != nil {
			return err
		}
		e.bindRoutes(se)
		e.worker.Start() // also sends what was queued while the server was down
		return se.Next()
	})
	app.OnTerminate().BindFunc(func(te *core.TerminateEvent) error {
		e.worker.Stop() // cancels in-flight sends, waits for runs before the database closes
		return te.Next()
	})
}

// queueLifecycleLogged queues a lifecycle email; a failure is logged, never returned, because
// the affiliate's change has already committed and must not look failed to the caller.
func (e *messagingEngine) queueLifecycleLogged(app core.App, affiliate *core.Record, template string) {
	if err := e.queueLifecycle(app, affiliate, template); err != nil {
		app.Logger().Error("queue lifecycle email", "affiliate", affiliate.Id, "template", template, "error", err)
		return
	}
	e.signal()
}

// queuePayoutLogged queues the email about a payout, once per payout and template (the key
// carries the payout id, which prepare reads back to fill in the amount and reference).
// Payout mail is transactional: preferences and suppressions never stop it.
func (e *messagingEngine) queuePayoutLogged(app core.App, payout *core.Record, template string) {
	affiliate, err := app.FindRecordById(collections.Affiliates, payout.GetString(collections.FieldAffiliate))
	if err == nil && affiliate.Email() != "" {
		_, err = insertDelivery(app.DB(), deliveryRow{
			Affiliate: affiliate.Id, Email: affiliate.Email(), Template: template, Status: collections.DeliveryQueued,
			IdempotencyKey: payoutKeyPrefix + template + ":" + payout.Id,
		}, e.now())
	}
	if err != nil {
		app.Logger().Error("queue payout email", "payout", payout.Id, "template", template, "error", err)
		return
	}
	e.signal()
}

// payoutKeyPrefix starts the idempotency key of payout mails: payout:<template>:<payout id>.
const payoutKeyPrefix = "payout:"

// payoutMailData adds the payout's figures to d when the delivery is about a payout.
func (e *messagingEngine) payoutMailData(key string, d *mailData) error {
	rest, ok := strings.CutPrefix(key, payoutKeyPrefix)
	if !ok {
		return nil
	}
	_, payoutID, _ := strings.Cut(rest, ":")
	p, err := e.app.FindRecordById(collections.Payouts, payoutID)
	if err != nil {
		return fmt.Errorf("payout %s of a payout mail: %w", payoutID, err)
	}
	cur := p.GetString(collections.FieldCurrency)
	d.Amount = money.Format(int64(p.GetInt(collections.FieldAmount)), cur) + " " + strings.ToUpper(cur)
	d.Reference = p.GetString(collections.PayoutStripeTransferID)
	if d.Reference == "" {
		d.Reference = p.GetString("reference")
	}
	d.Reason = p.GetString(collections.PayoutError)
	return nil
}

// queueLifecycle writes the delivery of a lifecycle email, once per affiliate and template.
func (e *messagingEngine) queueLifecycle(app core.App, affiliate *core.Record, template string) error {
	email := affiliate.Email()
	if email == "" {
		return nil
	}
	_, err := insertDelivery(app.DB(), deliveryRow{
		Affiliate: affiliate.Id, Email: email, Template: template, Status: collections.DeliveryQueued,
		IdempotencyKey: "lifecycle:" + template + ":" + affiliate.Id,
	}, e.now())
	return err
}

// deliveryRow is a deliveries row as the worker reads and writes it.
type deliveryRow struct {
	ID             string `db:"id"`
	Message        string `db:"message"`
	Affiliate      string `db:"affiliate"`
	Email          string `db:"email"`
	Template       string `db:"template"`
	Status         string `db:"status"`
	IdempotencyKey string `db:"idempotency_key"`
	Marketing      bool   `db:"marketing"`
	Attempts       int    `db:"attempts"`
	Error          string `db:"error"`
	Data           string `db:"data"`
	ProviderID     string `db:"provider_id"`

	// Due is when a new row may be sent (zero: at once); written, never read back.
	Due time.Time `db:"-"`
}

// deliveryColumns are the columns of deliveryRow the worker reads.
var deliveryColumns = []string{
	core.FieldNameId, collections.DeliveryMessage, collections.FieldAffiliate, collections.DeliveryEmail, collections.DeliveryTemplate,
	collections.FieldStatus, collections.DeliveryIdempotencyKey, collections.DeliveryMarketing, collections.DeliveryAttempts,
	collections.DeliveryError, collections.DeliveryData,
}

// insertDelivery writes a delivery unless one with its idempotency key exists; it reports
// whether a row was written. Raw SQL: an upsert is the only race-free "create once".
func insertDelivery(db dbx.Builder, d deliveryRow, now time.Time) (bool, error) {
	ts := webhookDBTime(now)
	due, sentAt, attempts := ts, "", 0
	if !d.Due.IsZero() {
		due = webhookDBTime(d.Due)
	}
	if d.Status == collections.DeliverySent {
		sentAt, attempts = ts, 1
	}
	data := d.Data
	if data == "" {
		data = "null"
	}
	res, err := db.NewQuery(
		"INSERT INTO {{deliveries}} ([[id]], [[message]], [[affiliate]], [[email]], [[template]], [[provider_id]], [[status]], " +
			"[[idempotency_key]], [[marketing]], [[error]], [[attempts]], [[next_attempt_at]], [[sent_at]], [[data]], [[created]], [[updated]]) " +
			"VALUES ({:id}, {:message}, {:affiliate}, {:email}, {:template}, {:provider}, {:status}, {:key}, {:marketing}, {:error}, {:attempts}, {:due}, {:sent}, {:data}, {:now}, {:now}) " +
			"ON CONFLICT ([[idempotency_key]]) DO NOTHING").
		Bind(dbx.Params{
			"id": core.GenerateDefaultRandomId(), "message": d.Message, "affiliate": d.Affiliate, "email": d.Email,
			"template": d.Template, "provider": d.ProviderID, "status": d.Status, "key": d.IdempotencyKey, "marketing": d.Marketing,
			"error": messagingErrorText(d.Error), "attempts": attempts, "due": due, "sent": sentAt, "data": data, "now": ts,
		}).Execute()
	if err != nil {
		return false, fmt.Errorf("insert delivery %s: %w", d.IdempotencyKey, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// errLeaseLost ends a run whose process no longer holds the mail lease.
var errLeaseLost = errors.New("mail lease taken over by another process")

// signal wakes the worker without ever blocking the caller.
func (e *messagingEngine) signal() { e.worker.Signal() }

// run starts due broadcasts, sends every due delivery and settles finished messages, under
// the mail lease. A run that finds another in progress asks it to look again and returns.
func (e *messagingEngine) run(ctx context.Context) error {
	return e.worker.Exclusive(ctx, func(next func() bool) error {
		held, err := acquireLease(e.app.DB(), messagingLease, e.holder, e.now(), messagingLeaseTTL)
		if err != nil {
			return err
		}
		if !held {
			return worker.ErrEnd // another process is sending; it looks again itself
		}
		for err == nil && next() {
			err = e.runOnce(ctx)
		}
		if errors.Is(err, errLeaseLost) {
			return worker.ErrEnd
		}
		if rerr := releaseLease(e.app.DB(), messagingLease, e.holder, e.now()); err == nil {
			err = rerr
		}
		return err
	})
}

// runOnce is one pass over everything due.
func (e *messagingEngine) runOnce(ctx context.Context) error {
	if err := e.startDueMessages(); err != nil {
		return err
	}
	if err := e.queueCommissionMails(); err != nil {
		return err
	}
	if err := e.sendDue(ctx); err != nil {
		return err
	}
	return e.settleMessages()
}

// startDueMessages claims scheduled broadcasts whose time has come and turns the audience of
// every sending message not yet resolved into deliveries. A crash mid-resolution leaves
// resolved_at empty, so the next run resolves again; the idempotency keys make that a no-op
// for rows already written.
func (e *messagingEngine) startDueMessages() error {
	now := webhookDBTime(e.now())
	_, err := e.app.DB().NewQuery(
		"UPDATE {{messages}} SET [[status]] = {:sending}, [[updated]] = {:now} " +
			"WHERE [[status]] = {:scheduled} AND [[kind]] = {:broadcast} AND ([[send_at]] = '' OR [[send_at]] <= {:now})").
		Bind(dbx.Params{"sending": collections.MessageSending, "scheduled": collections.MessageScheduled, "broadcast": collections.MessageKindBroadcast, "now": now}).
		Execute()
	if err != nil {
		return fmt.Errorf("claim scheduled messages: %w", err)
	}
	var ids []string
	err = e.app.DB().Select(core.FieldNameId).From(collections.Messages).
		Where(dbx.HashExp{collections.FieldStatus: collections.MessageSending, collections.MessageResolvedAt: ""}).OrderBy(core.FieldNameId).Column(&ids)
	if err != nil {
		return fmt.Errorf("find unresolved messages: %w", err)
	}
	for _, id := range ids {
		if err := e.resolveMessage(id); err != nil {
			return err
		}
	}
	return nil
}

// audienceFilter is messages.audience. Status is one status or a list; empty means approved.
type audienceFilter struct {
	Program string          `json:"program"`
	Status  json.RawMessage `json:"status"`
	Tier    string          `json:"tier"`
	Tags    []string        `json:"tags"`
}

// statuses is the filter's status list, approved by default.
func (a audienceFilter) statuses() ([]string, error) {
	raw := strings.TrimSpace(string(a.Status))
	if raw == "" || raw == "null" || raw == `""` || raw == "[]" {
		return []string{collections.AffiliateApproved}, nil
	}
	var one string
	if json.Unmarshal(a.Status, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(a.Status, &many); err != nil {
		return nil, fmt.Errorf("audience status must be a string or a list of strings: %w", err)
	}
	return many, nil
}

// audienceMember is the part of an affiliate that resolution needs.
type audienceMember struct {
	ID      string         `db:"id"`
	Email   string         `db:"email"`
	Channel string         `db:"preferred_channel"`
	Tags    sql.NullString `db:"tags"`
}

// resolveMessage writes one delivery per recipient of a broadcast: queued, or skipped with
// the reason when the affiliate opted out or the address is suppressed.
func (e *messagingEngine) resolveMessage(id string) error {
	msg, err := e.app.FindRecordById(collections.Messages, id)
	if err != nil {
		return fmt.Errorf("find message %s: %w", id, err)
	}
	var filter audienceFilter
	if raw := msg.GetString(collections.MessageAudience); raw != "" && raw != "null" {
		if err := json.Unmarshal([]byte(raw), &filter); err != nil {
			return e.failMessage(id, fmt.Errorf("audience is not a valid filter: %w", err))
		}
	}
	statuses, err := filter.statuses()
	if err != nil {
		return e.failMessage(id, err)
	}
	q := e.app.DB().Select("id", "email", "preferred_channel", "tags").From(collections.Affiliates).
		Where(dbx.In("status", toAny(statuses)...)).OrderBy("id")
	if filter.Program != "" {
		q.AndWhere(dbx.HashExp{"program": filter.Program})
	}
	if filter.Tier != "" {
		q.AndWhere(dbx.HashExp{"tier": filter.Tier})
	}
	var members []audienceMember
	if err := q.All(&members); err != nil {
		return fmt.Errorf("resolve audience of message %s: %w", id, err)
	}
	suppressed, err := e.suppressedEmails()
	if err != nil {
		return err
	}
	rows := make([]deliveryRow, 0, len(members))
	for _, m := range members {
		if len(filter.Tags) > 0 && !hasAnyTag(m.Tags.String, filter.Tags) {
			continue
		}
		if m.Email == "" {
			continue
		}
		d := deliveryRow{Message: id, Affiliate: m.ID, Email: m.Email, Template: templateBroadcast, Status: collections.DeliveryQueued,
			IdempotencyKey: "broadcast:" + id + ":" + m.ID, Marketing: true}
		if reason := skipReason(m.Channel, suppressed[strings.ToLower(m.Email)]); reason != "" {
			d.Status, d.Error = collections.DeliverySkipped, reason
		}
		rows = append(rows, d)
	}
	for start := 0; start < len(rows); start += messagingInsertChunk {
		chunk := rows[start:min(start+messagingInsertChunk, len(rows))]
		err := e.app.RunInTransaction(func(tx core.App) error {
			for _, d := range chunk {
				if _, err := insertDelivery(tx.DB(), d, e.now()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write deliveries of message %s: %w", id, err)
		}
	}
	_, err = e.app.DB().NewQuery("UPDATE {{messages}} SET [[resolved_at]] = {:now}, [[updated]] = {:now} WHERE [[id]] = {:id}").
		Bind(dbx.Params{"now": webhookDBTime(e.now()), "id": id}).Execute()
	if err != nil {
		return fmt.Errorf("mark message %s resolved: %w", id, err)
	}
	return nil
}

// failMessage records why a message cannot be sent and sets it back to draft so the admin
// can fix it; it is not an error of the run.
func (e *messagingEngine) failMessage(id string, cause error) error {
	_, err := e.app.DB().NewQuery("UPDATE {{messages}} SET [[status]] = {:draft}, [[error]] = {:err}, [[updated]] = {:now} WHERE [[id]] = {:id}").
		Bind(dbx.Params{"draft": collections.MessageDraft, "err": messagingErrorText(cause.Error()), "now": webhookDBTime(e.now()), "id": id}).Execute()
	if err != nil {
		return fmt.Errorf("record failure of message %s: %w", id, err)
	}
	return nil
}

// skipReason is why marketing mail must not go to an affiliate, or "".
func skipReason(channel, suppression string) string {
	switch {
	case channel == collections.ChannelNone:
		return "preferred_channel none"
	case suppression != "":
		return "suppressed: " + suppression
	}
	return ""
}

// hasAnyTag reports whether the affiliate's tags (a JSON list) contain one of want.
func hasAnyTag(raw string, want []string) bool {
	var tags []string
	if json.Unmarshal([]byte(raw), &tags) != nil {
		return false
	}
	for _, t := range tags {
		for _, w := range want {
			if strings.EqualFold(t, w) {
				return true
			}
		}
	}
	return false
}

// toAny converts for dbx.In.
func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// suppressedEmails maps every suppressed (lowercase) address to its reason.
func (e *messagingEngine) suppressedEmails() (map[string]string, error) {
	var rows []struct {
		Email  string `db:"email"`
		Reason string `db:"reason"`
	}
	if err := e.app.DB().Select(collections.SuppressionEmail, collections.SuppressionReason).From(collections.Suppressions).All(&rows); err != nil {
		return nil, fmt.Errorf("read suppressions: %w", err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[strings.ToLower(r.Email)] = r.Reason
	}
	return out, nil
}

// suppressionOf returns the reason an address is suppressed, or "".
func (e *messagingEngine) suppressionOf(email string) (string, error) {
	var reason string
	err := e.app.DB().Select(collections.SuppressionReason).From(collections.Suppressions).
		Where(dbx.HashExp{collections.SuppressionEmail: strings.ToLower(email)}).Row(&reason)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read suppression of %s: %w", email, err)
	}
	return reason, nil
}

// sender picks the provider: Resend with a key; else the dev log when in dev mode without
// SMTP; else PocketBase's mailer. Chosen per run, so enabling SMTP in the dashboard applies
// without a restart.
func (e *messagingEngine) sender() mailSender {
	switch {
	case e.resend != nil:
		return e.resend
	case e.app.IsDev() && !e.app.Settings().SMTP.Enabled:
		return logMailSender{app: e.app}
	default:
		return pbMailSender{app: e.app}
	}
}

// sendDue sends every due queued delivery: transactional ones one by one, broadcasts in
// batches of messagingBatchSize per message.
func (e *messagingEngine) sendDue(ctx context.Context) error {
	s := e.sender()
	for ctx.Err() == nil {
		now := webhookDBTime(e.now())
		var singles []deliveryRow
		err := e.app.DB().Select(deliveryColumns...).From(collections.Deliveries).
			Where(dbx.HashExp{collections.FieldStatus: collections.DeliveryQueued, collections.DeliveryMessage: ""}).
			AndWhere(dbx.NewExp("[[next_attempt_at]] <= {:now}", dbx.Params{"now": now})).
			OrderBy("next_attempt_at", "id").Limit(messagingSingles).All(&singles)
		if err != nil {
			return fmt.Errorf("find due deliveries: %w", err)
		}
		for _, d := range singles {
			if ctx.Err() != nil {
				return nil
			}
			if err := e.sendRows(ctx, s, []deliveryRow{d}, false); err != nil {
				return err
			}
		}

		var messageIDs []string
		err = e.app.DB().Select(collections.DeliveryMessage).Distinct(true).From(collections.Deliveries).
			Where(dbx.HashExp{collections.FieldStatus: collections.DeliveryQueued}).
			AndWhere(dbx.NewExp("[[message]] != '' AND [[next_attempt_at]] <= {:now}", dbx.Params{"now": now})).
			// Only messages still sending: an admin pauses a broadcast by setting it back to
			// draft, and resumes it by scheduling it again.
			AndWhere(dbx.NewExp("[[message]] IN (SELECT [[id]] FROM {{messages}} WHERE [[status]] = {:sending})", dbx.Params{"sending": collections.MessageSending})).
			OrderBy("message").Column(&messageIDs)
		if err != nil {
			return fmt.Errorf("find messages with due deliveries: %w", err)
		}
		for _, id := range messageIDs {
			if ctx.Err() != nil {
				return nil
			}
			// Always the first rows by id: after a crash the same batch is rebuilt, with the
			// same idempotency key, so Resend accepts it once.
			var batch []deliveryRow
			err := e.app.DB().Select(deliveryColumns...).From(collections.Deliveries).
				Where(dbx.HashExp{collections.FieldStatus: collections.DeliveryQueued, collections.DeliveryMessage: id}).
				AndWhere(dbx.NewExp("[[next_attempt_at]] <= {:now}", dbx.Params{"now": now})).
				OrderBy("id").Limit(messagingBatchSize).All(&batch)
			if err != nil {
				return fmt.Errorf("find due deliveries of message %s: %w", id, err)
			}
			if err := e.sendRows(ctx, s, batch, true); err != nil {
				return err
			}
		}
		if len(singles) == 0 && len(messageIDs) == 0 {
			return nil
		}
	}
	return nil
}

// sendRows renders and sends rows (one mail, or one batch), then records each outcome. Only
// database errors are returned; send failures are recorded on the rows.
func (e *messagingEngine) sendRows(ctx context.Context, s mailSender, rows []deliveryRow, batch bool) error {
	mails, ready, err := e.prepare(rows)
	if err != nil {
		return err
	}
	if len(ready) == 0 {
		return nil
	}
	// Renew the lease right before sending: a process that lost it (it stalled past the TTL
	// and another took over) must not send what the other may be sending.
	if held, err := acquireLease(e.app.DB(), messagingLease, e.holder, e.now(), messagingLeaseTTL); err != nil {
		return err
	} else if !held {
		return errLeaseLost
	}
	var ids []string
	var sendErr error
	if batch {
		ids, sendErr = s.SendBatch(ctx, mails)
	} else {
		var id string
		id, sendErr = s.Send(ctx, mails[0])
		if sendErr == nil {
			ids = []string{id}
		}
	}
	if ctx.Err() != nil {
		return nil // shutting down: the rows stay queued and due; the next process resends them
	}
	if len(ids) > len(ready) {
		ids = ids[:len(ready)]
	}
	if err := e.markSent(ready[:len(ids)], ids); err != nil {
		return err
	}
	if sendErr != nil {
		return e.markFailedAttempt(ready[len(ids):], sendErr)
	}
	return nil
}

// prepare renders the rows' mails. Rows that must not be sent after all (deleted affiliate,
// marketing to someone who opted out or is suppressed since) are marked skipped, rows whose
// template fails are marked failed; the rest are returned with their mails.
func (e *messagingEngine) prepare(rows []deliveryRow) ([]outgoingMail, []deliveryRow, error) {
	affIDs := make([]string, len(rows))
	for i, r := range rows {
		affIDs[i] = r.Affiliate
	}
	affs, err := e.app.FindRecordsByIds(collections.Affiliates, affIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("load affiliates of deliveries: %w", err)
	}
	byID := make(map[string]*core.Record, len(affs))
	for _, a := range affs {
		byID[a.Id] = a
	}
	var msg *core.Record
	if rows[0].Message != "" {
		if msg, err = e.app.FindRecordById(collections.Messages, rows[0].Message); err != nil {
			return nil, nil, fmt.Errorf("load message %s: %w", rows[0].Message, err)
		}
	}
	mc, err := e.newMailContext()
	if err != nil {
		return nil, nil, err
	}
	from := e.from()
	var mails []outgoingMail
	var ready []deliveryRow
	for _, r := range rows {
		a := byID[r.Affiliate]
		if a == nil {
			if err := e.markDone(r.ID, collections.DeliverySkipped, "affiliate deleted"); err != nil {
				return nil, nil, err
			}
			continue
		}
		m := outgoingMail{From: from, To: r.Email, IdempotencyKey: r.IdempotencyKey, Tags: map[string]string{"template": r.Template}}
		d, err := e.affiliateMailData(mc, a)
		if err != nil {
			return nil, nil, err
		}
		skip, err := e.templateMailData(r, &d)
		if err != nil || skip != "" {
			status, reason := collections.DeliverySkipped, skip
			if err != nil {
				status, reason = collections.DeliveryFailed, err.Error()
			}
			if err := e.markDone(r.ID, status, reason); err != nil {
				return nil, nil, err
			}
			continue
		}
		if r.Marketing {
			suppression, err := e.suppressionOf(r.Email)
			if err != nil {
				return nil, nil, err
			}
			if reason := skipReason(a.GetString(collections.AffiliatePreferredChannel), suppression); reason != "" {
				if err := e.markDone(r.ID, collections.DeliverySkipped, reason); err != nil {
					return nil, nil, err
				}
				continue
			}
			d.UnsubscribeURL, err = e.unsubscribeURL(a.Id)
			if err != nil {
				return nil, nil, err
			}
			if strings.HasPrefix(d.UnsubscribeURL, "http") { // needs PBA_PUBLIC_URL or the app URL
				m.Headers = map[string]string{
					"List-Unsubscribe":      "<" + d.UnsubscribeURL + ">",
					"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
				}
			}
		}
		var out renderedMail
		if msg != nil {
			m.Tags["message"] = msg.Id
			out, err = renderBroadcast(msg.GetString(collections.MessageSubject), msg.GetString(collections.MessageBody), d)
		} else {
			out, err = renderFrom(mc.templates, r.Template, d)
		}
		if err != nil {
			if err := e.markDone(r.ID, collections.DeliveryFailed, err.Error()); err != nil {
				return nil, nil, err
			}
			continue
		}
		m.Subject, m.HTML, m.Text = out.Subject, out.HTML, out.Text
		mails = append(mails, m)
		ready = append(ready, r)
	}
	return mails, ready, nil
}

// from is the sender address: PBA_MAIL_FROM, else the dashboard's sender settings.
func (e *messagingEngine) from() string {
	if e.cfg.MailFrom != "" {
		return e.cfg.MailFrom
	}
	meta := e.app.Settings().Meta
	return (&mail.Address{Name: meta.SenderName, Address: meta.SenderAddress}).String()
}

// publicBase is the server's public URL without a trailing slash: PBA_PUBLIC_URL, else the
// dashboard's application URL.
func (e *messagingEngine) publicBase() string {
	if e.cfg.PublicURL != "" {
		return strings.TrimRight(e.cfg.PublicURL, "/")
	}
	return strings.TrimRight(e.app.Settings().Meta.AppURL, "/")
}

// mailData is the affiliate's identity as the templates see it.
func (e *messagingEngine) mailData(a *core.Record) mailData {
	base := e.publicBase()
	code := a.GetString(collections.FieldCode)
	return mailData{
		Name: a.GetString(collections.FieldName), Code: code, Email: a.Email(),
		Link: base + "/r/" + code, PortalURL: base + "/portal/",
	}
}

// markSent records accepted mails with their provider ids.
func (e *messagingEngine) markSent(rows []deliveryRow, ids []string) error {
	if len(rows) == 0 {
		return nil
	}
	now := webhookDBTime(e.now())
	return e.app.RunInTransaction(func(tx core.App) error {
		for i, r := range rows {
			_, err := tx.DB().NewQuery(
				"UPDATE {{deliveries}} SET [[status]] = {:sent}, [[provider_id]] = {:pid}, [[sent_at]] = {:now}, [[error]] = '', " +
					"[[attempts]] = [[attempts]] + 1, [[updated]] = {:now} WHERE [[id]] = {:id} AND [[status]] = {:queued}").
				Bind(dbx.Params{"sent": collections.DeliverySent, "pid": ids[i], "now": now, "id": r.ID, "queued": collections.DeliveryQueued}).Execute()
			if err != nil {
				return fmt.Errorf("mark delivery %s sent: %w", r.ID, err)
			}
		}
		return nil
	})
}

// markFailedAttempt records a failed send: permanent errors and exhausted retries fail the
// rows, temporary ones leave them queued for a later run.
func (e *messagingEngine) markFailedAttempt(rows []deliveryRow, sendErr error) error {
	now := e.now()
	temporary := isTemporarySend(sendErr)
	return e.app.RunInTransaction(func(tx core.App) error {
		for _, r := range rows {
			attempts := r.Attempts + 1
			status, next, msg := collections.DeliveryQueued, now.Add(messagingBackoff(attempts)), sendErr.Error()
			if !temporary || attempts >= messagingMaxAttempts {
				status, next = collections.DeliveryFailed, now
				if temporary {
					msg = fmt.Sprintf("gave up after %d attempts: %s", attempts, msg)
				}
			}
			_, err := tx.DB().NewQuery(
				"UPDATE {{deliveries}} SET [[status]] = {:status}, [[attempts]] = {:attempts}, [[error]] = {:err}, " +
					"[[next_attempt_at]] = {:next}, [[updated]] = {:now} WHERE [[id]] = {:id} AND [[status]] = {:queued}").
				Bind(dbx.Params{"status": status, "attempts": attempts, "err": messagingErrorText(msg),
					"next": webhookDBTime(next), "now": webhookDBTime(now), "id": r.ID, "queued": collections.DeliveryQueued}).Execute()
			if err != nil {
				return fmt.Errorf("record failed send of delivery %s: %w", r.ID, err)
			}
		}
		return nil
	})
}

// markDone gives a queued delivery a final status without sending it.
func (e *messagingEngine) markDone(id, status, reason string) error {
	_, err := e.app.DB().NewQuery(
		"UPDATE {{deliveries}} SET [[status]] = {:status}, [[error]] = {:err}, [[updated]] = {:now} WHERE [[id]] = {:id} AND [[status]] = {:queued}").
		Bind(dbx.Params{"status": status, "err": messagingErrorText(reason), "now": webhookDBTime(e.now()), "id": id, "queued": collections.DeliveryQueued}).Execute()
	if err != nil {
		return fmt.Errorf("mark delivery %s %s: %w", id, status, err)
	}
	return nil
}

// settleMessages refreshes the counts of sending messages and marks those with nothing
// queued as sent.
func (e *messagingEngine) settleMessages() error {
	var ids []string
	err := e.app.DB().Select(core.FieldNameId).From(collections.Messages).
		Where(dbx.HashExp{collections.FieldStatus: collections.MessageSending}).AndWhere(dbx.NewExp("[[resolved_at]] != ''")).Column(&ids)
	if err != nil {
		return fmt.Errorf("find sending messages: %w", err)
	}
	for _, id := range ids {
		if err := refreshMessageCounts(e.app, id, e.now(), true); err != nil {
			return err
		}
	}
	return nil
}

// refreshMessageCounts stores the per-status delivery counts on a message; with settle, a
// message with no queued delivery left becomes sent.
func refreshMessageCounts(app core.App, id string, now time.Time, settle bool) error {
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	err := app.DB().Select(collections.FieldStatus, "COUNT(*) AS n").From(collections.Deliveries).
		Where(dbx.HashExp{collections.DeliveryMessage: id}).GroupBy(collections.FieldStatus).All(&rows)
	if err != nil {
		return fmt.Errorf("count deliveries of message %s: %w", id, err)
	}
	counts := map[string]int{}
	for _, r := range rows {
		counts[r.Status] = r.N
	}
	raw, err := json.Marshal(counts)
	if err != nil {
		return fmt.Errorf("encode counts: %w", err)
	}
	q := "UPDATE {{messages}} SET [[counts]] = {:counts}, [[updated]] = {:now}"
	if settle && counts[collections.DeliveryQueued] == 0 {
		q += ", [[status]] = {:sent}"
	}
	_, err = app.DB().NewQuery(q + " WHERE [[id]] = {:id}").
		Bind(dbx.Params{"counts": string(raw), "now": webhookDBTime(now), "sent": collections.MessageSent, "id": id}).Execute()
	if err != nil {
		return fmt.Errorf("store counts of message %s: %w", id, err)
	}
	return nil
}

// messagingBackoff is the wait before the run after the given number of failed ones.
func messagingBackoff(failed int) time.Duration {
	if failed < 1 || failed > 10 {
		return messagingBackoffMax
	}
	return min(messagingBackoffBase<<(failed-1), messagingBackoffMax)
}

// messagingErrorText cuts an error to the error field's limit.
func messagingErrorText(s string) string {
	if r := []rune(s); len(r) > messagingMaxError {
		return string(r[:messagingMaxError])
	}
	return s
}

// newMessagingSecret returns a fresh random key (64 alphanumerics, ~380 bits) for unsubscribe tokens.
func newMessagingSecret() string {
	return security.RandomString(64)
}
