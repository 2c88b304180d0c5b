package hooks

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Limits of the public messaging routes.
const (
	// svixTolerance is how far a webhook's timestamp may be from now (replay protection).
	svixTolerance = 5 * time.Minute
	// resendWebhookMaxBody bounds the webhook body read into memory.
	resendWebhookMaxBody = 256 << 10
)

// bindRoutes adds GET/POST /api/pba/unsubscribe and POST /api/pba/resend/webhook.
func (e *messagingEngine) bindRoutes(se *core.ServeEvent) {
	se.Router.GET("/api/pba/unsubscribe", e.handleUnsubscribePage)
	se.Router.POST("/api/pba/unsubscribe", e.handleUnsubscribe).Bind(apis.BodyLimit(4 << 10))
	se.Router.POST("/api/pba/resend/webhook", e.handleResendWebhook).Bind(apis.BodyLimit(resendWebhookMaxBody))
}

// unsubscribeKey is the HMAC key of unsubscribe tokens, kept in the data dir (made on first
// use) so tokens in sent mail stay valid across restarts and never live in a collection.
func (e *messagingEngine) unsubscribeKey() ([]byte, error) {
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	if e.key != nil {
		return e.key, nil
	}
	path := filepath.Join(e.app.DataDir(), messagingSecretFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) >= 32:
		e.key = b
		return b, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read mail secret: %w", err)
	}
	secret := []byte(newMessagingSecret())
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		return nil, fmt.Errorf("store mail secret: %w", err)
	}
	e.key = secret
	return secret, nil
}

// unsubscribeToken is "<affiliate id>.<base64url HMAC-SHA256(key, "unsubscribe:" + id)>".
func (e *messagingEngine) unsubscribeToken(affiliateID string) (string, error) {
	key, err := e.unsubscribeKey()
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("unsubscribe:" + affiliateID))
	return affiliateID + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// unsubscribeURL is the one-click link of marketing mail.
func (e *messagingEngine) unsubscribeURL(affiliateID string) (string, error) {
	token, err := e.unsubscribeToken(affiliateID)
	if err != nil {
		return "", err
	}
	base := strings.TrimRight(e.cfg.PublicURL, "/")
	if base == "" {
		base = strings.TrimRight(e.app.Settings().Meta.AppURL, "/")
	}
	return base + "/api/pba/unsubscribe?token=" + url.QueryEscape(token), nil
}

// affiliateFromToken checks a token and returns its affiliate id.
func (e *messagingEngine) affiliateFromToken(token string) (string, bool) {
	id, _, ok := strings.Cut(token, ".")
	if !ok || id == "" {
		return "", false
	}
	want, err := e.unsubscribeToken(id)
	if err != nil {
		return "", false
	}
	return id, hmac.Equal([]byte(want), []byte(token))
}

// unsubscribePage is the small page both methods answer with; the token is escaped by
// html/template in the form action.
const unsubscribePage = `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Unsubscribe</title></head>` +
	`<body style="font-family:system-ui,sans-serif;max-width:480px;margin:48px auto;padding:0 16px">` +
	`{{if .Done}}<h1>You are unsubscribed</h1><p>You will no longer receive newsletters from our affiliate program. Payout and account emails still reach you.</p>` +
	`{{else}}<h1>Unsubscribe?</h1><p>Stop newsletters from our affiliate program. Payout and account emails still reach you.</p>` +
	`<form method="post" action="/api/pba/unsubscribe?token={{.Token}}"><button type="submit">Unsubscribe</button></form>{{end}}</body></html>`

// renderUnsubscribePage writes the page.
func renderUnsubscribePage(e *core.RequestEvent, token string, done bool) error {
	t, err := template.New("unsubscribe").Parse(unsubscribePage)
	if err != nil {
		return e.InternalServerError("", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, map[string]any{"Token": token, "Done": done}); err != nil {
		return e.InternalServerError("", err)
	}
	return e.HTML(http.StatusOK, buf.String())
}

// handleUnsubscribePage is GET /api/pba/unsubscribe: a confirmation page only, because mail
// scanners follow links; the unsubscribe itself is the POST.
func (e *messagingEngine) handleUnsubscribePage(re *core.RequestEvent) error {
	token := re.Request.URL.Query().Get("token")
	if _, ok := e.affiliateFromToken(token); !ok {
		return re.BadRequestError("Invalid or expired unsubscribe link.", nil)
	}
	return renderUnsubscribePage(re, token, false)
}

// handleUnsubscribe is POST /api/pba/unsubscribe (RFC 8058 one-click, or the page's button):
// preferred_channel becomes none and the address is suppressed for marketing mail.
func (e *messagingEngine) handleUnsubscribe(re *core.RequestEvent) error {
	token := re.Request.URL.Query().Get("token")
	id, ok := e.affiliateFromToken(token)
	if !ok {
		return re.BadRequestError("Invalid or expired unsubscribe link.", nil)
	}
	a, err := e.app.FindRecordById(collections.Affiliates, id)
	if errors.Is(err, sql.ErrNoRows) {
		return renderUnsubscribePage(re, token, true) // nothing left to send to
	} else if err != nil {
		return re.InternalServerError("", err)
	}
	err = e.app.RunInTransaction(func(tx core.App) error {
		// Raw update: only this column changes, and no lifecycle hook needs to see it.
		if _, err := tx.DB().NewQuery("UPDATE {{affiliates}} SET [[preferred_channel]] = {:none} WHERE [[id]] = {:id}").
			Bind(dbx.Params{"none": collections.ChannelNone, "id": id}).Execute(); err != nil {
			return fmt.Errorf("set preferred_channel of %s: %w", id, err)
		}
		return addSuppression(tx, a.Email(), collections.SuppressionUnsubscribe, e.now())
	})
	if err != nil {
		return re.InternalServerError("", err)
	}
	return renderUnsubscribePage(re, token, true)
}

// addSuppression records an address nothing marketing may be sent to; the first reason wins.
func addSuppression(app core.App, email, reason string, now time.Time) error {
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" {
		return nil
	}
	_, err := app.DB().NewQuery(
		"INSERT INTO {{suppressions}} ([[id]], [[email]], [[reason]], [[created]]) VALUES ({:id}, {:email}, {:reason}, {:now}) " +
			"ON CONFLICT ([[email]]) DO NOTHING").
		Bind(dbx.Params{"id": core.GenerateDefaultRandomId(), "email": email, "reason": reason, "now": webhookDBTime(now)}).Execute()
	if err != nil {
		return fmt.Errorf("suppress %s (%s): %w", email, reason, err)
	}
	return nil
}

