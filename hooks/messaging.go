package hooks

import (
	"context"
	"fmt"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
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

// messaging is the mail system: its parts, each with its own hooks, and the one worker that
// runs them. The outbox owns the deliveries table and sends it; lifecycle mails, broadcasts
// and digests queue rows through it; the content is what the rows say when they are sent;
// unsubscribes signs and serves the opt-out links. A worker run (woken by a queued delivery,
// a scheduled message, the pbaMessages cron job or the server's start) holds the mail lease
// and does, in order: start due broadcasts, queue new-commission mails, queue due survey
// rounds, announce campaigns that started, send every due delivery, settle finished broadcasts.
type messaging struct {
	app        core.App
	worker     *worker.Worker
	outbox     *mailOutbox
	unsub      *unsubscribes
	lifecycle  *lifecycleMails
	broadcasts *broadcasts
	digests    *digests
	surveys    *surveyMails
	incentives *incentiveMails
	preview    *mailPreview
}

// newMessaging builds the parts on one clock; sleep is how the Resend client waits between
// retries (both are the real ones outside tests). A malformed RESEND_BASE_URL is an error.
func newMessaging(app core.App, cfg Config, now func() time.Time, sleep func(context.Context, time.Duration) error) (*messaging, error) {
	m := &messaging{app: app}
	m.worker = worker.New(func(ctx context.Context) error {
		err := m.run(ctx)
		metricsOf(app).jobDone(messagingCronJob, err) // the job's runs are the worker's, woken by cron or a new mail
		return err
	}, func(err error) { app.Logger().Error("mail worker", "error", err) })
	content := newMailContent(app, cfg.PublicURL)
	m.unsub = newUnsubscribes(app, cfg.PublicURL, now)
	outbox, err := newMailOutbox(app, cfg, now, sleep, content, m.unsub)
	if err != nil {
		return nil, fmt.Errorf("mail outbox: %w", err)
	}
	m.outbox = outbox
	m.lifecycle = newLifecycleMails(app, outbox, now, m.worker.Signal)
	m.broadcasts = newBroadcasts(app, outbox, now, m.worker.Signal)
	m.digests = newDigests(app, outbox, content, now, m.worker.Signal)
	m.surveys = newSurveyMails(app, outbox, m.unsub, now, m.worker.Signal)
	outbox.surveys = m.surveys
	m.incentives = newIncentiveMails(app, outbox, now)
	m.preview = newMailPreview(content)
	return m, nil
}

// registerMessaging wires lifecycle emails, broadcasts, digests, the unsubscribe and Resend
// webhook routes and the pbaMessages and pbaDigest cron jobs into app. Only a malformed
// RESEND_BASE_URL makes it fail, before anything is bound.
func registerMessaging(app core.App, cfg Config) (*messaging, error) {
	m, err := newMessaging(app, cfg, time.Now, sleepCtx)
	if err != nil {
		return nil, err
	}
	m.bind()
	return m, nil
}

// bind registers every part's hooks, the worker's cron job and its lifecycle.
func (m *messaging) bind() {
	app := m.app
	m.lifecycle.bind()
	m.broadcasts.bind()
	m.digests.bind()
	m.surveys.bind()
	app.OnRecordValidate(collections.MailTemplates).BindFunc(validateMailTemplate)
	app.Cron().MustAdd(messagingCronJob, "* * * * *", m.worker.Tick)
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		if err := ensureMailTemplates(se.App); err != nil {
			return err
		}
		m.worker.Start() // also sends what was queued while the server was down
		return se.Next()
	})
	app.OnTerminate().BindFunc(func(te *core.TerminateEvent) error {
		m.worker.Stop() // cancels in-flight sends, waits for runs before the database closes
		return te.Next()
	})
}

// run is one worker run: passes under the mail lease for as long as they are asked for. A
// run that finds another in progress asks it to look again and returns.
func (m *messaging) run(ctx context.Context) error {
	return m.worker.Exclusive(ctx, func(next func() bool) error {
		return m.outbox.leased(next, func() error { return m.runOnce(ctx) })
	})
}

// runOnce is one pass over everything due.
func (m *messaging) runOnce(ctx context.Context) error {
	if err := m.broadcasts.startDueMessages(); err != nil {
		return err
	}
	if err := m.lifecycle.queueCommissionMails(); err != nil {
		return err
	}
	if err := m.surveys.queueDue(); err != nil {
		return err
	}
	if err := m.incentives.queueStarted(); err != nil {
		return err
	}
	if err := m.outbox.sendDue(ctx); err != nil {
		return err
	}
	return m.broadcasts.settleMessages()
}
