package scaleout_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
)

// TestSavesDoNotWaitForNATS: while the NATS server is away, a save of an affiliate returns at
// once (the record hook waited up to 5 s for its put before), and the change reaches the
// bucket once the server is back, published by the primary's retry.
func TestSavesDoNotWaitForNATS(t *testing.T) {
	dir := t.TempDir()
	srv, err := scaleout.StartServer("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	app := fx.AppWith(t, fx.Config)
	t.Cleanup(app.Cleanup)
	p := scaleout.Register(app, &cobra.Command{})
	if err := p.Start(context.Background(), scaleout.Options{URLs: url}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)

	srv.Shutdown()
	srv.WaitForShutdown()
	aff, err := app.FindRecordById(collections.Affiliates, fx.B.ID)
	if err != nil {
		t.Fatal(err)
	}
	aff.Set(collections.FieldStatus, collections.AffiliateSuspended)
	start := time.Now()
	if err := app.Save(aff); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a save took %v with the NATS server away", took)
	}

	srv, err = scaleout.StartServer(strings.TrimPrefix(url, "nats://"), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	back := time.Now()
	nc, js, err := scaleout.Connect(url, "test-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, scaleout.CodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if e, err := kv.Get(ctx, edgewire.AffiliateKey(fx.B.ID)); err == nil && strings.Contains(string(e.Value()), `"status":"suspended"`) {
			break
		}
		if time.Since(back) > 20*time.Second {
			t.Fatal("the suspension saved while the NATS server was away is not in the bucket 20 s after its return")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("published %v after the NATS server came back", time.Since(back).Round(time.Millisecond))
}
