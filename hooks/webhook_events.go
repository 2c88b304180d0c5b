package hooks

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/types"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Events sent to the merchant's endpoints (collection webhooks). The names are the values of
// webhooks.events (migration 1795481500_outgoing_webhooks); docs/http-api.md lists each
// event's payload.
const (
	eventAffiliateCreated   = "affiliate.created"
	eventAffiliateApproved  = "affiliate.approved"
	eventAffiliateRejected  = "affiliate.rejected"
	eventAffiliateSuspended = "affiliate.suspended"
	eventSaleCreated        = "sale.created"
	eventSaleUpdated        = "sale.updated"
	eventSaleRefunded       = "sale.refunded"
	eventCommissionCreated  = "commission.created"
	eventCommissionPayable  = "commission.payable"
	eventCommissionVoided   = "commission.voided"
	eventPayoutCreated      = "payout.created"
	eventPayoutPaid         = "payout.paid"
	eventPayoutFailed       = "payout.failed"
	eventFeedbackCreated    = "feedback.created"
	// eventWebhookTest is the "send test event" of one endpoint, whatever it subscribes to.
	eventWebhookTest = "webhook.test"
)

// eventFields are the fields of each collection an event's data carries besides id: what
// the merchant's tools need, never secrets (password hashes, tokens, webhook secrets) or
// bookkeeping. Amounts are integer minor units next to their currency.
var eventFields = map[string][]string{
	collections.Affiliates: {"program", "name", "email", "code", "status", "tier", "payout_method", "created", "updated"},
	collections.Conversions: {"program", "affiliate", "link", "click", "source", "external_id", "customer", "amount", "currency",
		"refunded_amount", "status", "reason", "occurred_at", "subscription_id", "payment_number", "created", "updated"},
	collections.Commissions: {"affiliate", "program", "conversion", "kind", "amount", "currency", "status", "payable_at", "payout",
		"note", "created", "updated"},
	collections.Payouts: {"affiliate", "program", "run", "amount", "currency", "method", "status", "reference", "stripe_transfer_id",
		"error", "period_end", "paid_at", "created", "updated"},
	collections.Feedback: {"affiliate", "program", "rating", "topic", "comment", "survey", "created"},
}

// eventData is a record's data in an event: its id and eventFields, numbers as integers
// (every number field of these collections is), dates as RFC 3339 UTC or null.
func eventData(r *core.Record) map[string]any {
	names := eventFields[r.Collection().Name]
	data := make(map[string]any, len(names)+1)
	data["id"] = r.Id
	for _, name := range names {
		switch f := r.Collection().Fields.GetByName(name); f.(type) {
		case nil:
			continue
		case *core.NumberField:
			data[name] = int64(r.GetFloat(name))
		case *core.DateField, *core.AutodateField:
			if dt := r.GetDateTime(name); dt.IsZero() {
				data[name] = nil
			} else {
				data[name] = dt.Time().UTC().Format(time.RFC3339Nano)
			}
		default:
			data[name] = r.Get(name)
		}
	}
	return data
}

// emitEvent writes event to the outbox for every active endpoint subscribed to it: one
// webhook_deliveries row each, in tx, the transaction of the change. So an event exists
// exactly when its change committed (a rolled-back change sends nothing), and sending it later
// can never slow or fail the change. data is the payload's "data"; the worker is woken once tx
// commits. Code that emits many events in one transaction (the commission engine) uses one
// eventEmitter instead, which reads the endpoints once.
func emitEvent(tx core.App, event string, data map[string]any) error {
	return newEventEmitter(tx).emit(event, data)
}

// eventEmitter emits events in one transaction, reading the subscribed endpoints once.
type eventEmitter struct {
	tx        core.App
	endpoints []eventEndpoint
	loaded    bool
	signaled  bool
}

// eventEndpoint is an active endpoint as emitting needs it.
type eventEndpoint struct {
	ID     string        `db:"id"`
	URL    string        `db:"url"`
	Events types.JSONRaw `db:"events"`
	events []string
}

// wants reports whether an endpoint is active and subscribed to event (empty events: all).
func (ep eventEndpoint) wants(event string) bool {
	return len(ep.events) == 0 || slices.Contains(ep.events, event)
}

