package hooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Limits of the Resend webhook.
const (
	// svixTolerance is how far a webhook's timestamp may be from now (replay protection).
	svixTolerance = 5 * time.Minute
	// resendWebhookMaxBody bounds the webhook body read into memory.
	resendWebhookMaxBody = 256 << 10
)

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
func (o *mailOutbox) handleResendWebhook(re *core.RequestEvent) error {
	if o.webhookSecret == "" {
		return re.Error(http.StatusServiceUnavailable, "Resend webhook secret not configured.", nil)
	}
	body, err := io.ReadAll(re.Request.Body)
	if err != nil {
		return re.BadRequestError("Could not read the body.", err)
	}
	if err := verifySvix(o.webhookSecret, re.Request.Header, body, o.now()); err != nil {
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
	err = o.app.DB().Select(core.FieldNameId, collections.DeliveryMessage, collections.DeliveryEmail, collections.FieldStatus).From(collections.Deliveries).
		Where(dbx.HashExp{collections.DeliveryProviderID: ev.Data.EmailID}).Limit(1).One(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return re.JSON(http.StatusOK, map[string]any{"ignored": "unknown email"})
	} else if err != nil {
		return re.InternalServerError("", err)
	}
	err = o.app.RunInTransaction(func(tx core.App) error {
		_, err := tx.DB().Update(collections.Deliveries, dbx.Params{collections.FieldStatus: status, collections.FieldUpdated: store.DBTime(o.now())},
			dbx.And(dbx.HashExp{core.FieldNameId: d.ID}, dbx.In(collections.FieldStatus, toAny(from)...))).Execute()
		if err != nil {
			return fmt.Errorf("update delivery %s: %w", d.ID, err)
		}
		switch {
		case status == collections.DeliveryComplained:
			return addSuppression(tx, d.Email, collections.SuppressionComplaint, o.now())
		case status == collections.DeliveryBounced && !strings.EqualFold(ev.Data.Bounce.Type, "transient"):
			return addSuppression(tx, d.Email, collections.SuppressionBounce, o.now())
		}
		return nil
	})
	if err != nil {
		return re.InternalServerError("", err)
	}
	if d.Message != "" {
		if err := refreshMessageCounts(o.app, d.Message, o.now(), false); err != nil {
			o.app.Logger().Error("refresh message counts", "message", d.Message, "error", err)
		}
	}
	return re.JSON(http.StatusOK, map[string]any{"status": status})
}
