package scaleout

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
)

// ConsumerName is the primary's durable consumer of the click stream.
const ConsumerName = "pba-primary"

// Ingestion sizing: a fetch takes what is waiting up to ingestBatch, or waits ingestWait for
// the first click; an unacknowledged click comes back after ackWait.
const (
	ingestBatch = 500
	ingestWait  = time.Second
	ackWait     = 30 * time.Second
)

// ingest consumes the click stream into the database until ctx ends: each fetched batch is
// handed to hooks.IngestEdgeClicks (ids already stored are skipped) and acknowledged only after
// it committed, so a crash between the two redelivers a batch that then stores nothing twice.
func (p *Primary) ingest(ctx context.Context, js jetstream.JetStream) {
	log := p.app.Logger()
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		if cons == nil {
			c, err := js.CreateOrUpdateConsumer(ctx, ClickStream, jetstream.ConsumerConfig{
				Durable: ConsumerName, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
				MaxAckPending: 4 * ingestBatch, DeliverPolicy: jetstream.DeliverAllPolicy,
			})
			if err != nil {
				log.Error("scale-out: click consumer", "error", err)
				sleep(ctx, time.Second)
				continue
			}
			cons = c
		}
		batch, err := fetchClicks(cons)
		if err != nil {
			if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrConsumerDeleted) && ctx.Err() == nil {
				log.Error("scale-out: fetch clicks", "error", err)
				sleep(ctx, time.Second)
			}
			// Whatever failed, look the consumer up again (CreateOrUpdateConsumer changes nothing
			// when it exists): a consumer deleted under a pending fetch does not always answer
			// "not found", and asking the old handle again would wait forever.
			cons = nil
			continue
		}
		var msgs []jetstream.Msg
		var clicks []edgewire.Click
		var doors []edgewire.Doors
		for m := range batch.Messages() {
			if m.Subject() == DoorSubject {
				d, err := edgewire.DecodeDoors(m.Data())
				if err != nil {
					log.Error("scale-out: unreadable door counts dropped", "error", err)
					_ = m.Term()
					continue
				}
				msgs, doors = append(msgs, m), append(doors, d)
				continue
			}
			c, err := edgewire.DecodeClick(m.Data())
			if err != nil {
				log.Error("scale-out: unreadable click dropped", "error", err)
				_ = m.Term()
				continue
			}
			msgs, clicks = append(msgs, m), append(clicks, c)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				cons = nil
			}
		}
		if len(msgs) == 0 {
			continue
		}
		stored, err := hooks.IngestEdgeClicks(ctx, p.app, clicks)
		if err == nil {
			_, err = hooks.IngestEdgeDoors(ctx, p.app, doors)
		}
		if err != nil {
			p.clicks.batchDone(0, err)
			log.Error("scale-out: ingest clicks", "clicks", len(clicks), "door batches", len(doors), "error", err)
			for _, m := range msgs {
				_ = m.NakWithDelay(time.Second)
			}
			continue
		}
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				log.Warn("scale-out: ack click (it will be redelivered and skipped)", "error", err)
			}
		}
		p.clicks.batchDone(stored, nil)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