func newEventEmitter(tx core.App) *eventEmitter { return &eventEmitter{tx: tx} }

// load reads the active endpoints (a handful of rows; no endpoint costs one query).
func (em *eventEmitter) load() error {
	if em.loaded {
		return nil
	}
	err := em.tx.DB().Select("id", "url", "events").From(collections.Webhooks).
		Where(dbx.HashExp{collections.WebhookActive: true}).OrderBy("id").All(&em.endpoints)
	if err != nil {
		return fmt.Errorf("load webhook endpoints: %w", err)
	}
	for i := range em.endpoints {
		ep := &em.endpoints[i]
		if len(ep.Events) > 0 {
			if err := json.Unmarshal(ep.Events, &ep.events); err != nil {
				var one string // a single select value may be stored bare
				if json.Unmarshal(ep.Events, &one) == nil && one != "" {
					ep.events = []string{one}
				}
			}
		}
	}
	em.loaded = true
	return nil
}

// wants reports whether any endpoint takes event, so callers skip building its data.
func (em *eventEmitter) wants(event string) (bool, error) {
	if err := em.load(); err != nil {
		return false, err
	}
	for _, ep := range em.endpoints {
		if ep.wants(event) {
			return true, nil
		}
	}
	return false, nil
}

// emit writes event with data for every endpoint that takes it.
func (em *eventEmitter) emit(event string, data map[string]any) error {
	if ok, err := em.wants(event); err != nil || !ok {
		return err
	}
	var targets []eventEndpoint
	for _, ep := range em.endpoints {
		if ep.wants(event) {
			targets = append(targets, ep)
		}
	}
	_, err := em.write(event, data, targets)
	return err
}

// emitRecord emits event with the data of the record collection/id as it is in tx.
func (em *eventEmitter) emitRecord(event, collection, id string) error {
	if ok, err := em.wants(event); err != nil || !ok {
		return err
	}
	r, err := em.tx.FindRecordById(collection, id)
	if err != nil {
		return fmt.Errorf("read %s %s for %s: %w", collection, id, event, err)
	}
	return em.emit(event, eventData(r))
}

// deliveryIDs orders the deliveries of this process: an endpoint's events go out in the order
// of their ids (webhookSender's head of line).
var deliveryIDs store.OrderedIDs

// write inserts one delivery per target and returns the event id, which all share (the
// webhook-id header, the receiver's idempotency key), as they share the body:
// {"type", "timestamp", "data"}.
func (em *eventEmitter) write(event string, data map[string]any, targets []eventEndpoint) (string, error) {
	now := time.Now().UTC()
	eventID := "msg_" + store.NewOrderedID(now)
	body, err := json.Marshal(map[string]any{"type": event, "timestamp": now.Format(time.RFC3339Nano), "data": data})
	if err != nil {
		return "", fmt.Errorf("encode %s event: %w", event, err)
	}
	ts := store.DBTime(now)
	for _, ep := range targets {
		_, err := em.tx.DB().NewQuery(
			"INSERT INTO {{webhook_deliveries}} ([[id]], [[affiliate]], [[webhook]], [[event]], [[event_id]], [[url]], [[payload]], " +
				"[[status]], [[attempts]], [[next_attempt_at]], [[response_status]], [[last_error]], [[reason]], [[last_attempt_at]], " +
				"[[response_body]], [[created]], [[updated]]) VALUES ({:id}, '', {:webhook}, {:event}, {:eventID}, {:url}, {:payload}, " +
				"{:pending}, 0, {:now}, 0, '', '', '', '', {:now}, {:now})").
			Bind(dbx.Params{"id": deliveryIDs.Next(now), "webhook": ep.ID, "event": event, "eventID": eventID, "url": ep.URL,
				"payload": string(body), "pending": collections.WebhookDeliveryPending, "now": ts}).Execute()
		if err != nil {
			return "", fmt.Errorf("queue %s for webhook %s: %w", event, ep.ID, err)
		}
	}
	em.signalAfterCommit()
	return eventID, nil
}

// webhookSenderKey is where the app's sender lives in app.Store(), for emitters to wake it.
const webhookSenderKey = "pba.webhookSender"