// verifySvix checks a Svix-signed webhook (Resend's): HMAC-SHA256 with the base64 secret
// after "whsec_" over "{id}.{timestamp}.{body}", any "v1,<base64>" entry of svix-signature
// matching, timestamp within svixTolerance of now.
func verifySvix(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("svix-id"), h.Get("svix-timestamp"), h.Get("svix-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing svix headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("bad svix-timestamp: %w", err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > svixTolerance || d < -svixTolerance {
		return errors.New("svix-timestamp outside the tolerance")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("bad webhook secret: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// resendEvent is the part of a Resend webhook event the delivery status needs.
type resendEvent struct {
	Type string `json:"type"`
	Data struct {
		EmailID string `json:"email_id"`
		Bounce  struct {
			Type string `json:"type"`
		} `json:"bounce"`
	} `json:"data"`
}

// resendEventStatus maps an event type to a delivery status and the statuses it may replace
// (a late "delayed" must not undo "delivered").
func resendEventStatus(typ string) (string, []string, bool) {
	switch typ {
	case "email.delivered":
		return collections.DeliveryDelivered, []string{collections.DeliveryQueued, collections.DeliverySent, collections.DeliveryDelayed}, true
	case "email.delivery_delayed":
		return collections.DeliveryDelayed, []string{collections.DeliveryQueued, collections.DeliverySent}, true
	case "email.bounced":
		return collections.DeliveryBounced, []string{collections.DeliveryQueued, collections.DeliverySent, collections.DeliveryDelayed, collections.DeliveryDelivered}, true
	case "email.complained":
		return collections.DeliveryComplained, []string{collections.DeliveryQueued, collections.DeliverySent, collections.DeliveryDelayed, collections.DeliveryDelivered}, true
	case "email.failed":
		return collections.DeliveryFailed, []string{collections.DeliveryQueued, collections.DeliverySent, collections.DeliveryDelayed}, true
	}
	return "", nil, false
}

// handleResendWebhook is POST /api/pba/resend/webhook: verified on the raw body, then the
// delivery with the event's provider id gets the new status; a hard bounce or a complaint
// suppresses the address.
func (e *messagingEngine) handleResendWebhook(re *core.RequestEvent) error {
	if e.cfg.ResendWebhookSecret == "" {
		return re.Error(http.StatusServiceUnavailable, "Resend webhook secret not configured.", nil)
	}
	body, err := io.ReadAll(re.Request.Body)
	if err != nil {
		return re.BadRequestError("Could not read the body.", err)
	}
	if err := verifySvix(e.cfg.ResendWebhookSecret, re.Request.Header, body, e.now()); err != nil {
		return re.BadRequestError("Invalid signature.", err)
	}
	var ev resendEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return re.BadRequestError("Invalid JSON.", err)
	}
	status, from, ok := resendEventStatus(ev.Type)
	if !ok || ev.Data.EmailID == "" {
		return re.JSON(http.StatusOK, map[string]any{"ignored": ev.Type})
	}
	var d deliveryRow
	err = e.app.DB().Select(core.FieldNameId, collections.DeliveryMessage, collections.DeliveryEmail, collections.FieldStatus).From(collections.Deliveries).
		Where(dbx.HashExp{collections.DeliveryProviderID: ev.Data.EmailID}).Limit(1).One(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return re.JSON(http.StatusOK, map[string]any{"ignored": "unknown email"})
	} else if err != nil {
		return re.InternalServerError("", err)
	}
	err = e.app.RunInTransaction(func(tx core.App) error {
		_, err := tx.DB().Update(collections.Deliveries, dbx.Params{collections.FieldStatus: status, collections.FieldUpdated: webhookDBTime(e.now())},
			dbx.And(dbx.HashExp{core.FieldNameId: d.ID}, dbx.In(collections.FieldStatus, toAny(from)...))).Execute()
		if err != nil {
			return fmt.Errorf("update delivery %s: %w", d.ID, err)
		}
		switch {
		case status == collections.DeliveryComplained:
			return addSuppression(tx, d.Email, collections.SuppressionComplaint, e.now())
		case status == collections.DeliveryBounced && !strings.EqualFold(ev.Data.Bounce.Type, "transient"):
			return addSuppression(tx, d.Email, collections.SuppressionBounce, e.now())
		}
		return nil
	})
	if err != nil {
		return re.InternalServerError("", err)
	}
	if d.Message != "" {
		if err := refreshMessageCounts(e.app, d.Message, e.now(), false); err != nil {
			e.app.Logger().Error("refresh message counts", "message", d.Message, "error", err)
		}
	}
	return re.JSON(http.StatusOK, map[string]any{"status": status})
}
