package hooks

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/saleupdate"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Conversion fields the engine owns. They are written with raw SQL (the engine marks sales
// handled, refunds are applied), so a record an admin loaded before that and saves after it
// carries stale values; the update hook puts the stored ones back before the save.
const (
	conversionCommissioned  = "commissioned"
	conversionRefundApplied = "refund_applied"
)

// lockedSaleFields are the fields of a sale that its commission was computed from, or that
// place it in stats_daily. Once the sale has a commission they cannot change: the commission,
// its payout and the rollups would no longer match it. Rejecting it and recording a corrected
// one keeps every figure right.
var lockedSaleFields = [...]string{collections.FieldAffiliate, collections.FieldProgram, collections.FieldLink,
	collections.FieldAmount, collections.FieldCurrency, collections.ConversionOccurredAt}

// storedConversion is a conversion as it is in the database, read inside the save's transaction.
type storedConversion struct {
	Status          string `db:"status"`
	Reason          string `db:"reason"`
	Affiliate       string `db:"affiliate"`
	Program         string `db:"program"`
	Link            string `db:"link"`
	OccurredAt      string `db:"occurred_at"`
	Amount          int64  `db:"amount"`
	Refunded        int64  `db:"refunded_amount"`
	RefundApplied   int64  `db:"refund_applied"`
	Commissioned    bool   `db:"commissioned"`
	SenderUpdatedAt string `db:"sender_updated_at"`
	SenderSequence  int64  `db:"sender_sequence"`
}

// conversionShare is what one conversion adds to its stats_daily row: a conversion and its
// revenue net of the refunds applied so far, unless it is rejected (rejected sales were never
// counted, see conversionService.record).
type conversionShare struct {
	key                  store.StatsKey
	conversions, revenue int64
}

func shareOf(status, affiliate, program, link string, occurredAt time.Time, amount, refundApplied int64) conversionShare {
	s := conversionShare{key: store.StatsKeyOf(occurredAt, affiliate, program, link)}
	if status != collections.ConversionRejected {
		s.conversions, s.revenue = 1, amount-refundApplied
	}
	return s
}

// registerConversionEdits keeps the ledger and the rollups in step with a conversion edited
// after it was recorded: an admin rejects a sale found to be fraudulent, approves one rejected
// by mistake, or corrects a sale not yet commissioned. Everything happens in the save's
// transaction, so a crash leaves either the old state or the new one:
//   - rejecting a sale voids its unpaid commission, or claws back what was already paid (or is
//     in a payout) from the next payout;
//   - approving a rejected sale again revives its voided commission, reinstates what a rejection
//     clawed back, or hands a sale that never earned back to the engine;
//   - a sale leaving "approved" (a dispute, an admin's hold) moves its released commission back
//     to pending until it is approved again, so no payout run pays it meanwhile;
//   - stats_daily's conversions and revenue follow the status, the amount and the day, and its
//     commission follows the reversals; live counters get the deltas;
//   - status refunded means refunded in full: refunded_amount is raised to the amount, and the
//     engine voids the unpaid commission or claws back a paid one, as for a full Stripe refund;
//     refunds are cumulative and never taken back (saleupdate.Settle);
//   - every change of the status or the refunded amount is a row of the sale's history
//     (conversion_events), with the door it came through (saleChangeOf).
//
// This hook is where every door converges (conversion_updates.go): the dashboard's saves, the
// merchant API and postback updates, Stripe's refunds and disputes.
func registerConversionEdits(app core.App, live *liveHub) {
	registerSaleHistory(app)
	app.OnRecordUpdate(collections.Conversions).BindFunc(func(e *core.RecordEvent) error {
		outer := e.App
		var deltas map[string]liveCounters
		err := outer.RunInTransaction(func(tx core.App) error {
			e.App = tx
			defer func() { e.App = outer }()
			var err error
			deltas, err = applyConversionEdit(e, tx, time.Now().UTC())
			return err
		})
		if err == nil && live != nil {
			for affiliate, d := range deltas {
				live.add(affiliate, d)
			}
		}
		return err
	})
}

