package hooks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// lifecycleMails queues the mails an affiliate gets because something happened to them:
// application received, approved or rejected, payout sent or failed, tier changed, and new
// commissions (scanned by each worker run); and it routes PocketBase's own auth mails through
// the outbox's sender (messaging_auth.go).
type lifecycleMails struct {
	app    core.App
	outbox *mailOutbox
	now    func() time.Time
	signal func() // wakes the mail worker after a delivery committed

	// commissionsSeen is up to when new commissions were scanned for mail (zero: not yet in
	// this process). Only worker runs touch it, and runs are exclusive.
	commissionsSeen time.Time
}

// newLifecycleMails returns the lifecycle mails of an app, queued through outbox.
func newLifecycleMails(app core.App, outbox *mailOutbox, now func() time.Time, signal func()) *lifecycleMails {
	return &lifecycleMails{app: app, outbox: outbox, now: now, signal: signal}
}

// bind queues the mails of affiliate, payout and tier changes once they committed, and binds
// the auth mails.
func (l *lifecycleMails) bind() {
	app := l.app
	// After success: the change has committed, so the delivery is written right after it and
	// the mail is never sent inside a transaction. The delivery goes through app, the root
	// app: when the change was saved inside a transaction (the payout hooks save that way, and
	// so do engines and routes), ev.App is that finished transaction, and a write through it
	// fails with "transaction has already been committed or rolled back".
	app.OnRecordAfterCreateSuccess(collections.Affiliates).BindFunc(func(ev *core.RecordEvent) error {
		switch ev.Record.GetString(collections.FieldStatus) {
		case collections.AffiliatePending:
			l.queueLifecycleLogged(app, ev.Record, templateApplicationReceived)
		case collections.AffiliateApproved: // auto-approved signups
			l.queueLifecycleLogged(app, ev.Record, templateApproved)
		}
		return ev.Next()
	})
	app.OnRecordAfterUpdateSuccess(collections.Affiliates).BindFunc(func(ev *core.RecordEvent) error {
		before, after := ev.Record.Original().GetString(collections.FieldStatus), ev.Record.GetString(collections.FieldStatus)
		if before != after {
			switch after {
			case collections.AffiliateApproved:
				l.queueLifecycleLogged(app, ev.Record, templateApproved)
			case collections.AffiliateRejected:
				l.queueLifecycleLogged(app, ev.Record, templateRejected)
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
		l.queuePayoutLogged(app, ev.Record, template)
		return ev.Next()
	})
	app.OnRecordAfterCreateSuccess(collections.TierChanges).BindFunc(func(ev *core.RecordEvent) error {
		l.queueTierLogged(app, ev.Record)
		return ev.Next()
	})
	l.bindAuthMail()
}

// queueLifecycleLogged queues a lifecycle email; a failure is logged, never returned, because
// the affiliate's change has already committed and must not look failed to the caller.
func (l *lifecycleMails) queueLifecycleLogged(app core.App, affiliate *core.Record, template string) {
	if err := l.queueLifecycle(app, affiliate, template); err != nil {
		app.Logger().Error("queue lifecycle email", "affiliate", affiliate.Id, "template", template, "error", err)
		return
	}
	l.signal()
}

// queueLifecycle writes the delivery of a lifecycle email, once per affiliate and template.
func (l *lifecycleMails) queueLifecycle(app core.App, affiliate *core.Record, template string) error {
	email := affiliate.Email()
	if email == "" {
		return nil
	}
	_, err := l.outbox.enqueue(app.DB(), deliveryRow{
		Affiliate: affiliate.Id, Email: email, Template: template, Status: collections.DeliveryQueued,
		IdempotencyKey: "lifecycle:" + template + ":" + affiliate.Id,
	})
	return err
}

// queuePayoutLogged queues the email about a payout, once per payout and template (the key
// carries the payout id, which prepare reads back to fill in the amount and reference).
// Payout mail is transactional: preferences and suppressions never stop it.
func (l *lifecycleMails) queuePayoutLogged(app core.App, payout *core.Record, template string) {
	affiliate, err := app.FindRecordById(collections.Affiliates, payout.GetString(collections.FieldAffiliate))
	if err == nil && affiliate.Email() != "" {
		_, err = l.outbox.enqueue(app.DB(), deliveryRow{
			Affiliate: affiliate.Id, Email: affiliate.Email(), Template: template, Status: collections.DeliveryQueued,
			IdempotencyKey: payoutKeyPrefix + template + ":" + payout.Id,
		})
	}
	if err != nil {
		app.Logger().Error("queue payout email", "payout", payout.Id, "template", template, "error", err)
		return
	}
	l.signal()
}

// payoutKeyPrefix starts the idempotency key of payout mails: payout:<template>:<payout id>.
const payoutKeyPrefix = "payout:"

// Key prefixes of deliveries whose content is read back when they are sent.
const (
	// commissionKeyPrefix: commission:<affiliate>:<UTC hour as 2006010215>, one mail per
	// affiliate and hour listing the commissions created in that hour.
	commissionKeyPrefix = "commission:"
	// tierKeyPrefix: tier:<tier_changes id>.
	tierKeyPrefix = "tier:"
	// digestKeyPrefix: digest:<affiliate>:<local date the week started>.
	digestKeyPrefix = "digest:"
	// actionKeyPrefix: action:<affiliate>:<payout run>, the payout_failed mail of a balance a
	// run could not pay because the affiliate has to act (Stripe onboarding).
	actionKeyPrefix = "action:"
)

// actionNeeded is what an action-needed mail reports, frozen on its delivery.
type actionNeeded struct {
	Amount string `json:"amount"`
	Reason string `json:"reason"`
}

// queueActionNeeded tells an affiliate, once per payout run, that a balance waits for them
// to finish Stripe onboarding. Payout mail: preferences never stop it.
// The payout engine calls it with the balance's figures, in the database it runs on.
func queueActionNeeded(db dbx.Builder, affiliate, email string, amount int64, currency, runID, reason string, now time.Time) error {
	if email == "" {
		return nil
	}
	raw, err := json.Marshal(actionNeeded{Amount: money.FormatWithCode(amount, currency), Reason: reason})
	if err != nil {
		return fmt.Errorf("encode action-needed mail: %w", err)
	}
	_, err = insertDelivery(db, deliveryRow{
		Affiliate: affiliate, Email: email, Template: templatePayoutFailed, Status: collections.DeliveryQueued,
		IdempotencyKey: actionKeyPrefix + affiliate + ":" + runID, Data: string(raw),
	}, now)
	return err
}

// Tunables of the new-commission mail.
const (
	// commissionMailLookback is how far back the first scan after a start looks, so mails of
	// the hours around a restart are still queued.
	commissionMailLookback = 24 * time.Hour
	// commissionMailOverlap re-reads the tail of the previous scan: a batch transaction can
	// commit a little after the time stamped on its rows.
	commissionMailOverlap = 15 * time.Minute
	// commissionHourLayout is the hour in keys.
	commissionHourLayout = "2006010215"
)

// earnedKinds are the commission kinds an affiliate is told about as new earnings.
const earnedKinds = "'sale', 'recurring', 'bonus'"

// queueCommissionMails queues one new_commission mail per affiliate and UTC hour with new
// positive commissions, due when the hour ends: at most one such mail per affiliate per hour,
// listing everything of that hour. The engine writes commissions with raw SQL (no record
// hooks), so this scans them: ids are time-ordered (newOrderedID), so the scan is a range of
// the primary key since the last scan. Idempotency keys make rescans harmless.
func (l *lifecycleMails) queueCommissionMails() error {
	now := l.now()
	from := l.commissionsSeen
	if from.IsZero() {
		from = now.Add(-commissionMailLookback)
	}
	lo := from.Add(-commissionMailOverlap)
	var rows []struct {
		Affiliate string `db:"affiliate"`
		Hour      string `db:"hour"`
	}
	err := l.app.DB().NewQuery(
		"SELECT [[affiliate]], substr([[created]], 1, 13) AS [[hour]] FROM {{commissions}} " +
			"WHERE [[id]] >= {:lo} AND [[created]] >= {:since} AND [[kind]] IN (" + earnedKinds + ") AND [[amount]] > 0 " +
			"GROUP BY [[affiliate]], [[hour]]").
		Bind(dbx.Params{"lo": orderedIDFloor(lo), "since": store.DBTime(lo)}).All(&rows)
	if err != nil {
		return fmt.Errorf("scan new commissions: %w", err)
	}
	if len(rows) > 0 {
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = r.Affiliate
		}
		emails, err := affiliateEmails(l.app, ids)
		if err != nil {
			return err
		}
		for _, r := range rows {
			hour, err := time.Parse("2006-01-02 15", r.Hour)
			if err != nil || emails[r.Affiliate] == "" {
				continue
			}
			_, err = l.outbox.enqueue(l.app.DB(), deliveryRow{
				Affiliate: r.Affiliate, Email: emails[r.Affiliate], Template: templateNewCommission, Status: collections.DeliveryQueued,
				IdempotencyKey: commissionKeyPrefix + r.Affiliate + ":" + hour.Format(commissionHourLayout),
				Due:            hour.Add(time.Hour),
			})
			if err != nil {
				return err
			}
		}
	}
	l.commissionsSeen = now
	return nil
}

// orderedIDFloor is the smallest newOrderedID of instant t: its ten time digits.
func orderedIDFloor(t time.Time) string {
	return store.NewOrderedID(t)[:10]
}

// affiliateEmails maps affiliate ids to their emails.
func affiliateEmails(app core.App, ids []string) (map[string]string, error) {
	recs, err := app.FindRecordsByIds(collections.Affiliates, ids)
	if err != nil {
		return nil, fmt.Errorf("load affiliates: %w", err)
	}
	out := make(map[string]string, len(recs))
	for _, r := range recs {
		out[r.Id] = r.Email()
	}
	return out, nil
}

// queueTierLogged queues the tier_changed mail once per recorded move (tier_changes rows are
// saved as records, so this runs after their transaction committed).
func (l *lifecycleMails) queueTierLogged(app core.App, move *core.Record) {
	affiliate, err := app.FindRecordById(collections.Affiliates, move.GetString(collections.FieldAffiliate))
	if err == nil && affiliate.Email() != "" {
		_, err = l.outbox.enqueue(app.DB(), deliveryRow{
			Affiliate: affiliate.Id, Email: affiliate.Email(), Template: templateTierChanged, Status: collections.DeliveryQueued,
			IdempotencyKey: tierKeyPrefix + move.Id,
		})
	}
	if err != nil {
		app.Logger().Error("queue tier email", "tier_change", move.Id, "error", err)
		return
	}
	l.signal()
}
