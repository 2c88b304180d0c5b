package hooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/mailer"
	"github.com/resend/resend-go/v2"
)

// outgoingMail is one rendered email, independent of the provider that sends it.
type outgoingMail struct {
	From    string
	To      string
	Subject string
	HTML    string
	Text    string
	// Headers are extra MIME headers (List-Unsubscribe and friends).
	Headers map[string]string
	// Tags label the email at the provider (Resend tags; ignored by SMTP).
	Tags map[string]string
	// IdempotencyKey is the delivery's key: a retried single send is accepted once by Resend.
	IdempotencyKey string
}

// mailSender is what the mail worker needs from a provider, so Resend, SMTP and the dev log
// are interchangeable and tests can fake them.
type mailSender interface {
	// Send sends one email and returns the provider's id for it (empty if it has none).
	Send(ctx context.Context, m outgoingMail) (string, error)
	// SendBatch sends up to messagingBatchSize emails at once and returns their ids in order.
	SendBatch(ctx context.Context, ms []outgoingMail) ([]string, error)
}

// sendError classifies a failed send so the worker knows whether to retry (rate limit, 5xx,
// network) or give up (the provider rejected the request itself).
type sendError struct {
	temporary bool
	err       error
}

// Error implements error.
func (e *sendError) Error() string { return e.err.Error() }

// Unwrap exposes the cause (resend.RateLimitError and the like).
func (e *sendError) Unwrap() error { return e.err }

// isTemporarySend reports whether err is worth retrying later.
func isTemporarySend(err error) bool {
	var se *sendError
	if errors.As(err, &se) {
		return se.temporary
	}
	return true // unknown errors (network, context) are retried
}

// Resend limits and retry policy within one send call. Beyond these the delivery stays queued
// and the worker retries on a later run (messagingBackoff).
const (
	// resendMaxTries is how often one call is attempted before giving the error back.
	resendMaxTries = 4
	// resendRetryBase is the first wait after a 5xx or network error (doubled each time).
	resendRetryBase = 500 * time.Millisecond
	// resendMaxWait caps a wait asked for by rate-limit headers, so a bogus header cannot
	// stall the worker.
	resendMaxWait = time.Minute
	// resendTimeout bounds one HTTP request to Resend.
	resendTimeout = 30 * time.Second
)

// resendSender sends through the Resend API with resend-go. It retries 429 (waiting as the
// rate-limit headers say) and 5xx, and pauses before the next request when a response says
// the window is used up.
type resendSender struct {
	client *resend.Client
	sleep  func(context.Context, time.Duration) error

	mu        sync.Mutex
	notBefore time.Time // set from ratelimit-remaining: 0
}

// resendRespInfo carries the status and headers of the last response out of resend-go, which
// does not expose them (its errors for 5xx carry only the message).
type resendRespInfo struct {
	status int
	header http.Header
}

// resendRespKey is the context key under which resendTransport finds its resendRespInfo.
type resendRespKey struct{}

// resendTransport records each response's status and headers into the request's context.
type resendTransport struct{ base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t resendTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if info, ok := req.Context().Value(resendRespKey{}).(*resendRespInfo); ok && resp != nil {
		info.status = resp.StatusCode
		info.header = resp.Header.Clone()
	}
	return resp, err
}

// newResendSender builds the Resend client; baseURL (tests, proxies) gets the trailing slash
// resend-go needs to resolve its relative paths.
func newResendSender(apiKey, baseURL string, sleep func(context.Context, time.Duration) error) (*resendSender, error) {
	hc := &http.Client{Timeout: resendTimeout, Transport: resendTransport{base: http.DefaultTransport}}
	c := resend.NewCustomClient(hc, apiKey)
	if baseURL == "" {
		baseURL = "https://api.resend.com/"
	}
	if !strings.HasSuffix(baseURL, "/") {
		baseURL += "/"
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("parse RESEND_BASE_URL: %w", err)
	}
	c.BaseURL = u
	c.UserAgent = "pbaffiliate"
	return &resendSender{client: c, sleep: sleep}, nil
}