// applyConversionEdit saves e.Record (e.Next) and applies its consequences in tx. It returns
// the live counter deltas by affiliate.
func applyConversionEdit(e *core.RecordEvent, tx core.App, now time.Time) (map[string]liveCounters, error) {
	r := e.Record
	var old storedConversion
	err := tx.DB().NewQuery(`SELECT status, reason, affiliate, program, link, occurred_at, amount, refunded_amount, refund_applied,
		commissioned, sender_updated_at, sender_sequence FROM conversions WHERE id = {:id}`).Bind(dbx.Params{"id": r.Id}).One(&old)
	if err != nil {
		return nil, fmt.Errorf("read conversion %s: %w", r.Id, err)
	}
	r.Set(conversionRefundApplied, old.RefundApplied)
	r.Set(conversionCommissioned, old.Commissioned)
	change := saleChangeOf(e)
	// The sender's order key of the last status change is the merchant doors' (applySaleUpdate).
	r.Set(collections.ConversionSenderUpdatedAt, old.SenderUpdatedAt)
	r.Set(collections.ConversionSenderSequence, old.SenderSequence)
	if change.StoreKey && !change.UpdatedAt.IsZero() {
		r.Set(collections.ConversionSenderUpdatedAt, change.UpdatedAt)
	}
	if change.StoreKey && change.Sequence > 0 {
		r.Set(collections.ConversionSenderSequence, change.Sequence)
	}
	newStatus, refunded, err := settleSale(r, old)
	if err != nil {
		return nil, err
	}

	sale, err := saleCommission(tx, r.Id)
	if err != nil {
		return nil, err
	}
	if sale != nil {
		orig := r.Original()
		for _, f := range lockedSaleFields {
			if fmt.Sprint(orig.Get(f)) != fmt.Sprint(r.Get(f)) {
				return nil, fieldError(f, "commissioned",
					"This sale already earned a commission, so "+f+" cannot change: reject it and record a corrected sale instead.")
			}
		}
	}
	rejecting := old.Status != collections.ConversionRejected && newStatus == collections.ConversionRejected
	unrejecting := old.Status == collections.ConversionRejected && newStatus != collections.ConversionRejected
	if unrejecting && sale == nil {
		// It never earned (rejected when recorded, or before the engine ran): the engine
		// computes its commission on its next run. Same save, so the approval and the reset
		// commit together; the unique (conversion, kind) index keeps a second pass from
		// doubling anything.
		r.Set(conversionCommissioned, false)
	}

	// The sale as stored before this save, for its event (read only when an endpoint listens).
	events := newEventEmitter(tx)
	var storedSale map[string]any
	if ok, err := events.wants(eventSaleUpdated); err != nil {
		return nil, err
	} else if refunds, err := events.wants(eventSaleRefunded); err != nil {
		return nil, err
	} else if ok || refunds {
		stored, err := tx.FindRecordById(collections.Conversions, r.Id)
		if err != nil {
			return nil, fmt.Errorf("read conversion %s: %w", r.Id, err)
		}
		storedSale = eventData(stored)
	}

	if err := e.Next(); err != nil {
		return nil, err
	}
	if storedSale != nil {
		after := eventData(r)
		if event := saleChangeEvent(storedSale, after); event != "" {
			if err := events.emit(event, after); err != nil {
				return nil, err
			}
		}
	}

	oldAt, err := store.ParseDBTime(old.OccurredAt)
	if err != nil {
		return nil, fmt.Errorf("conversion %s occurred_at %q: %w", r.Id, old.OccurredAt, err)
	}
	before := shareOf(old.Status, old.Affiliate, old.Program, old.Link, oldAt, old.Amount, old.RefundApplied)
	after := shareOf(newStatus, r.GetString(collections.FieldAffiliate), r.GetString(collections.FieldProgram),
		r.GetString(collections.FieldLink), r.GetDateTime(collections.ConversionOccurredAt).Time(),
		int64(r.GetInt(collections.FieldAmount)), old.RefundApplied)

	var commission int64
	switch {
	case sale == nil:
	case rejecting:
		commission, err = reverseRejectedSale(tx, sale, now)
	case unrejecting:
		commission, err = reinstateSale(tx, sale, old.Amount, old.RefundApplied, now)
	case old.Status == collections.ConversionApproved && newStatus != collections.ConversionApproved:
		err = holdSaleCommission(tx, r.Id, now)
	}
	if err != nil {
		return nil, err
	}
	if newStatus != old.Status || refunded != old.Refunded {
		if change.Door == collections.DoorDashboard && r.GetString(collections.ConversionReason) != old.Reason {
			change.Note = "reason: " + r.GetString(collections.ConversionReason)
		}
		err := recordSaleEvent(tx, saleEvent{Conversion: r.Id, Affiliate: r.GetString(collections.FieldAffiliate),
			Program: r.GetString(collections.FieldProgram), Change: change, StatusBefore: old.Status, StatusAfter: newStatus,
			RefundedBefore: old.Refunded, RefundedAfter: refunded, Commission: commission})
		if err != nil {
			return nil, err
		}
	}

	deltas := map[string]liveCounters{}
	stats := map[store.StatsKey]store.StatsDelta{}
	if before.key == after.key {
		stats[after.key] = store.StatsDelta{Conversions: after.conversions - before.conversions,
			Revenue: after.revenue - before.revenue, Commission: commission}
	} else {
		// Only a sale without a commission can move (lockedSaleFields): commission is 0.
		stats[before.key] = store.StatsDelta{Conversions: -before.conversions, Revenue: -before.revenue}
		stats[after.key] = store.StatsDelta{Conversions: after.conversions, Revenue: after.revenue, Commission: commission}
	}
	for key, d := range stats {
		if d == (store.StatsDelta{}) {
			continue
		}
		live := deltas[key.Affiliate]
		live.add(liveCounters{Conversions: d.Conversions, Revenue: d.Revenue, Commission: d.Commission})
		deltas[key.Affiliate] = live
	}
	return deltas, store.AddStats(tx, stats)
}

