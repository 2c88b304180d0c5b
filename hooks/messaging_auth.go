package hooks

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/mails"
	"github.com/pocketbase/pocketbase/tools/routine"
	"github.com/pocketbase/pocketbase/tools/security"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// Internal headers by which the record-level mail hooks tell the send hook what a mail is;
// removed before anything is sent.
const (
	authTemplateHeader  = "X-Pba-Template"
	authAffiliateHeader = "X-Pba-Affiliate"
	// authSendTimeout bounds a synchronous auth mail (the user waits for the answer).
	authSendTimeout = 30 * time.Second
)

// bindAuthMail routes PocketBase's own mails (verification, password reset, email change,
// OTP, login alerts — for affiliates and superusers alike) through the same sender as every
// other mail, so with a Resend key they go through Resend and appear in deliveries with their
// provider id (bounces and complaints then suppress the address like any other). Without
// Resend they take PocketBase's mailer as before (in dev without SMTP: the log).
func (l *lifecycleMails) bindAuthMail() {
	tag := func(template string) func(*core.MailerRecordEvent) error {
		return func(ev *core.MailerRecordEvent) error {
			if ev.Record != nil && ev.Record.Collection().Name == collections.Affiliates && ev.Message != nil {
				if ev.Message.Headers == nil {
					ev.Message.Headers = map[string]string{}
				}
				ev.Message.Headers[authTemplateHeader] = template
				ev.Message.Headers[authAffiliateHeader] = ev.Record.Id
			}
			return ev.Next()
		}
	}
	app := l.app
	// A signup proves nothing about its address: whoever signs up may type a stranger's. The
	// guest gets PocketBase's verification mail at once (fixed text, no name), and until its
	// link is followed every other mail to the address leaves out what the signer typed
	// (mailData.withoutSignerText). Superusers creating affiliates send nothing here.
	var sending sync.WaitGroup // verification mails in flight; the app waits for them to end
	app.OnTerminate().BindFunc(func(e *core.TerminateEvent) error {
		sending.Wait()
		return e.Next()
	})
	app.OnRecordCreateRequest(collections.Affiliates).BindFunc(func(e *core.RecordRequestEvent) error {
		if err := e.Next(); err != nil || e.HasSuperuserAuth() || e.Record.Verified() {
			return err
		}
		record := e.Record
		send := func() {
			routine.FireAndForget(func() { // as PocketBase's request-verification does: the answer does not wait
				if err := mails.SendRecordVerification(app, record); err != nil {
					app.Logger().Error("send verification mail", "affiliate", record.Id, "error", err)
				}
			}, &sending)
		}
		if tx := e.App.TxInfo(); tx != nil { // a batch request: only once the signup committed
			tx.OnComplete(func(txErr error) error {
				if txErr == nil {
					send()
				}
				return nil
			})
			return nil
		}
		send()
		return nil
	})
	app.OnMailerRecordVerificationSend().BindFunc(tag("auth_verification"))
	app.OnMailerRecordPasswordResetSend().BindFunc(tag("auth_password_reset"))
	app.OnMailerRecordEmailChangeSend().BindFunc(tag("auth_email_change"))
	app.OnMailerRecordOTPSend().BindFunc(tag("auth_otp"))
	app.OnMailerRecordAuthAlertSend().BindFunc(tag("auth_alert"))
	app.OnMailerSend().BindFunc(l.sendAuthMail)
}

// sendAuthMail sends a mail of PocketBase's mailer through the configured sender. Our own
// SMTP sender also ends here (it uses PocketBase's mailer), so that one passes through.
func (l *lifecycleMails) sendAuthMail(ev *core.MailerEvent) error {
	msg := ev.Message
	template, affiliate := "auth", ""
	if msg != nil && msg.Headers != nil {
		if t := msg.Headers[authTemplateHeader]; t != "" {
			template = t
		}
		affiliate = msg.Headers[authAffiliateHeader]
		delete(msg.Headers, authTemplateHeader)
		delete(msg.Headers, authAffiliateHeader)
	}
	s := l.outbox.sender()
	if _, smtp := s.(pbMailSender); smtp || msg == nil || len(msg.Cc) > 0 || len(msg.Bcc) > 0 ||
		len(msg.Attachments) > 0 || len(msg.InlineAttachments) > 0 {
		return ev.Next() // PocketBase's own mails never have copies or attachments; others keep its mailer
	}
	from := msg.From.String()
	if msg.From.Address == "" {
		from = l.outbox.from()
	}
	ctx, cancel := context.WithTimeout(context.Background(), authSendTimeout)
	defer cancel()
	for _, to := range msg.To {
		m := outgoingMail{
			From: from, To: to.Address, Subject: msg.Subject, HTML: msg.HTML, Text: msg.Text, Headers: msg.Headers,
			Tags:           map[string]string{"template": template},
			IdempotencyKey: "auth:" + security.RandomString(20), // every auth mail is new
		}
		id, err := s.Send(ctx, m)
		if affiliate != "" {
			row := deliveryRow{Affiliate: affiliate, Email: to.Address, Template: template, Status: collections.DeliverySent,
				IdempotencyKey: m.IdempotencyKey, ProviderID: id}
			if err != nil {
				row.Status, row.Error = collections.DeliveryFailed, err.Error()
			}
			if _, rerr := l.outbox.enqueue(ev.App.DB(), row); rerr != nil {
				ev.App.Logger().Error("record auth mail", "affiliate", affiliate, "error", rerr)
			}
		}
		if err != nil {
			return fmt.Errorf("send %s mail: %w", template, err)
		}
	}
	return nil
}
