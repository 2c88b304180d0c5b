package hooks

import (
	"errors"
	"testing"

	"github.com/pocketbase/pocketbase/core"
	dto "github.com/prometheus/client_model/go"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestSaleCountedWhenItsWebhookTransactionEnds: a sale recorded inside a webhook event's
// transaction (withTx) is counted in pba_sales_total{result="created"} only if that transaction
// commits; rolled back (the event fails and the provider sends it again), it counts as an
// error, and the redelivery that commits counts as created, once.
func TestSaleCountedWhenItsWebhookTransactionEnds(t *testing.T) {
	app := pbatest.TempApp(t)
	createTestAffiliate(t, app, "Ada", "ada-1", collections.AffiliateApproved, "ada@example.com", nil)
	svc := newConversionService(app, nil)
	m := metricsOf(app)
	count := func(result string) float64 {
		var pm dto.Metric
		if err := m.sales.WithLabelValues(collections.SourceStripe, result).Write(&pm); err != nil {
			t.Fatal(err)
		}
		return pm.GetCounter().GetValue()
	}
	in := conversionInput{Source: collections.SourceStripe, ExternalID: "pi_rolled_back", AffiliateCode: "ada-1",
		Amount: 1000, Currency: "usd", Signed: true}
	deliver := func(fail error) error {
		return app.RunInTransaction(func(tx core.App) error {
			if _, created, err := svc.withTx(tx).record(in); err != nil || !created {
				t.Fatalf("record: created %v, %v", created, err)
			}
			if n := count(saleCreated); n != 0 {
				t.Fatalf("counted %v created before the event's transaction ended", n)
			}
			return fail
		})
	}
	boom := errors.New("the event's own write failed")
	if err := deliver(boom); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n, _ := app.CountRecords(collections.Conversions); n != 0 || count(saleCreated) != 0 || count(saleError) != 1 {
		t.Fatalf("rolled back: %d conversions, created %v, error %v", n, count(saleCreated), count(saleError))
	}
	if err := deliver(nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := app.CountRecords(collections.Conversions); n != 1 || count(saleCreated) != 1 || count(saleError) != 1 {
		t.Fatalf("committed: %d conversions, created %v, error %v", n, count(saleCreated), count(saleError))
	}
}