// settleSale puts on r the status and refunded amount its save leaves (saleupdate.Settle) and
// returns them. A save that does not touch the status or the refunded amount (a copy loaded
// before a refund or a rejection, saved for another field) keeps the stored ones; refunds are
// cumulative, so a save lowering refunded_amount is refused.
func settleSale(r *core.Record, old storedConversion) (string, int64, error) {
	loaded := r.Original()
	asked := r.GetString(collections.FieldStatus)
	if asked == loaded.GetString(collections.FieldStatus) {
		asked = old.Status
	}
	refunded := int64(r.GetInt(collections.ConversionRefundedAmount))
	if refunded < old.Refunded {
		if refunded != int64(loaded.GetInt(collections.ConversionRefundedAmount)) {
			return "", 0, fieldError(collections.ConversionRefundedAmount, "cumulative",
				fmt.Sprintf("Refunds are cumulative and never taken back: %d is refunded already (reload the sale).", old.Refunded))
		}
		refunded = old.Refunded
	}
	status, refunded, err := saleupdate.Settle(old.Status, asked, int64(r.GetInt(collections.FieldAmount)), refunded)
	if err != nil {
		return "", 0, settleError(err)
	}
	r.Set(collections.FieldStatus, status)
	r.Set(collections.ConversionRefundedAmount, refunded)
	return status, refunded, nil
}

// reversalIndexWhere is the condition of the partial idx_commissions_reversals (conversion):
// the clawbacks and adjustments tied to a sale (every kind but sale, recurring and bonus; the
// index parser of PocketBase takes no IN list). Queries repeat it so SQLite uses that index.
const reversalIndexWhere = "conversion != '' AND kind != 'sale' AND kind != 'recurring' AND kind != 'bonus'"

