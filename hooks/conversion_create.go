package hooks

import (
	"errors"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// registerDashboardSales keeps a sale a superuser creates through the records API (the
// dashboard's "New record") in step like a sale the conversion service records: its
// stats_daily row, its webhook events and pba/live. Without it such a sale was
// commissioned by the engine but never counted, and the rollups drifted from the facts.
//
// Only the records API's create request is wrapped: the conversion service counts its own
// inserts. The save runs in this transaction (PocketBase writes the response once it commits),
// so the sale and its effects commit together.
func registerDashboardSales(app core.App, live *liveHub) {
	app.OnRecordCreateRequest(collections.Conversions).BindFunc(func(e *core.RecordRequestEvent) error {
		outer := e.App
		var share conversionShare
		err := outer.RunInTransaction(func(tx core.App) error {
			e.App = tx
			defer func() { e.App = outer }()
			if err := e.Next(); err != nil {
				return err
			}
			r := e.Record
			share = shareOf(r.GetString(collections.FieldStatus), r.GetString(collections.FieldAffiliate),
				r.GetString(collections.FieldProgram), r.GetString(collections.FieldLink),
				r.GetDateTime(collections.ConversionOccurredAt).Time(), int64(r.GetInt(collections.FieldAmount)), 0)
			return errors.Join(
				store.AddStats(tx, map[store.StatsKey]store.StatsDelta{share.key: {Conversions: share.conversions, Revenue: share.revenue}}),
				saleCreatedEvents(tx, r))
		})
		if err == nil && live != nil && share.conversions != 0 {
			live.add(share.key.Affiliate, liveCounters{Conversions: share.conversions, Revenue: share.revenue})
		}
		return err
	})
}
