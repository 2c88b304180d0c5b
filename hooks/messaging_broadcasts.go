package hooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/worker"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// broadcasts turns messages an admin schedules into one delivery per recipient of their
// audience (skipped, with the reason, for those who opted out or are suppressed) and keeps
// each message's counts until nothing of it is queued.
type broadcasts struct {
	app    core.App
	outbox *mailOutbox
	now    func() time.Time
	signal func() // wakes the mail worker
}

// newBroadcasts returns the broadcasts of an app, queued through outbox.
func newBroadcasts(app core.App, outbox *mailOutbox, now func() time.Time, signal func()) *broadcasts {
	return &broadcasts{app: app, outbox: outbox, now: now, signal: signal}
}

// bind wakes the worker when a message is scheduled (created so or set so).
func (b *broadcasts) bind() {
	kickOnScheduled := func(ev *core.RecordEvent) error {
		if ev.Record.GetString(collections.FieldStatus) == collections.MessageScheduled {
			b.signal()
		}
		return ev.Next()
	}
	b.app.OnRecordAfterCreateSuccess(collections.Messages).BindFunc(kickOnScheduled)
	b.app.OnRecordAfterUpdateSuccess(collections.Messages).BindFunc(kickOnScheduled)
}

// startDueMessages claims scheduled broadcasts whose time has come and turns the audience of
// every sending message not yet resolved into deliveries. A crash mid-resolution leaves
// resolved_at empty, so the next run resolves again; the idempotency keys make that a no-op
// for rows already written.
func (b *broadcasts) startDueMessages() error {
	now := store.DBTime(b.now())
	_, err := b.app.DB().NewQuery(
		"UPDATE {{messages}} SET [[status]] = {:sending}, [[updated]] = {:now} " +
			"WHERE [[status]] = {:scheduled} AND [[kind]] = {:broadcast} AND ([[send_at]] = '' OR [[send_at]] <= {:now})").
		Bind(dbx.Params{"sending": collections.MessageSending, "scheduled": collections.MessageScheduled, "broadcast": collections.MessageKindBroadcast, "now": now}).
		Execute()
	if err != nil {
		return fmt.Errorf("claim scheduled messages: %w", err)
	}
	var ids []string
	err = b.app.DB().Select(core.FieldNameId).From(collections.Messages).
		Where(dbx.HashExp{collections.FieldStatus: collections.MessageSending, collections.MessageResolvedAt: ""}).OrderBy(core.FieldNameId).Column(&ids)
	if err != nil {
		return fmt.Errorf("find unresolved messages: %w", err)
	}
	for _, id := range ids {
		if err := b.resolveMessage(id); err != nil {
			return err
		}
	}
	return nil
}

// audienceFilter is messages.audience. Status is one status or a list; empty means approved.
// Tiers (any of them) is how an asset's announcement reaches the tiers it targets.
type audienceFilter struct {
	Program string          `json:"program"`
	Status  json.RawMessage `json:"status"`
	Tier    string          `json:"tier"`
	Tiers   []string        `json:"tiers"`
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
	ID    string         `db:"id"`
	Email string         `db:"email"`
	Tags  sql.NullString `db:"tags"`
	mailPrefs
}

// resolveMessage writes one delivery per recipient of a broadcast: queued, or skipped with
// the reason when the affiliate opted out or the address is suppressed.
func (b *broadcasts) resolveMessage(id string) error {
	msg, err := b.app.FindRecordById(collections.Messages, id)
	if err != nil {
		return fmt.Errorf("find message %s: %w", id, err)
	}
	var filter audienceFilter
	if raw := msg.GetString(collections.MessageAudience); raw != "" && raw != "null" {
		if err := json.Unmarshal([]byte(raw), &filter); err != nil {
			return b.failMessage(id, fmt.Errorf("audience is not a valid filter: %w", err))
		}
	}
	members, err := audienceMembers(b.app, filter)
	if err != nil {
		if errors.Is(err, errBadAudience) {
			return b.failMessage(id, err)
		}
		return fmt.Errorf("resolve audience of message %s: %w", id, err)
	}
	category := mailCategory(templateBroadcast, msg)
	err = b.outbox.enqueueAudience(members, category, func(m audienceMember) deliveryRow {
		return deliveryRow{Message: id, Affiliate: m.ID, Email: m.Email, Template: templateBroadcast, Status: collections.DeliveryQueued,
			IdempotencyKey: "broadcast:" + id + ":" + m.ID, Marketing: true}
	})
	if err != nil {
		return fmt.Errorf("write deliveries of message %s: %w", id, err)
	}
	_, err = b.app.DB().NewQuery("UPDATE {{messages}} SET [[resolved_at]] = {:now}, [[updated]] = {:now} WHERE [[id]] = {:id}").
		Bind(dbx.Params{"now": store.DBTime(b.now()), "id": id}).Execute()
	if err != nil {
		return fmt.Errorf("mark message %s resolved: %w", id, err)
	}
	return nil
}

// errBadAudience marks an audience filter that cannot be resolved (the admin's to fix).
var errBadAudience = errors.New("bad audience")

