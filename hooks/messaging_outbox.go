package hooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/security"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/worker"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// mailOutbox is the deliveries table and what sends it. The other parts queue rows through
// enqueue (inside or after their own transaction); each worker run sends what is due through
// the provider chosen for the run (Resend, PocketBase's mailer, the dev log), outside any
// transaction, retrying temporary failures with backoff and recording every outcome on the
// row. Marketing rows are checked against suppressions and the affiliate's preference once
// more right before sending. Resend's webhook reports what happened after sending. Across
// processes the messagingLease, held under holder, keeps two senders apart.
type mailOutbox struct {
	app           core.App
	now           func() time.Time
	resend        *resendSender // nil without RESEND_API_KEY
	mailFrom      string        // PBA_MAIL_FROM; empty: the dashboard's sender settings
	webhookSecret string        // RESEND_WEBHOOK_SECRET; empty: the webhook is refused
	holder        string
	content       *mailContent
	unsub         *unsubscribes
	surveys       *surveyMails // set by newMessaging
}

// newMailOutbox builds the outbox; a malformed RESEND_BASE_URL is an error. sleep is how the
// Resend client waits between retries.
func newMailOutbox(app core.App, cfg Config, now func() time.Time, sleep func(context.Context, time.Duration) error,
	content *mailContent, unsub *unsubscribes,
) (*mailOutbox, error) {
	o := &mailOutbox{
		app: app, now: now, mailFrom: cfg.MailFrom, webhookSecret: cfg.ResendWebhookSecret,
		holder: security.RandomString(15), content: content, unsub: unsub,
	}
	if cfg.ResendAPIKey != "" {
		s, err := newResendSender(cfg.ResendAPIKey, cfg.ResendBaseURL, sleep)
		if err != nil {
			return nil, err
		}
		o.resend = s
	}
	return o, nil
}

// enqueue writes a delivery unless one with its idempotency key exists, and reports whether
// it wrote one; db is the caller's transaction or the app's database. It does not wake the
// worker: callers signal once their transaction has committed.
func (o *mailOutbox) enqueue(db dbx.Builder, d deliveryRow) (bool, error) {
	return insertDelivery(db, d, o.now())
}

