package hooks

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/routine"
	"github.com/pocketbase/pocketbase/tools/subscriptions"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// LiveTopic is the realtime topic of the throttled live counters. PocketBase applies no rule
// to custom topics, so liveHub checks each subscriber's auth itself before sending.
const LiveTopic = "pba/live"

// liveInterval throttles pba/live to at most four messages a second.
const liveInterval = 250 * time.Millisecond

// liveCounters is one affiliate's activity since the previous message.
type liveCounters struct {
	Clicks       int64 `json:"clicks"`
	UniqueClicks int64 `json:"unique_clicks"`
	Conversions  int64 `json:"conversions"`
	Revenue      int64 `json:"revenue"`
	Commission   int64 `json:"commission"`
}

func (c *liveCounters) add(d liveCounters) {
	c.Clicks += d.Clicks
	c.UniqueClicks += d.UniqueClicks
	c.Conversions += d.Conversions
	c.Revenue += d.Revenue
	c.Commission += d.Commission
}

// liveMessage is the body of a pba/live message: per-affiliate deltas, their sums per
// currency (each affiliate's program's: money adds up only within one) and the counts across
// currencies. An affiliate receives a message only when it has deltas of its own, holding only
// those.
type liveMessage struct {
	At         string                   `json:"at"`
	Affiliates map[string]*liveCounters `json:"affiliates"`
	Currencies map[string]*liveCounters `json:"currencies"`
	Totals     liveCounts               `json:"totals"`
}

// liveCounts are the counts of liveCounters, which add up across currencies.
type liveCounts struct {
	Clicks       int64 `json:"clicks"`
	UniqueClicks int64 `json:"unique_clicks"`
	Conversions  int64 `json:"conversions"`
}

// liveHub collects counter deltas from the writers and broadcasts them at most every
// liveInterval, so a burst of thousands of clicks is a few messages, not thousands.
type liveHub struct {
	app     core.App
	mu      sync.Mutex
	pending map[string]*liveCounters
	loop    flushLoop
}

func newLiveHub(app core.App) *liveHub {
	return &liveHub{app: app, pending: map[string]*liveCounters{}}
}

// add records d for affiliateID; it never blocks on subscribers.
func (h *liveHub) add(affiliateID string, d liveCounters) {
	h.mu.Lock()
	c := h.pending[affiliateID]
	if c == nil {
		c = &liveCounters{}
		h.pending[affiliateID] = c
	}
	c.add(d)
	h.mu.Unlock()
}

func (h *liveHub) start() { h.loop.start(liveInterval, h.flush) }

func (h *liveHub) stop() { h.loop.stop() }

// flush sends what accumulated since the last call to every entitled subscriber.
func (h *liveHub) flush() {
	h.mu.Lock()
	if len(h.pending) == 0 {
		h.mu.Unlock()
		return
	}
	deltas := h.pending
	h.pending = map[string]*liveCounters{}
	h.mu.Unlock()
	// Changes that cancelled out (a sale recorded and rejected in one interval) are no news.
	for id, d := range deltas {
		if *d == (liveCounters{}) {
			delete(deltas, id)
		}
	}
	if len(deltas) == 0 {
		return
	}

	at := time.Now().UTC().Format(time.RFC3339Nano)
	var currencyOf map[string]string // read once, for the first subscriber
	var everything []byte
	for _, client := range h.app.SubscriptionsBroker().Clients() {
		if !client.HasSubscription(LiveTopic) {
			continue
		}
		auth, _ := client.Get(apis.RealtimeClientAuthKey).(*core.Record)
		if auth == nil || (!auth.IsSuperuser() && auth.Collection().Name != collections.Affiliates) {
			continue // guests (and other collections) get nothing
		}
		if currencyOf == nil {
			currencyOf = h.currencies(deltas)
		}
		var payload []byte
		if auth.IsSuperuser() {
			if everything == nil {
				everything = encodeLive(at, deltas, currencyOf)
			}
			payload = everything
		} else {
			own, ok := deltas[auth.Id]
			if !ok {
				continue
			}
			payload = encodeLive(at, map[string]*liveCounters{auth.Id: own}, currencyOf)
		}
		c, msg := client, subscriptions.Message{Name: LiveTopic, Data: payload}
		routine.FireAndForget(func() { c.Send(msg) })
	}
}

// currencies maps the affiliates of deltas to their program's currency, in one query. An
// affiliate it cannot place (deleted meanwhile, or the query failed: logged) counts in the
// totals but in no currency.
func (h *liveHub) currencies(deltas map[string]*liveCounters) map[string]string {
	ids := make([]any, 0, len(deltas))
	for id := range deltas {
		ids = append(ids, id)
	}
	var rows []struct {
		ID       string `db:"id"`
		Currency string `db:"currency"`
	}
	err := h.app.DB().Select("a.id AS id", "p.currency AS currency").From(collections.Affiliates+" a").
		InnerJoin(collections.Programs+" p", dbx.NewExp("p.id = a.program")).
		Where(dbx.In("a.id", ids...)).All(&rows)
	out := make(map[string]string, len(rows))
	if err != nil {
		h.app.Logger().Error("pba/live: currencies of the affiliates", "error", err)
		return out
	}
	for _, r := range rows {
		out[r.ID] = r.Currency
	}
	return out
}

func encodeLive(at string, deltas map[string]*liveCounters, currencyOf map[string]string) []byte {
	m := liveMessage{At: at, Affiliates: deltas, Currencies: map[string]*liveCounters{}}
	for id, d := range deltas {
		m.Totals.Clicks += d.Clicks
		m.Totals.UniqueClicks += d.UniqueClicks
		m.Totals.Conversions += d.Conversions
		c, ok := currencyOf[id]
		if !ok {
			continue
		}
		if m.Currencies[c] == nil {
			m.Currencies[c] = &liveCounters{}
		}
		m.Currencies[c].add(*d)
	}
	b, _ := json.Marshal(m) // plain structs of ints and strings: cannot fail
	return b
}