// audienceMembers are the affiliates a filter selects, with an address, in id order.
func audienceMembers(app core.App, filter audienceFilter) ([]audienceMember, error) {
	statuses, err := filter.statuses()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadAudience, err)
	}
	q := app.DB().Select("id", "email", "preferred_channel", "mail_opt_out", "tags").From(collections.Affiliates).
		Where(dbx.In("status", toAny(statuses)...)).AndWhere(dbx.NewExp("[[email]] != ''")).OrderBy("id")
	if filter.Program != "" {
		q.AndWhere(dbx.HashExp{"program": filter.Program})
	}
	if filter.Tier != "" {
		q.AndWhere(dbx.HashExp{"tier": filter.Tier})
	}
	if len(filter.Tiers) > 0 {
		q.AndWhere(dbx.In("tier", toAny(filter.Tiers)...))
	}
	var all []audienceMember
	if err := q.All(&all); err != nil {
		return nil, err
	}
	members := all[:0]
	for _, m := range all {
		if len(filter.Tags) == 0 || hasAnyTag(m.Tags.String, filter.Tags) {
			members = append(members, m)
		}
	}
	return members, nil
}

// enqueueAudience writes row(m) for every member, in short transactions: queued, or skipped
// with the reason when the member declines this category of mail or is suppressed.
func (o *mailOutbox) enqueueAudience(members []audienceMember, category string, row func(audienceMember) deliveryRow) error {
	suppressed, err := o.suppressedEmails()
	if err != nil {
		return err
	}
	for start := 0; start < len(members); start += messagingInsertChunk {
		chunk := members[start:min(start+messagingInsertChunk, len(members))]
		err := o.app.RunInTransaction(func(tx core.App) error {
			for _, m := range chunk {
				d := row(m)
				if reason := skipReason(m.mailPrefs, category, suppressed[strings.ToLower(m.Email)]); reason != "" {
					d.Status, d.Error = collections.DeliverySkipped, reason
				}
				if _, err := o.enqueue(tx.DB(), d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// failMessage records why a message cannot be sent and sets it back to draft so the admin
// can fix it; it is not an error of the run.
func (b *broadcasts) failMessage(id string, cause error) error {
	_, err := b.app.DB().NewQuery("UPDATE {{messages}} SET [[status]] = {:draft}, [[error]] = {:err}, [[updated]] = {:now} WHERE [[id]] = {:id}").
		Bind(dbx.Params{"draft": collections.MessageDraft, "err": messagingErrorText(cause.Error()), "now": store.DBTime(b.now()), "id": id}).Execute()
	if err != nil {
		return fmt.Errorf("record failure of message %s: %w", id, err)
	}
	return nil
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

// settleMessages refreshes the counts of sending messages and marks those with nothing
// queued as sent.
func (b *broadcasts) settleMessages() error {
	var ids []string
	err := b.app.DB().Select(core.FieldNameId).From(collections.Messages).
		Where(dbx.HashExp{collections.FieldStatus: collections.MessageSending}).AndWhere(dbx.NewExp("[[resolved_at]] != ''")).Column(&ids)
	if err != nil {
		return fmt.Errorf("find sending messages: %w", err)
	}
	for _, id := range ids {
		if err := refreshMessageCounts(b.app, id, b.now(), true); err != nil {
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
		Bind(dbx.Params{"counts": string(raw), "now": store.DBTime(now), "sent": collections.MessageSent, "id": id}).Execute()
	if err != nil {
		return fmt.Errorf("store counts of message %s: %w", id, err)
	}
	return nil
}

// sendNowWith sends one broadcast at once through s, under the mail lease: its audience is
// resolved (when not yet), its queued deliveries are sent in batches and its counts stored,
// sent when nothing is left queued. The demo sends its broadcast so through the log sender:
// the message goes the real way without mailing anyone.
func (m *messaging) sendNowWith(ctx context.Context, id string, s mailSender) error {
	first := true
	next := func() bool { ok := first; first = false; return ok }
	err := m.outbox.leased(next, func() error {
		_, err := m.app.DB().NewQuery("UPDATE {{messages}} SET [[status]] = {:sending}, [[updated]] = {:now} WHERE [[id]] = {:id} AND [[status]] IN ({:draft}, {:scheduled})").
			Bind(dbx.Params{"sending": collections.MessageSending, "now": store.DBTime(m.broadcasts.now()), "id": id,
				"draft": collections.MessageDraft, "scheduled": collections.MessageScheduled}).Execute()
		if err != nil {
			return fmt.Errorf("start message %s: %w", id, err)
		}
		var resolved string
		if err := m.app.DB().Select(collections.MessageResolvedAt).From(collections.Messages).Where(dbx.HashExp{core.FieldNameId: id}).Row(&resolved); err != nil {
			return fmt.Errorf("find message %s: %w", id, err)
		}
		if resolved == "" {
			if err := m.broadcasts.resolveMessage(id); err != nil {
				return err
			}
		}
		for ctx.Err() == nil {
			var batch []deliveryRow
			err := m.app.DB().Select(deliveryColumns...).From(collections.Deliveries).
				Where(dbx.HashExp{collections.FieldStatus: collections.DeliveryQueued, collections.DeliveryMessage: id}).
				AndWhere(dbx.NewExp("[[next_attempt_at]] <= {:now}", dbx.Params{"now": store.DBTime(m.broadcasts.now())})). // a failed send waits for the worker
				OrderBy(core.FieldNameId).Limit(messagingBatchSize).All(&batch)
			if err != nil {
				return fmt.Errorf("find deliveries of message %s: %w", id, err)
			}
			if len(batch) == 0 {
				break
			}
			if err := m.outbox.sendRows(ctx, s, batch, true); err != nil {
				return err
			}
		}
		return refreshMessageCounts(m.app, id, m.broadcasts.now(), true)
	})
	if errors.Is(err, worker.ErrEnd) {
		return fmt.Errorf("send message %s: another process holds the mail lease", id)
	}
	return err
}
