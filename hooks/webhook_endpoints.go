package hooks

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/netpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// bindWebhookEndpoints validates the merchant's endpoints when superusers save them: the url
// follows the sender's policy (checkWebhookURL; an address literal must be public unless
// private networks are allowed, names are checked again by the dialer after DNS), the secret
// is generated when empty (clearing it rotates it) and must otherwise be a Standard Webhooks
// secret of at least 24 bytes, and enabling a disabled endpoint clears why it was disabled.
func bindWebhookEndpoints(app core.App, allowPrivate bool) {
	validate := func(e *core.RecordEvent) error {
		r := e.Record
		if err := checkEndpointURL(r.GetString(collections.WebhookURL), app.IsDev(), allowPrivate); err != nil {
			return fieldError(collections.WebhookURL, "invalid", err.Error())
		}
		secret := strings.TrimSpace(r.GetString(collections.WebhookSecret))
		if secret == "" {
			secret = newWebhookSecret()
		}
		if key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, webhookSecretPrefix)); !strings.HasPrefix(secret, webhookSecretPrefix) ||
			err != nil || len(key) < webhookSecretBytes {
			return fieldError(collections.WebhookSecret, "invalid", "A secret is whsec_ followed by the base64 of at least 24 bytes; leave it empty to generate one.")
		}
		r.Set(collections.WebhookSecret, secret)
		if r.GetBool(collections.WebhookActive) && (r.IsNew() || !r.Original().GetBool(collections.WebhookActive)) {
			r.Set(collections.WebhookFailureStreak, 0)
			r.Set(collections.WebhookDisabledAt, "")
			r.Set(collections.WebhookDisabledReason, "")
		}
		return e.Next()
	}
	app.OnRecordCreate(collections.Webhooks).BindFunc(validate)
	app.OnRecordUpdate(collections.Webhooks).BindFunc(validate)
}

// checkEndpointURL is checkWebhookURL plus, without the private-network opt-in, no address
// literal that is not public (the dialer would refuse it at every attempt).
func checkEndpointURL(raw string, dev, allowPrivate bool) error {
	if err := checkWebhookURL(raw, dev); err != nil {
		return errorWithoutPrefix(err)
	}
	u, _ := url.Parse(raw)
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !allowPrivate && !netpolicy.Public(ip) {
		return fmt.Errorf("%s is not a public address (set PBA_WEBHOOK_ALLOW_PRIVATE=true to allow)", ip)
	}
	return nil
}

// errorWithoutPrefix drops the "refused: " the sender's log uses from a message shown to the
// person typing the URL.
func errorWithoutPrefix(err error) error {
	msg := strings.TrimPrefix(err.Error(), "refused: ")
	return fmt.Errorf("%s", strings.ReplaceAll(msg, "webhook_url", "The URL"))
}

// templateWebhookDisabled is the mail to every superuser when an endpoint is disabled.
const templateWebhookDisabled = "webhook_disabled"

// webhookKeyPrefix starts the idempotency key of that mail:
// webhook-disabled:<endpoint>:<unix seconds>:<superuser>.
const webhookKeyPrefix = "webhook-disabled:"

// webhookDisabledTemplate is that mail. Not an editable template: it goes to the admins, not
// to affiliates, and says what to do.
var webhookDisabledTemplate = lifecycleTemplate{
	subject: "Webhook endpoint disabled: {{.Webhook.URL}}",
	text: "The webhook endpoint {{.Webhook.URL}}{{with .Webhook.Description}} ({{.}}){{end}} was disabled on {{.Webhook.DisabledAt}}.\n\n" +
		"{{.Webhook.Reason}}\n\nIts events are kept and wait for it. Fix the receiver, then enable the endpoint again in the back office " +
		"(Webhooks): the waiting events are sent in order.\n",
	html: `<p>The webhook endpoint <strong>{{.Webhook.URL}}</strong>{{with .Webhook.Description}} ({{.}}){{end}} was disabled on {{.Webhook.DisabledAt}}.</p>` +
		`<p>{{.Webhook.Reason}}</p><p>Its events are kept and wait for it. Fix the receiver, then enable the endpoint again in the back office ` +
		`(Webhooks): the waiting events are sent in order.</p>`,
}

// mailWebhook is what the webhook_disabled mail reports, frozen on its delivery.
type mailWebhook struct {
	URL         string `json:"url"`
	Description string `json:"description"`
	Reason      string `json:"reason"`
	DisabledAt  string `json:"disabled_at"`
}

