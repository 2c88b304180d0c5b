package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// webhooksSubtest registers an endpoint in the back office's Webhooks view, sends it a test
// event and re-sends it from the delivery log: the receiver on loopback gets the same event
// twice, signed per Standard Webhooks with the secret the view shows.
func webhooksSubtest(t *testing.T, b *backOffice) {
	t.Run("webhooks", func(t *testing.T) {
		p := b.p
		var mu sync.Mutex
		var got []http.Header
		var bodies [][]byte
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			got, bodies = append(got, r.Header.Clone()), append(bodies, body)
			mu.Unlock()
			_, _ = io.WriteString(w, "thanks")
		}))
		defer recv.Close()
		received := func(n int) {
			t.Helper()
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				mu.Lock()
				have := len(got)
				mu.Unlock()
				if have >= n {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the receiver got %d requests, want %d", have, n)
				}
			}
		}

		b.open(t, "#/webhooks", "Webhooks")
		p.waitFor("the endpoints", `document.getElementById("webhooks-body").dataset.loaded === "true"`)
		p.click("#new-webhook")
		p.waitFor("the form", `document.getElementById("webhook-form") !== null && document.querySelectorAll("#wh-events input").length === 14`)
		p.setValue("#wh-url", "ftp://hooks.example.com/in") // refused by the server, next to the field
		p.click("#webhook-form button[type=submit]")
		p.waitFor("the url error", `document.getElementById("wh-url-err").textContent.includes("http")`)
		waitDB(t, p, b.db, "no endpoint after the refused save", 0, `SELECT COUNT(*) FROM webhooks`)
		p.setValue("#wh-url", recv.URL+"/in")
		p.setValue("#wh-desc", "CRM sync")
		p.click(`#wh-events input[value="sale.created"]`)
		p.click("#webhook-form button[type=submit]")
		waitDB(t, p, b.db, "the endpoint", 1, `SELECT COUNT(*) FROM webhooks WHERE url = ? AND events = '["sale.created"]' AND active AND secret LIKE 'whsec_%'`, recv.URL+"/in")
		var secret string
		if err := b.db.QueryRow(`SELECT secret FROM webhooks`).Scan(&secret); err != nil {
			t.Fatal(err)
		}
		p.waitFor("the masked secret", `document.getElementById("wh-secret") && document.getElementById("wh-secret").textContent.startsWith("whsec_•")`)

		p.click("#webhooks-body .wh-test")
		received(1)
		p.click("#wh-refresh")
		p.waitFor("the test event in the log", `[...document.querySelectorAll("#wh-deliveries tr")].some((r) => r.textContent.includes("webhook.test") && r.textContent.includes("200"))`)
		b.checkAxe(t, "webhooks")
		p.screenshots("backoffice-webhooks")
		p.click("#wh-deliveries .wh-resend")
		received(2)

		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range got {
			if err := wh.Verify(bodies[i], got[i]); err != nil {
				t.Errorf("request %d does not verify with the secret the view shows: %v", i, err)
			}
		}
		if got[0].Get("webhook-id") != got[1].Get("webhook-id") || string(bodies[0]) != string(bodies[1]) {
			t.Errorf("the re-send differs: %s %s / %s %s", got[0].Get("webhook-id"), bodies[0], got[1].Get("webhook-id"), bodies[1])
		}
	})
}