// leased runs pass while next asks for one, holding the mail lease: another process holding
// it ends the run (it looks again itself), and so does losing it mid-run (errLeaseLost). The
// lease is released when the passes are done.
func (o *mailOutbox) leased(next func() bool, pass func() error) error {
	held, err := store.AcquireLease(o.app.DB(), messagingLease, o.holder, o.now(), messagingLeaseTTL)
	if err != nil {
		return err
	}
	if !held {
		return worker.ErrEnd // another process is sending; it looks again itself
	}
	for err == nil && next() {
		err = pass()
	}
	if errors.Is(err, errLeaseLost) {
		return worker.ErrEnd
	}
	if rerr := store.ReleaseLease(o.app.DB(), messagingLease, o.holder, o.now()); err == nil {
		err = rerr
	}
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

// deliveryColumns are the columns of deliveryRow the worker reads. data is NULL on a row
// saved without it (a superuser through the records API): read as "", like no figures.
var deliveryColumns = []string{
	core.FieldNameId, collections.DeliveryMessage, collections.FieldAffiliate, collections.DeliveryEmail, collections.DeliveryTemplate,
	collections.FieldStatus, collections.DeliveryIdempotencyKey, collections.DeliveryMarketing, collections.DeliveryAttempts,
	collections.DeliveryError, "COALESCE([[" + collections.DeliveryData + "]], '') AS [[" + collections.DeliveryData + "]]",
}

// insertDelivery writes a delivery unless one with its idempotency key exists; it reports
// whether a row was written. Raw SQL: an upsert is the only race-free "create once".
func insertDelivery(db dbx.Builder, d deliveryRow, now time.Time) (bool, error) {
	ts := store.DBTime(now)
	due, sentAt, attempts := ts, "", 0
	if !d.Due.IsZero() {
		due = store.DBTime(d.Due)
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
			"id": store.NewID(), "message": d.Message, "affiliate": d.Affiliate, "email": d.Email,
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

// sender picks the provider (mailProvider): Resend, PocketBase's mailer (SMTP or sendmail),
// or the log when there is none. Chosen per run, so enabling SMTP in the dashboard applies
// without a restart.
func (o *mailOutbox) sender() mailSender {
	switch mailProvider(o.app, o.resend != nil) {
	case mailProviderResend:
		return o.resend
	case mailProviderNone:
		return logMailSender{app: o.app}
	default:
		return pbMailSender{app: o.app}
	}
}

// from is the sender address: PBA_MAIL_FROM, else the dashboard's sender settings.
func (o *mailOutbox) from() string {
	if o.mailFrom != "" {
		return o.mailFrom
	}
	meta := o.app.Settings().Meta
	return (&mail.Address{Name: meta.SenderName, Address: meta.SenderAddress}).String()
}

// sendDue sends every due queued delivery: transactional ones one by one, broadcasts in
// batches of messagingBatchSize per message.
func (o *mailOutbox) sendDue(ctx context.Context) error {
	s := o.sender()
	for ctx.Err() == nil {
		now := store.DBTime(o.now())
		var singles []deliveryRow
		err := o.app.DB().Select(deliveryColumns...).From(collections.Deliveries).
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
			if err := o.sendRows(ctx, s, []deliveryRow{d}, false); err != nil {
				return err
			}
		}

		var messageIDs []string
		err = o.app.DB().Select(collections.DeliveryMessage).Distinct(true).From(collections.Deliveries).
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
			err := o.app.DB().Select(deliveryColumns...).From(collections.Deliveries).
				Where(dbx.HashExp{collections.FieldStatus: collections.DeliveryQueued, collections.DeliveryMessage: id}).
				AndWhere(dbx.NewExp("[[next_attempt_at]] <= {:now}", dbx.Params{"now": now})).
				OrderBy("id").Limit(messagingBatchSize).All(&batch)
			if err != nil {
				return fmt.Errorf("find due deliveries of message %s: %w", id, err)
			}
			if err := o.sendRows(ctx, s, batch, true); err != nil {
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
func (o *mailOutbox) sendRows(ctx context.Context, s mailSender, rows []deliveryRow, batch bool) error {
	mails, ready, err := o.prepare(rows)
	if err != nil {
		return err
	}
	if len(ready) == 0 {
		return nil
	}
	// Renew the lease right before sending: a process that lost it (it stalled past the TTL
	// and another took over) must not send what the other may be sending.
	if held, err := store.AcquireLease(o.app.DB(), messagingLease, o.holder, o.now(), messagingLeaseTTL); err != nil {
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
	if err := o.markSent(ready[:len(ids)], ids); err != nil {
		return err
	}
	if sendErr != nil {
		return o.markFailedAttempt(ready[len(ids):], sendErr)
	}
	return nil
}

// prepare renders the rows' mails. Rows that must not be sent after all (deleted affiliate,
// marketing to someone who opted out or is suppressed since) are marked skipped, rows whose
// template fails are marked failed; the rest are returned with their mails.
func (o *mailOutbox) prepare(rows []deliveryRow) ([]outgoingMail, []deliveryRow, error) {
	affIDs := make([]string, len(rows))
	for i, r := range rows {
		affIDs[i] = r.Affiliate
	}
	affs, err := o.app.FindRecordsByIds(collections.Affiliates, affIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("load affiliates of deliveries: %w", err)
	}
	byID := make(map[string]*core.Record, len(affs))
	for _, a := range affs {
		byID[a.Id] = a
	}
	var msg *core.Record
	if rows[0].Message != "" {
		if msg, err = o.app.FindRecordById(collections.Messages, rows[0].Message); err != nil {
			return nil, nil, fmt.Errorf("load message %s: %w", rows[0].Message, err)
		}
	}
	mc, err := o.content.newMailContext()
	if err != nil {
		return nil, nil, err
	}
	from := o.from()
	var mails []outgoingMail
	var ready []deliveryRow
	for _, r := range rows {
		if r.Affiliate == "" { // to a superuser (webhook_disabled): transactional, no preferences
			out, err := adminMail(r)
			if err != nil {
				if err := o.markDone(r.ID, collections.DeliveryFailed, err.Error()); err != nil {
					return nil, nil, err
				}
				continue
			}
			mails = append(mails, outgoingMail{From: from, To: r.Email, IdempotencyKey: r.IdempotencyKey,
				Tags: map[string]string{"template": r.Template}, Subject: out.Subject, HTML: out.HTML, Text: out.Text})
			ready = append(ready, r)
			continue
		}
		a := byID[r.Affiliate]
		if a == nil {
			if err := o.markDone(r.ID, collections.DeliverySkipped, "affiliate deleted"); err != nil {
				return nil, nil, err
			}
			continue
		}
		if !a.GetDateTime(collections.AffiliateErasedAt).IsZero() { // privacy_erase.go: no mail of any kind
			if err := o.markDone(r.ID, collections.DeliverySkipped, "affiliate erased"); err != nil {
				return nil, nil, err
			}
			continue
		}
		m := outgoingMail{From: from, To: r.Email, IdempotencyKey: r.IdempotencyKey, Tags: map[string]string{"template": r.Template}}
		d, err := o.content.affiliateMailData(mc, a)
		if err != nil {
			return nil, nil, err
		}
		skip, err := o.content.templateMailData(r, &d)
		if err == nil && skip == "" && r.Template == templateSurvey {
			skip, err = o.surveys.surveyMailData(r, &d)
		}
		if err != nil || skip != "" {
			status, reason := collections.DeliverySkipped, skip
			if err != nil {
				status, reason = collections.DeliveryFailed, err.Error()
			}
			if err := o.markDone(r.ID, status, reason); err != nil {
				return nil, nil, err
			}
			continue
		}
		if !a.Verified() {
			d.withoutSignerText()
		}
		if r.Marketing {
			suppression, err := o.suppressionOf(r.Email)
			if err != nil {
				return nil, nil, err
			}
			if reason := skipReason(prefsOf(a), mailCategory(r.Template, msg), suppression); reason != "" {
				if err := o.markDone(r.ID, collections.DeliverySkipped, reason); err != nil {
					return nil, nil, err
				}
				continue
			}
			d.UnsubscribeURL, err = o.unsub.unsubscribeURL(a.Id)
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
		switch {
		case msg != nil:
			m.Tags["message"] = msg.Id
			out, err = renderBroadcast(msg.GetString(collections.MessageSubject), msg.GetString(collections.MessageBody), d)
		case r.Template == templateSurvey:
			out, err = renderMail(surveyTemplate.subject, surveyTemplate.html, surveyTemplate.text, d)
		default:
			out, err = renderFrom(mc.templates, r.Template, d)
		}
		if err != nil {
			if err := o.markDone(r.ID, collections.DeliveryFailed, err.Error()); err != nil {
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

// markSent records accepted mails with their provider ids.
func (o *mailOutbox) markSent(rows []deliveryRow, ids []string) error {
	if len(rows) == 0 {
		return nil
	}
	metricsOf(o.app).mailAttempts.WithLabelValues(attemptSent).Add(float64(len(rows)))
	now := store.DBTime(o.now())
	return o.app.RunInTransaction(func(tx core.App) error {
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
func (o *mailOutbox) markFailedAttempt(rows []deliveryRow, sendErr error) error {
	now := o.now()
	temporary := isTemporarySend(sendErr)
	return o.app.RunInTransaction(func(tx core.App) error {
		for _, r := range rows {
			attempts := r.Attempts + 1
			status, next, msg := collections.DeliveryQueued, now.Add(messagingBackoff(attempts)), sendErr.Error()
			result := attemptRetry
			if !temporary || attempts >= messagingMaxAttempts {
				result, status, next = attemptFailed, collections.DeliveryFailed, now
				if temporary {
					msg = fmt.Sprintf("gave up after %d attempts: %s", attempts, msg)
				}
			}
			metricsOf(o.app).mailAttempts.WithLabelValues(result).Inc()
			_, err := tx.DB().NewQuery(
				"UPDATE {{deliveries}} SET [[status]] = {:status}, [[attempts]] = {:attempts}, [[error]] = {:err}, " +
					"[[next_attempt_at]] = {:next}, [[updated]] = {:now} WHERE [[id]] = {:id} AND [[status]] = {:queued}").
				Bind(dbx.Params{"status": status, "attempts": attempts, "err": messagingErrorText(msg),
					"next": store.DBTime(next), "now": store.DBTime(now), "id": r.ID, "queued": collections.DeliveryQueued}).Execute()
			if err != nil {
				return fmt.Errorf("record failed send of delivery %s: %w", r.ID, err)
			}
		}
		return nil
	})
}

// markDone gives a queued delivery a final status without sending it.
func (o *mailOutbox) markDone(id, status, reason string) error {
	if status == collections.DeliveryFailed {
		metricsOf(o.app).mailAttempts.WithLabelValues(attemptFailed).Inc() // could not be rendered: never sent
	}
	_, err := o.app.DB().NewQuery(
		"UPDATE {{deliveries}} SET [[status]] = {:status}, [[error]] = {:err}, [[updated]] = {:now} WHERE [[id]] = {:id} AND [[status]] = {:queued}").
		Bind(dbx.Params{"status": status, "err": messagingErrorText(reason), "now": store.DBTime(o.now()), "id": id, "queued": collections.DeliveryQueued}).Execute()
	if err != nil {
		return fmt.Errorf("mark delivery %s %s: %w", id, status, err)
	}
	return nil
}

// mailPrefs is what an affiliate chose about marketing mail: preferred_channel none declines
// all of it, mail_opt_out (a JSON list) some categories.
type mailPrefs struct {
	Channel string         `db:"preferred_channel"`
	OptOut  sql.NullString `db:"mail_opt_out"`
}

// prefsOf reads an affiliate's mail preferences.
func prefsOf(a *core.Record) mailPrefs {
	return mailPrefs{Channel: a.GetString(collections.AffiliatePreferredChannel),
		OptOut: sql.NullString{String: a.GetString(collections.AffiliateMailOptOut), Valid: true}}
}

// declines reports whether the affiliate opted out of a category of mail.
func (p mailPrefs) declines(category string) bool {
	var cats []string
	if json.Unmarshal([]byte(p.OptOut.String), &cats) != nil {
		return false
	}
	return slices.Contains(cats, category)
}

// skipReason is why marketing mail of a category must not go to an affiliate, or "": the one
// check of preferences and suppressions, when an audience is resolved and again right before
// sending. Transactional mail (no category) is never checked.
func skipReason(p mailPrefs, category, suppression string) string {
	switch {
	case p.Channel == collections.ChannelNone:
		return "preferred_channel none"
	case category != "" && p.declines(category):
		return "opted out of " + category
	case suppression != "":
		return "suppressed: " + suppression
	}
	return ""
}

// mailCategory is the category of a marketing delivery (affiliates.mail_opt_out): a
// broadcast's own (messages.category, empty is broadcast), digest or survey.
func mailCategory(template string, msg *core.Record) string {
	switch template {
	case templateWeeklyDigest:
		return collections.MailDigest
	case templateSurvey:
		return collections.MailSurvey
	case templateIncentiveStarted:
		return collections.MailIncentive
	}
	if msg != nil && msg.GetString(collections.MessageCategory) != "" {
		return msg.GetString(collections.MessageCategory)
	}
	return collections.MailBroadcast
}

// suppressedEmails maps every suppressed (lowercase) address to its reason.
func (o *mailOutbox) suppressedEmails() (map[string]string, error) {
	var rows []struct {
		Email  string `db:"email"`
		Reason string `db:"reason"`
	}
	if err := o.app.DB().Select(collections.SuppressionEmail, collections.SuppressionReason).From(collections.Suppressions).All(&rows); err != nil {
		return nil, fmt.Errorf("read suppressions: %w", err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[strings.ToLower(r.Email)] = r.Reason
	}
	return out, nil
}

// suppressionOf returns the reason an address is suppressed, or "".
func (o *mailOutbox) suppressionOf(email string) (string, error) {
	var reason string
	err := o.app.DB().Select(collections.SuppressionReason).From(collections.Suppressions).
		Where(dbx.HashExp{collections.SuppressionEmail: strings.ToLower(email)}).Row(&reason)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read suppression of %s: %w", email, err)
	}
	return reason, nil
}

// addSuppression records an address nothing marketing may be sent to; the first reason wins.
func addSuppression(app core.App, email, reason string, now time.Time) error {
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" {
		return nil
	}
	_, err := app.DB().NewQuery(
		"INSERT INTO {{suppressions}} ([[id]], [[email]], [[reason]], [[created]]) VALUES ({:id}, {:email}, {:reason}, {:now}) " +
			"ON CONFLICT ([[email]]) DO NOTHING").
		Bind(dbx.Params{"id": store.NewID(), "email": email, "reason": reason, "now": store.DBTime(now)}).Execute()
	if err != nil {
		return fmt.Errorf("suppress %s (%s): %w", email, reason, err)
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