// queueWebhookDisabledMail queues the webhook_disabled mail to every superuser, in tx.
func queueWebhookDisabledMail(tx core.App, endpoint, reason string, now time.Time) error {
	ep, err := tx.FindRecordById(collections.Webhooks, endpoint)
	if err != nil {
		return fmt.Errorf("find webhook %s: %w", endpoint, err)
	}
	raw, err := json.Marshal(mailWebhook{URL: ep.GetString(collections.WebhookURL), Description: ep.GetString(collections.WebhookDescription),
		Reason: reason, DisabledAt: now.Format("2 Jan 2006 15:04 UTC")})
	if err != nil {
		return fmt.Errorf("encode webhook mail: %w", err)
	}
	admins, err := tx.FindAllRecords(core.CollectionNameSuperusers)
	if err != nil {
		return fmt.Errorf("find superusers: %w", err)
	}
	for _, a := range admins {
		_, err := insertDelivery(tx.DB(), deliveryRow{Email: a.Email(), Template: templateWebhookDisabled, Status: collections.DeliveryQueued,
			IdempotencyKey: fmt.Sprintf("%s%s:%d:%s", webhookKeyPrefix, endpoint, now.Unix(), a.Id), Data: string(raw)}, now)
		if err != nil {
			return err
		}
	}
	return nil
}

// adminMail renders a mail to a superuser (a delivery without an affiliate).
func adminMail(r deliveryRow) (renderedMail, error) {
	if r.Template != templateWebhookDisabled {
		return renderedMail{}, fmt.Errorf("no admin mail template %q", r.Template)
	}
	var d mailData
	if err := json.Unmarshal([]byte(r.Data), &d.Webhook); err != nil {
		return renderedMail{}, fmt.Errorf("webhook of %s: %w", r.IdempotencyKey, err)
	}
	return renderMail(webhookDisabledTemplate.subject, webhookDisabledTemplate.html, webhookDisabledTemplate.text, d)
}

// handleTest queues a webhook.test event for one endpoint (POST /api/pba/webhooks/{id}/test),
// whatever it subscribes to; it is delivered like any event, in the endpoint's order.
func (s *webhookSender) handleTest(re *core.RequestEvent) error {
	ep, err := re.App.FindRecordById(collections.Webhooks, re.Request.PathValue("id"))
	if err != nil {
		return re.NotFoundError("", nil)
	}
	if !ep.GetBool(collections.WebhookActive) {
		return re.BadRequestError("Enable the endpoint first: a disabled endpoint receives nothing.",
			fieldError(collections.WebhookActive, "inactive", "The endpoint is disabled."))
	}
	var eventID string
	err = re.App.RunInTransaction(func(tx core.App) error {
		em := newEventEmitter(tx)
		var err error
		eventID, err = em.write(eventWebhookTest, map[string]any{"webhook": ep.Id, "message": "A test event from pbaffiliate."},
			[]eventEndpoint{{ID: ep.Id, URL: ep.GetString(collections.WebhookURL)}})
		return err
	})
	if err != nil {
		return re.InternalServerError("", err)
	}
	return re.JSON(http.StatusCreated, map[string]any{"event_id": eventID, "type": eventWebhookTest})
}

// handleResend queues one delivery of an endpoint again
// (POST /api/pba/webhooks/{id}/deliveries/{delivery}/resend): the same event id and body, so a
// receiver that has it already can tell. It keeps its place in the endpoint's order (its id),
// so it goes out before the endpoint's later pending events. A pending delivery is already
// queued: 409.
func (s *webhookSender) handleResend(re *core.RequestEvent) error {
	endpoint, delivery := re.Request.PathValue("id"), re.Request.PathValue("delivery")
	now := store.DBTime(s.now())
	res, err := re.App.DB().NewQuery("UPDATE {{webhook_deliveries}} SET [[status]] = {:pending}, [[attempts]] = 0, " +
		"[[next_attempt_at]] = {:now}, [[updated]] = {:now} WHERE [[id]] = {:id} AND [[webhook]] = {:webhook} AND [[status]] != {:pending}").
		Bind(dbx.Params{"pending": collections.WebhookDeliveryPending, "now": now, "id": delivery, "webhook": endpoint}).Execute()
	if err != nil {
		return re.InternalServerError("", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var status string
		err := re.App.DB().Select(collections.FieldStatus).From(collections.WebhookDeliveries).
			Where(dbx.HashExp{core.FieldNameId: delivery, collections.WebhookDeliveryWebhook: endpoint}).Row(&status)
		if err != nil || endpoint == "" {
			return re.NotFoundError("", nil)
		}
		return re.Error(http.StatusConflict, "The delivery is already queued.", fieldError(collections.FieldStatus, "pending", "Already queued."))
	}
	s.worker.Signal()
	return re.JSON(http.StatusOK, map[string]any{"id": delivery, "status": collections.WebhookDeliveryPending})
}
