package hooks_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// fakeClickStream stands in for hooks/scaleout's view of the redirect nodes' click stream
// (hooks/scaleout tests the real one on JetStream): its clicks are ingested when a sale waits,
// unless it is stuck, when the wait lasts until the sale's deadline.
type fakeClickStream struct {
	app   core.App
	mu    sync.Mutex
	held  []edgewire.Click
	stuck bool
	waits int
}

func (f *fakeClickStream) AwaitIngested(ctx context.Context) error {
	f.mu.Lock()
	f.waits++
	stuck, held := f.stuck, f.held
	if !stuck {
		f.held = nil
	}
	f.mu.Unlock()
	if stuck {
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := hooks.IngestEdgeClicks(ctx, f.app, held)
	return err
}

func (f *fakeClickStream) Ingestion(context.Context) hooks.Ingestion { return hooks.Ingestion{} }

// answer is a click an edge answered for affiliate A's link, held in the stream; its id.
func (f *fakeClickStream) answer(stuck bool) string {
	id := store.NewOrderedID(time.Now())
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stuck = stuck
	f.held = append(f.held, edgewire.Click{ID: id, Link: fx.RowsA.Link, Affiliate: fx.A.ID, Program: fx.ProgramP,
		Visitor: id, NewVisitor: true, IPHash: "ip-" + id, NetworkHash: "net-" + id,
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", Created: time.Now().UnixMilli()})
	return id
}

func (f *fakeClickStream) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stuck = false
}

// TestSaleWaitsForClickNotIngested: through the postback (sale and update forms) and a billing
// provider's webhook, a sale naming a click still in the redirect nodes' stream is credited to
// it once ingested, or answered 503 with Retry-After, storing nothing, while the primary is
// stuck; on a single box (no awaiter) an unknown click id takes the normal path at once.
func TestSaleWaitsForClickNotIngested(t *testing.T) {
	p := newProviderEnv(t, collections.SourcePaddle, paddleFake{})
	codeB := p.affiliateCode(fx.B.ID)
	postback := func(txid, click string, extra ...string) *pbatest.Response {
		q := url.Values{"key": {fx.SecretP}, "txid": {txid}, "amount": {"19.99"}, "currency": {"usd"},
			"click_id": {click}, "affiliate_code": {codeB}}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return pbatest.Request(p.handler, http.MethodGet, "/api/pba/postback?"+q.Encode(), "", "")
	}
	credited := func(res *pbatest.Response, affiliate, click string) {
		t.Helper()
		if res.Code != http.StatusCreated || res.JSON["affiliate"] != affiliate || res.JSON["click"] != click {
			t.Fatalf("want 201 credited to %s (click %q): %d %s", affiliate, click, res.Code, res.Body)
		}
	}
	refused := func(res *pbatest.Response) {
		t.Helper()
		if res.Code != http.StatusServiceUnavailable || res.Header().Get("Retry-After") == "" {
			t.Fatalf("want 503 with Retry-After: %d %v %s", res.Code, res.Header(), res.Body)
		}
	}

	// A single box: the unknown click is not waited for; the code credits the sale.
	credited(postback("gap-single", store.NewOrderedID(time.Now())), fx.B.ID, "")

	stream := &fakeClickStream{app: p.app}
	hooks.SetClickAwaiter(p.app, stream)

	click := stream.answer(false)
	credited(postback("gap-1", click), fx.A.ID, click)

	// The update form's door (a new txid reported refunded): stuck, then retried.
	click = stream.answer(true)
	refused(postback("gap-2", click, "status", "refunded"))
	if n := len(p.sales("gap-2")); n != 0 {
		t.Fatalf("a 503 stored %d sales", n)
	}
	stream.release()
	res := postback("gap-2", click, "status", "refunded")
	credited(res, fx.A.ID, click)
	if res.JSON["status"] != collections.ConversionRefunded {
		t.Fatalf("retried refunded sale: %s", res.Body)
	}

	// A provider's webhook: 503 stores neither the sale nor the event, so the retry records it.
	click = stream.answer(true)
	delivery := paddleFake{}.sale("gap-paddle", "9001", 2500, map[string]string{"pba_click": click, "pba_affiliate": codeB}, "", "", "")
	before := p.counts()
	refused(p.post(delivery))
	if after := p.counts(); after != before {
		t.Fatalf("a 503 changed the rows: %v → %v", before, after)
	}
	stream.release()
	p.deliver(delivery)
	if sale := p.sale("9001", false); sale.GetString(collections.FieldAffiliate) != fx.A.ID || sale.GetString(collections.ConversionClick) != click {
		t.Fatalf("paddle sale after the retry: affiliate %s click %s", sale.GetString(collections.FieldAffiliate), sale.GetString(collections.ConversionClick))
	}
	if stream.waits != 5 {
		t.Errorf("%d waits, want 5 (one per sale whose click was not stored)", stream.waits)
	}
}

// BenchmarkSaleClickLookup: a sale through POST /api/pba/conversions naming a stored click
// costs the same with scale-out on (an awaiter set) as on a single box; naming an unknown click
// it costs a rolled-back attempt and a wait on top (here an awaiter already caught up, so the
// wait is the in-process part only; TestSaleWaitsForClickFromEdge measures JetStream's).
func BenchmarkSaleClickLookup(b *testing.B) {
	stored := func() string { return fx.RowsA.Click }
	unknown := func() string { return store.NewOrderedID(time.Now()) }
	for _, bc := range []struct {
		name     string
		scaleOut bool
		click    func() string
	}{
		{"stored-click/single-box", false, stored}, {"stored-click/scale-out", true, stored},
		{"unknown-click/single-box", false, unknown}, {"unknown-click/scale-out", true, unknown},
	} {
		b.Run(bc.name, func(b *testing.B) {
			app := fx.App(b)
			defer app.Cleanup()
			h := pbatest.Serve(b, app)
			a, err := app.FindRecordById(collections.Affiliates, fx.B.ID)
			if err != nil {
				b.Fatal(err)
			}
			if bc.scaleOut {
				hooks.SetClickAwaiter(app, &fakeClickStream{app: app})
			}
			for i := 0; b.Loop(); i++ {
				body := fmt.Sprintf(`{"external_id":"bench-%d","amount":1999,"currency":"usd","click_id":%q,"affiliate_code":%q}`,
					i, bc.click(), a.GetString(collections.FieldCode))
				from := func(r *http.Request) { r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1000", i>>16&255, i>>8&255, i&255) }
				if res := pbatest.Request(h, http.MethodPost, "/api/pba/conversions", "Bearer "+fx.SecretP, body, from); res.Code != http.StatusCreated {
					b.Fatalf("sale %d: %d %s", i, res.Code, res.Body)
				}
			}
		})
	}
}