// signalAfterCommit wakes the delivery worker once the transaction committed (at once outside
// one); a rolled-back transaction wakes nobody.
func (em *eventEmitter) signalAfterCommit() {
	if em.signaled {
		return
	}
	em.signaled = true
	s, _ := em.tx.Store().Get(webhookSenderKey).(*webhookSender)
	if s == nil {
		return
	}
	if info := em.tx.TxInfo(); info != nil {
		info.OnComplete(func(txErr error) error {
			if txErr == nil {
				s.worker.Signal()
			}
			return nil
		})
		return
	}
	s.worker.Signal()
}

// bindEventHooks emits the events of changes saved as records, inside the save: the execute
// hooks run after the row is written and before the transaction ends, which each handler
// opens itself when the save has none (RunInTransaction joins an enclosing one). Changes the
// engines write with SQL emit explicitly: sales (saleCreatedEvents, applyConversionEdit),
// commissions (the engine's inserts, insertBonus, releasePayable) and payouts (createPayout,
// markPaid, markFailed).
func bindEventHooks(app core.App) {
	inTx := func(e *core.RecordEvent, emit func(tx core.App) error) error {
		outer := e.App
		return outer.RunInTransaction(func(tx core.App) error {
			e.App = tx
			defer func() { e.App = outer }()
			if err := e.Next(); err != nil {
				return err
			}
			return emit(tx)
		})
	}
	onCreate := func(collection, event string) {
		app.OnRecordCreateExecute(collection).BindFunc(func(e *core.RecordEvent) error {
			return inTx(e, func(tx core.App) error { return emitEvent(tx, event, eventData(e.Record)) })
		})
	}
	// onStatus emits events[status] when a save changes the record's status to it.
	onStatus := func(collection string, events map[string]string) {
		app.OnRecordUpdateExecute(collection).BindFunc(func(e *core.RecordEvent) error {
			before := e.Record.Original().GetString(collections.FieldStatus)
			return inTx(e, func(tx core.App) error {
				after := e.Record.GetString(collections.FieldStatus)
				if event := events[after]; event != "" && after != before {
					return emitEvent(tx, event, eventData(e.Record))
				}
				return nil
			})
		})
	}
	onCreate(collections.Affiliates, eventAffiliateCreated)
	onStatus(collections.Affiliates, map[string]string{collections.AffiliateApproved: eventAffiliateApproved,
		collections.AffiliateRejected: eventAffiliateRejected, collections.AffiliateSuspended: eventAffiliateSuspended})
	onCreate(collections.Commissions, eventCommissionCreated) // clawbacks, reinstatements, admins' adjustments
	onStatus(collections.Commissions, map[string]string{collections.CommissionVoid: eventCommissionVoided,
		collections.CommissionPayable: eventCommissionPayable})
	onCreate(collections.Payouts, eventPayoutCreated) // admins' manual payouts; the engine's emit in createPayout
	onStatus(collections.Payouts, map[string]string{collections.PayoutPaid: eventPayoutPaid, collections.PayoutFailed: eventPayoutFailed})
	onCreate(collections.Feedback, eventFeedbackCreated)
}

// saleCreatedEvents is what a new sale sends, in its transaction: sale.created to the
// merchant's endpoints and conversion.created to its affiliate's webhook_url. Every door
// that records a sale calls it (the conversion service, the dashboard's create).
func saleCreatedEvents(tx core.App, conv *core.Record) error {
	if err := emitEvent(tx, eventSaleCreated, eventData(conv)); err != nil {
		return err
	}
	return enqueueConversionWebhook(tx, conv)
}

// saleChangeEvent is the event of a saved change of a sale: sale.refunded when its refunded
// amount grew, else sale.updated when anything the event carries changed ("" for none).
func saleChangeEvent(before, after map[string]any) string {
	if toInt64(after["refunded_amount"]) > toInt64(before["refunded_amount"]) {
		return eventSaleRefunded
	}
	for k, v := range after {
		if k != "updated" && fmt.Sprint(v) != fmt.Sprint(before[k]) {
			return eventSaleUpdated
		}
	}
	return ""
}

// toInt64 reads an integer of eventData.
func toInt64(v any) int64 {
	n, _ := v.(int64)
	return n
}