// resendRequest converts a mail to resend-go's request.
func resendRequest(m outgoingMail) *resend.SendEmailRequest {
	req := &resend.SendEmailRequest{From: m.From, To: []string{m.To}, Subject: m.Subject, Html: m.HTML, Text: m.Text, Headers: m.Headers}
	for k, v := range m.Tags {
		req.Tags = append(req.Tags, resend.Tag{Name: k, Value: v})
	}
	return req
}

// Send implements mailSender with POST /emails and the delivery's Idempotency-Key.
func (s *resendSender) Send(ctx context.Context, m outgoingMail) (string, error) {
	var id string
	err := s.do(ctx, func(ctx context.Context) error {
		resp, err := s.client.Emails.SendWithOptions(ctx, resendRequest(m), &resend.SendEmailOptions{IdempotencyKey: m.IdempotencyKey})
		if err == nil {
			id = resp.Id
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("resend send to %s: %w", m.To, err)
	}
	return id, nil
}

// SendBatch implements mailSender with POST /emails/batch. Its Idempotency-Key is derived from
// the deliveries' keys, so a batch re-sent after a crash (same rows, same order) is accepted
// once by Resend.
func (s *resendSender) SendBatch(ctx context.Context, ms []outgoingMail) ([]string, error) {
	reqs := make([]*resend.SendEmailRequest, len(ms))
	keys := make([]string, len(ms))
	for i, m := range ms {
		reqs[i] = resendRequest(m)
		keys[i] = m.IdempotencyKey
	}
	var ids []string
	err := s.do(ctx, func(ctx context.Context) error {
		resp, err := s.client.Batch.SendWithOptions(ctx, reqs, &resend.BatchSendEmailOptions{IdempotencyKey: batchIdempotencyKey(keys)})
		if err != nil {
			return err
		}
		if len(resp.Data) != len(ms) {
			return &sendError{err: fmt.Errorf("batch of %d answered with %d ids", len(ms), len(resp.Data))}
		}
		ids = make([]string, len(ms))
		for i, d := range resp.Data {
			ids[i] = d.Id
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("resend batch of %d: %w", len(ms), err)
	}
	return ids, nil
}

// batchIdempotencyKey is one key for a batch of deliveries (Resend keys are at most 256 chars).
func batchIdempotencyKey(keys []string) string {
	h := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return "pba-batch-" + hex.EncodeToString(h[:])
}

// do runs one API call with the retry policy: 429 waits for retry-after (or ratelimit-reset),
// 5xx and network errors back off exponentially, other 4xx fail at once as permanent.
func (s *resendSender) do(ctx context.Context, call func(context.Context) error) error {
	var last error
	for try := 0; try < resendMaxTries; try++ {
		if err := s.waitWindow(ctx); err != nil {
			return err
		}
		info := &resendRespInfo{}
		err := call(context.WithValue(ctx, resendRespKey{}, info))
		s.noteWindow(info.header)
		if err == nil {
			return nil
		}
		var se *sendError
		if errors.As(err, &se) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		wait := resendRetryBase << try
		var rl *resend.RateLimitError
		switch {
		case errors.As(err, &rl):
			s.mu.Lock()
			s.notBefore = time.Time{} // the wait below covers the window
			s.mu.Unlock()
			if d, ok := headerSeconds(rl.RetryAfter); ok {
				wait = d
			} else if d, ok := headerSeconds(rl.Reset); ok {
				wait = d
			}
		case info.status >= 400 && info.status < 500 && info.status != http.StatusRequestTimeout && info.status != http.StatusConflict:
			return &sendError{err: fmt.Errorf("rejected (HTTP %d): %w", info.status, err)}
		case info.status == http.StatusConflict:
			// An idempotency key still being processed by a concurrent request: retry.
		}
		if try < resendMaxTries-1 {
			if err := s.sleep(ctx, min(wait, resendMaxWait)); err != nil {
				return err
			}
		}
	}
	return &sendError{temporary: true, err: last}
}

// noteWindow remembers to pause when the response says no request is left in the window.
func (s *resendSender) noteWindow(h http.Header) {
	if h == nil || strings.TrimSpace(h.Get("ratelimit-remaining")) != "0" {
		return
	}
	d, ok := headerSeconds(h.Get("ratelimit-reset"))
	if !ok {
		d = time.Second
	}
	s.mu.Lock()
	s.notBefore = time.Now().Add(min(d, resendMaxWait))
	s.mu.Unlock()
}

// waitWindow sleeps until the rate-limit window noted by noteWindow has reset.
func (s *resendSender) waitWindow(ctx context.Context) error {
	s.mu.Lock()
	d := time.Until(s.notBefore)
	s.notBefore = time.Time{}
	s.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return s.sleep(ctx, d)
}

// headerSeconds parses a rate-limit header given in (possibly fractional) seconds.
func headerSeconds(v string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pbMailSender sends through PocketBase's mailer (SMTP or sendmail from the dashboard
// settings), which has no batches and no provider ids.
type pbMailSender struct{ app core.App }

// Send implements mailSender.
func (s pbMailSender) Send(_ context.Context, m outgoingMail) (string, error) {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return "", &sendError{err: fmt.Errorf("sender address %q: %w", m.From, err)}
	}
	to, err := mail.ParseAddress(m.To)
	if err != nil {
		return "", &sendError{err: fmt.Errorf("recipient address %q: %w", m.To, err)}
	}
	msg := &mailer.Message{From: *from, To: []mail.Address{*to}, Subject: m.Subject, HTML: m.HTML, Text: m.Text, Headers: m.Headers}
	if err := s.app.NewMailClient().Send(msg); err != nil {
		return "", &sendError{temporary: true, err: fmt.Errorf("smtp send to %s: %w", m.To, err)}
	}
	return "", nil
}

// SendBatch implements mailSender one mail at a time; a failure stops the batch, and the
// mails before it are reported sent by the ids slice being shorter.
func (s pbMailSender) SendBatch(ctx context.Context, ms []outgoingMail) ([]string, error) {
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		id, err := s.Send(ctx, m)
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// logMailSender only logs: no mail sender is configured (dev mode, or a machine without
// sendmail such as a first `make run`), so mails are kept in the log instead of failing
// again and again. The setup checklist says so.
type logMailSender struct{ app core.App }

// Send implements mailSender.
func (s logMailSender) Send(_ context.Context, m outgoingMail) (string, error) {
	s.app.Logger().Info("mail not sent: no mail sender (set RESEND_API_KEY or SMTP)", "to", m.To, "subject", m.Subject, "text", m.Text)
	return "", nil
}

// Mail providers, as GET /api/pba/config names them.
const (
	mailProviderResend   = "resend"
	mailProviderSMTP     = "smtp"
	mailProviderSendmail = "sendmail"
	mailProviderNone     = "none" // mails are only written to the log
)

// chooseMailProvider is what sends pbaffiliate's mail: Resend with a key; else SMTP when it
// is enabled in the dashboard; else, outside dev mode, the machine's sendmail (PocketBase's
// mailer without SMTP); else nothing.
func chooseMailProvider(resend, smtp, dev, sendmail bool) string {
	switch {
	case resend:
		return mailProviderResend
	case smtp:
		return mailProviderSMTP
	case !dev && sendmail:
		return mailProviderSendmail
	default:
		return mailProviderNone
	}
}

// mailProvider is chooseMailProvider for app now (settings change without a restart).
func mailProvider(app core.App, resend bool) string {
	return chooseMailProvider(resend, app.Settings().SMTP.Enabled, app.IsDev(), hasSendmail())
}

// hasSendmail reports whether PocketBase's mailer would find a sendmail (it looks in the
// same places).
func hasSendmail() bool {
	for _, p := range []string{"/usr/sbin/sendmail", "/usr/bin/sendmail", "sendmail"} {
		if _, err := exec.LookPath(p); err == nil {
			return true
		}
	}
	return false
}

// SendBatch implements mailSender.
func (s logMailSender) SendBatch(ctx context.Context, ms []outgoingMail) ([]string, error) {
	ids := make([]string, len(ms))
	for _, m := range ms {
		_, _ = s.Send(ctx, m)
	}
	return ids, nil
}
