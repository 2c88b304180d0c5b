package scaleout

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// doorPublishEvery is how often a node publishes its door counts: the primary's door counter
// writes its own every second (hooks/redirect_doors.go), and none while nobody walks through.
const doorPublishEvery = time.Second

// doorCounter aggregates a node's door visits (inactive codes, unknown codes sent to the
// fallback URL) in memory, as the primary's counter does, and publishes them to the click
// stream every doorPublishEvery. A batch, once cut, keeps its id and content until JetStream
// acknowledged it, so a retry after a lost acknowledgement is de-duplicated (and the primary
// counts each id once, hooks.IngestEdgeDoors); visits meanwhile wait for the next batch.
type doorCounter struct {
	js       jetstream.JetStream
	ids      *store.OrderedIDs
	failures func() // counts a failed publish (metrics)

	mu      sync.Mutex
	pending map[edgewire.DoorCount]int64 // N zero in the key
	cut     *edgewire.Doors              // published, not yet acknowledged
	publish sync.Mutex                   // one publish at a time
}

func (d *doorCounter) add(reason, program, affiliate, link string) {
	k := edgewire.DoorCount{Day: store.StatsDay(time.Now()), Reason: reason, Program: program, Affiliate: affiliate, Link: link}
	d.mu.Lock()
	if d.pending == nil {
		d.pending = map[edgewire.DoorCount]int64{}
	}
	d.pending[k]++
	d.mu.Unlock()
}

// flush publishes the batch cut before (if its publish failed) or cuts one of what is
// pending; nothing to count publishes nothing.
func (d *doorCounter) flush(ctx context.Context) error {
	d.publish.Lock()
	defer d.publish.Unlock()
	d.mu.Lock()
	if d.cut == nil && len(d.pending) > 0 {
		b := &edgewire.Doors{ID: d.ids.Next(time.Now())}
		for k, n := range d.pending {
			k.N = n
			b.Counts = append(b.Counts, k)
		}
		d.cut, d.pending = b, nil
	}
	b := d.cut
	d.mu.Unlock()
	if b == nil {
		return nil
	}
	body, err := edgewire.EncodeDoors(*b)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := d.js.Publish(ctx, DoorSubject, body, jetstream.WithMsgID(b.ID)); err != nil {
		if d.failures != nil {
			d.failures()
		}
		return fmt.Errorf("publish door counts %s: %w", b.ID, err)
	}
	d.mu.Lock()
	d.cut = nil
	d.mu.Unlock()
	return nil
}

// CountDoors publishes the node's door counts every second until ctx ends; FlushDoors
// publishes the rest at shutdown.
func (n *Edge) CountDoors(ctx context.Context) {
	runEvery(ctx, doorPublishEvery, func() {
		if err := n.doors.flush(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("edge: door counts not published, retrying", "error", err)
		}
	})
}

// FlushDoors publishes the door counts not yet published (a batch whose publish failed, then
// what is pending); for shutdown, after the last request, and for tests.
func (n *Edge) FlushDoors(ctx context.Context) error {
	for range 2 { // a batch left from a failed publish, then the rest
		if err := n.doors.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}