// The reads of a sale's commissions, each through an index (TestSaleCommissionReadsIndexes):
// the sale's own commission through the unique (conversion, kind) index, its clawbacks and
// reinstatements through idx_commissions_reversals.
const (
	saleCommissionSQL = "SELECT id FROM commissions WHERE conversion = {:c} AND " + saleIndexWhere + " LIMIT 1"
	saleNetSQL        = `SELECT (SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE conversion = {:c} AND status != 'void' AND ` +
		saleIndexWhere + `) + (SELECT IFNULL(SUM(amount), 0) FROM commissions WHERE conversion = {:c} AND status != 'void' AND ` +
		reversalIndexWhere + ` AND (kind = 'clawback' OR ref LIKE 'reinstate:%'))`
	saleEntryCountSQL = "SELECT COUNT(*) FROM commissions WHERE conversion = {:c} AND " + reversalIndexWhere + " AND ref LIKE {:prefix}"
)

// saleCommission is the sale's own commission (kind sale or recurring), or nil if it has none.
func saleCommission(tx core.App, conversion string) (*core.Record, error) {
	r, err := recordByIDQuery(tx, collections.Commissions, saleCommissionSQL, dbx.Params{"c": conversion})
	if err != nil {
		return nil, fmt.Errorf("commission of conversion %s: %w", conversion, err)
	}
	return r, nil
}

