package scaleout_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

const gapStripeSecret = "whsec_gap"

// newGapCluster is a cluster whose primary also takes Stripe's webhook.
func newGapCluster(t *testing.T) *cluster {
	t.Helper()
	cfg := fx.Config
	cfg.StripeWebhookSecret = gapStripeSecret
	return newClusterWith(t, cfg, scaleout.Options{Embedded: "127.0.0.1:0"})
}

// pauseIngestion holds the primary's consumer back (JetStream's consumer pause: it delivers
// nothing until resumed), as a primary behind its edges is.
func (c *cluster) pauseIngestion(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for { // the ingestion loop creates the consumer after Start
		_, err := c.js.PauseConsumer(ctx, scaleout.ClickStream, scaleout.ConsumerName, time.Now().Add(time.Hour))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause the consumer: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *cluster) resumeIngestion(t *testing.T) {
	t.Helper()
	if _, err := c.js.ResumeConsumer(context.Background(), scaleout.ClickStream, scaleout.ConsumerName); err != nil {
		t.Fatal(err)
	}
}

// click answers one visit of affiliate A's link on the edge and returns its click id.
func (c *cluster) click(t *testing.T) string {
	t.Helper()
	link, err := c.app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	res := c.get("/r/" + link.GetString(collections.FieldCode))
	ck := cookie(res, hooks.ClickCookie)
	if res.StatusCode != http.StatusFound || ck == nil {
		t.Fatalf("edge answered %d, cookies %v", res.StatusCode, res.Header.Values("Set-Cookie"))
	}
	return ck.Value
}

// sale reports a sale through the conversions API with program P's secret, naming click and
// affiliate B's code: only the click credits A.
func (c *cluster) sale(t *testing.T, externalID, click string) *pbatest.Response {
	t.Helper()
	b, err := c.app.FindRecordById(collections.Affiliates, fx.B.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"external_id": externalID, "amount": 4999, "currency": "usd",
		"click_id": click, "affiliate_code": b.GetString(collections.FieldCode)})
	return pbatest.Request(c.serve, http.MethodPost, "/api/pba/conversions", "Bearer "+fx.SecretP, string(body))
}