// recordByIDQuery loads the record of collection whose id query selects, or returns nil when it
// selects none. The query is raw SQL so that tests can hold its plan to an index.
func recordByIDQuery(tx core.App, collection, query string, params dbx.Params) (*core.Record, error) {
	var id string
	err := tx.DB().NewQuery(query).Bind(params).Row(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return tx.FindRecordById(collection, id)
}

// saleOriginal is the commission the sale earned before any refund reduced it (the rule
// snapshot's amount; the record's amount for commissions written before snapshots had it).
func saleOriginal(sale *core.Record) int64 {
	var rule commissionRule
	_ = json.Unmarshal([]byte(sale.GetString(collections.CommissionRule)), &rule)
	if rule.Amount > 0 {
		return rule.Amount
	}
	return int64(sale.GetInt(collections.FieldAmount))
}

// saleNet is what the affiliate keeps of a sale now: its commission unless void, plus its
// clawbacks (negative) and reinstatements.
func saleNet(tx core.App, conversion string) (int64, error) {
	var net int64
	err := tx.DB().NewQuery(saleNetSQL).Bind(dbx.Params{"c": conversion}).Row(&net)
	if err != nil {
		return 0, fmt.Errorf("net commission of conversion %s: %w", conversion, err)
	}
	return net, nil
}

// unpaid reports whether a commission can still be changed in place: not paid, and in no
// payout (a payout's amount is the sum of its commissions).
func unpaid(c *core.Record) bool {
	s := c.GetString(collections.FieldStatus)
	return (s == collections.CommissionPending || s == collections.CommissionPayable) && c.GetString(collections.CommissionPayout) == ""
}

// reverseRejectedSale takes back everything a rejected sale still earns and returns the change
// of its net commission (zero or negative): an unpaid commission is voided; a paid one (or one
// in a payout) gets a clawback netted against the next payout.
func reverseRejectedSale(tx core.App, sale *core.Record, now time.Time) (int64, error) {
	conversion := sale.GetString(collections.CommissionConversion)
	if sale.GetString(collections.FieldStatus) == collections.CommissionVoid {
		return 0, nil
	}
	if unpaid(sale) {
		amount := int64(sale.GetInt(collections.FieldAmount))
		sale.Set(collections.FieldStatus, collections.CommissionVoid)
		if err := tx.Save(sale); err != nil {
			return 0, fmt.Errorf("void the commission of rejected conversion %s: %w", conversion, err)
		}
		return -amount, nil
	}
	net, err := saleNet(tx, conversion)
	if err != nil || net <= 0 {
		return 0, err
	}
	err = saveSaleEntry(tx, sale, collections.KindClawback, -net, collections.CommissionPayable, "reject", now,
		"sale rejected after payout", map[string]any{"rejected": true, "commission": net})
	if err != nil {
		return 0, fmt.Errorf("claw back the commission of rejected conversion %s: %w", conversion, err)
	}
	return -net, nil
}

// reinstateSale gives a sale approved again after a rejection what it earns (its commission
// less its refunds so far) and returns the change of its net commission (zero or positive): a
// voided commission is revived as pending (the engine releases it when due and approved);
// what a rejection clawed back is reinstated by a pending adjustment.
func reinstateSale(tx core.App, sale *core.Record, amount, refundApplied int64, now time.Time) (int64, error) {
	conversion := sale.GetString(collections.CommissionConversion)
	original := saleOriginal(sale)
	due := original - rules.Clawback(original, amount, refundApplied)
	if sale.GetString(collections.FieldStatus) == collections.CommissionVoid && sale.GetString(collections.CommissionPayout) == "" {
		if due <= 0 {
			return 0, nil // voided by a full refund: nothing to revive
		}
		sale.Set(collections.FieldStatus, collections.CommissionPending)
		sale.Set(collections.FieldAmount, due)
		if err := tx.Save(sale); err != nil {
			return 0, fmt.Errorf("revive the commission of conversion %s: %w", conversion, err)
		}
		return due, nil
	}
	net, err := saleNet(tx, conversion)
	if err != nil {
		return 0, err
	}
	if due <= net {
		return 0, nil
	}
	err = saveSaleEntry(tx, sale, collections.KindAdjustment, due-net, collections.CommissionPending, "reinstate", now,
		"sale approved again after its commission was clawed back", map[string]any{"reinstated": true, "commission": due})
	if err != nil {
		return 0, fmt.Errorf("reinstate the commission of conversion %s: %w", conversion, err)
	}
	return due - net, nil
}

// saveSaleEntry records a clawback or reinstatement of sale's commission. Its ref,
// "<what>:<conversion>:<n>", is unique per affiliate and kind, so each reversal is one row
// however a sale goes back and forth.
func saveSaleEntry(tx core.App, sale *core.Record, kind string, amount int64, status, what string, now time.Time,
	note string, rule map[string]any) error {
	conversion := sale.GetString(collections.CommissionConversion)
	var n int
	err := tx.DB().NewQuery(saleEntryCountSQL).
		Bind(dbx.Params{"c": conversion, "prefix": what + ":" + conversion + ":%"}).Row(&n)
	if err != nil {
		return err
	}
	col, err := tx.FindCachedCollectionByNameOrId(collections.Commissions)
	if err != nil {
		return err
	}
	entry := core.NewRecord(col)
	entry.Load(map[string]any{
		collections.FieldAffiliate:       sale.GetString(collections.FieldAffiliate),
		collections.FieldProgram:         sale.GetString(collections.FieldProgram),
		collections.CommissionConversion: conversion,
		collections.CommissionKind:       kind,
		collections.FieldAmount:          amount,
		collections.FieldCurrency:        sale.GetString(collections.FieldCurrency),
		collections.FieldStatus:          status,
		collections.CommissionPayableAt:  now,
		collections.CommissionRule:       rule,
		"ref":                            fmt.Sprintf("%s:%s:%d", what, conversion, n+1),
		"note":                           note,
	})
	return tx.Save(entry)
}

// holdSaleCommission moves a sale's released commission back to pending when the sale is no
// longer approved (a dispute, an admin's hold), so no payout run pays it meanwhile; the engine
// releases it again once the sale is approved. (The sale index's condition is repeated so
// SQLite uses that partial index.)
func holdSaleCommission(tx core.App, conversion string, now time.Time) error {
	_, err := tx.DB().NewQuery(`UPDATE commissions SET status = 'pending', updated = {:now}
		WHERE conversion = {:c} AND status = 'payable' AND payout = '' AND ` + saleIndexWhere).
		Bind(dbx.Params{"c": conversion, "now": store.DBTime(now)}).Execute()
	if err != nil {
		return fmt.Errorf("hold the commission of conversion %s: %w", conversion, err)
	}
	return nil
}