// metrics scrapes the primary's /api/pba/metrics into "name{labels}" → value.
func (c *cluster) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	res := pbatest.Request(c.serve, http.MethodGet, "/api/pba/metrics", fx.Superuser.Token, "")
	if res.Code != http.StatusOK {
		t.Fatalf("metrics: %d %s", res.Code, res.Body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(res.Body.String()))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

// waitMetric polls the metrics until name reaches want.
func (c *cluster) waitMetric(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.metrics(t)[name]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *cluster) conversions(t *testing.T, source, externalID string) []*core.Record {
	t.Helper()
	records, err := c.app.FindAllRecords(collections.Conversions, dbx.HashExp{"source": source, "external_id": externalID})
	if err != nil {
		t.Fatal(err)
	}
	return records
}

// TestSaleWaitsForClickFromEdge: a sale naming a click an edge answered while the primary's
// consumer is held back waits and is credited to that click (not to the affiliate code it
// also names) once the consumer resumes; with the consumer stuck past the deadline it is 503
// with Retry-After, stores nothing, and its retry is credited to the click; a click id that
// never existed takes the normal path (the code) as soon as the primary is known to be caught
// up, and an id no edge could have minted (malformed, or older than the stream's retention)
// never waits. The lag is in the primary's metrics.
func TestSaleWaitsForClickFromEdge(t *testing.T) {
	c := newGapCluster(t)
	c.pauseIngestion(t)
	clickID := c.click(t)

	// A malformed click id does not wait even while the primary is behind.
	if res := c.sale(t, "gap-malformed", "not-a-click"); res.Code != http.StatusCreated || res.JSON["affiliate"] != fx.B.ID {
		t.Fatalf("malformed click id: %d %s", res.Code, res.Body)
	}
	// Nor does an id minted longer ago than the stream keeps clicks: no edge's click it could be.
	start := time.Now()
	if res := c.sale(t, "gap-expired", store.NewOrderedID(time.Now().Add(-hooks.ClickStreamRetention-time.Hour))); res.Code != http.StatusCreated || res.JSON["affiliate"] != fx.B.ID {
		t.Fatalf("click id past the retention: %d %s", res.Code, res.Body)
	} else if waited := time.Since(start); waited > time.Second {
		t.Fatalf("a click id past the stream's retention waited %v", waited)
	}
	m := c.metrics(t)
	if m["pba_click_stream_lag_messages"] != 1 || m["pba_click_stream_lag_seconds"] <= 0 {
		t.Fatalf("lag while paused: %v messages, %v s", m["pba_click_stream_lag_messages"], m["pba_click_stream_lag_seconds"])
	}

	// Waits, then credits the click once the consumer resumes.
	done := make(chan *pbatest.Response, 1)
	go func() { done <- c.sale(t, "gap-waits", clickID) }()
	c.waitMetric(t, "pba_attribution_waiting", 1)
	resumed := time.Now()
	c.resumeIngestion(t)
	res := <-done
	t.Logf("the waiting sale was credited %v after the consumer resumed", time.Since(resumed))
	if res.Code != http.StatusCreated || res.JSON["affiliate"] != fx.A.ID || res.JSON["click"] != clickID {
		t.Fatalf("sale after the wait: %d %s", res.Code, res.Body)
	}

	// Stuck past the deadline: 503, nothing stored; the retry is credited to the click.
	c.pauseIngestion(t)
	clickID = c.click(t)
	start = time.Now()
	res = c.sale(t, "gap-stuck", clickID)
	waited := time.Since(start)
	data, _ := res.JSON["data"].(map[string]any)
	field, _ := data["click_id"].(map[string]any)
	if res.Code != http.StatusServiceUnavailable || res.Header().Get("Retry-After") != "2" || field["code"] != "not_ingested" {
		t.Fatalf("stuck consumer: %d %v %s", res.Code, res.Header(), res.Body)
	}
	if n := len(c.conversions(t, collections.SourceAPI, "gap-stuck")); n != 0 {
		t.Fatalf("a 503 stored %d conversions", n)
	}
	t.Logf("a sale waited %v for a stuck consumer before 503", waited)
	c.resumeIngestion(t)
	c.waitMetric(t, "pba_click_stream_lag_messages", 0)
	if res := c.sale(t, "gap-stuck", clickID); res.Code != http.StatusCreated || res.JSON["affiliate"] != fx.A.ID || res.JSON["click"] != clickID {
		t.Fatalf("retry: %d %s", res.Code, res.Body)
	}

	// A click id no edge minted: the normal path once the primary is caught up.
	start = time.Now()
	res = c.sale(t, "gap-unknown", store.NewOrderedID(time.Now()))
	t.Logf("a sale naming a click that never existed waited %v (consumer caught up)", time.Since(start))
	if res.Code != http.StatusCreated || res.JSON["affiliate"] != fx.B.ID || res.JSON["click"] != "" {
		t.Fatalf("unknown click: %d %s", res.Code, res.Body)
	}

	m = c.metrics(t)
	for name, want := range map[string]float64{
		`pba_attribution_waits_total{result="found"}`: 1, `pba_attribution_waits_total{result="timeout"}`: 1,
		`pba_attribution_waits_total{result="absent"}`: 1, "pba_attribution_waiting": 0,
		"pba_click_stream_lag_messages": 0, "pba_click_stream_lag_seconds": 0,
		`pba_sales_total{result="created",source="api"}`: 5, "pba_click_stream_ingested_clicks_total": 2,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
	if m[`pba_click_stream_batches_total{result="committed"}`] < 1 {
		t.Errorf("no committed batch counted: %v", m)
	}
}

// TestStripeSaleWaitsForClickFromEdge: a Stripe checkout naming a click the primary has not
// ingested answers 503 with Retry-After past the deadline and stores neither the sale nor the
// event, so Stripe's redelivery is processed, and credited to the click, once it is ingested.
func TestStripeSaleWaitsForClickFromEdge(t *testing.T) {
	c := newGapCluster(t)
	c.pauseIngestion(t)
	clickID := c.click(t)
	body, _ := json.Marshal(map[string]any{
		"id": "evt_gap", "object": "event", "api_version": "2023-10-16", "created": time.Now().Unix(),
		"type": "checkout.session.completed", "data": map[string]any{"object": map[string]any{
			"id": "cs_gap", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
			"status": "complete", "amount_total": 2500, "currency": "usd", "client_reference_id": clickID,
			"payment_intent": "pi_gap", "customer": "cus_gap"}},
	})
	deliver := func() *pbatest.Response {
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: gapStripeSecret, Timestamp: time.Now()})
		return pbatest.Request(c.serve, http.MethodPost, "/api/pba/stripe/webhook", "", string(signed.Payload),
			pbatest.Header("Stripe-Signature", signed.Header))
	}

	if res := deliver(); res.Code != http.StatusServiceUnavailable || res.Header().Get("Retry-After") == "" {
		t.Fatalf("stuck consumer: %d %v %s", res.Code, res.Header(), res.Body)
	}
	if n := len(c.conversions(t, collections.SourceStripe, "pi_gap")); n != 0 {
		t.Fatalf("a 503 stored %d conversions", n)
	}
	if _, err := c.app.FindFirstRecordByData(collections.StripeEvents, "event_id", "evt_gap"); err == nil {
		t.Fatal("a 503 stored the event: Stripe's retry would be a duplicate")
	}

	c.resumeIngestion(t)
	res := deliver()
	if res.Code != http.StatusOK || !strings.HasPrefix(res.JSON["outcome"].(string), "recorded conversion") {
		t.Fatalf("redelivery: %d %s", res.Code, res.Body)
	}
	sales := c.conversions(t, collections.SourceStripe, "pi_gap")
	if len(sales) != 1 || sales[0].GetString(collections.FieldAffiliate) != fx.A.ID || sales[0].GetString(collections.ConversionClick) != clickID {
		t.Fatalf("stored %v", sales)
	}
}
