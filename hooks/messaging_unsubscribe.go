package hooks

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/security"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// unsubscribes signs the one-click unsubscribe links of marketing mail and serves them: GET
// shows a confirmation page, POST sets preferred_channel none and suppresses the address.
type unsubscribes struct {
	app       core.App
	publicURL string // PBA_PUBLIC_URL; empty: the dashboard's application URL
	now       func() time.Time

	keyMu sync.Mutex
	key   []byte // unsubscribe-token HMAC key, loaded on first use
}

// newUnsubscribes returns the unsubscribe links of an app; the key is read on first use.
func newUnsubscribes(app core.App, publicURL string, now func() time.Time) *unsubscribes {
	return &unsubscribes{app: app, publicURL: publicURL, now: now}
}

// unsubscribeKey is the HMAC key of unsubscribe tokens, kept in the data dir (made on first
// use) so tokens in sent mail stay valid across restarts and never live in a collection.
func (u *unsubscribes) unsubscribeKey() ([]byte, error) {
	u.keyMu.Lock()
	defer u.keyMu.Unlock()
	if u.key != nil {
		return u.key, nil
	}
	path := filepath.Join(u.app.DataDir(), messagingSecretFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) >= 32:
		u.key = b
		return b, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read mail secret: %w", err)
	}
	secret := []byte(newMessagingSecret())
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		return nil, fmt.Errorf("store mail secret: %w", err)
	}
	u.key = secret
	return secret, nil
}

// mac is the token signature of payload for one purpose: base64url HMAC-SHA256(key, purpose
// + ":" + payload). Every signed link of mail (unsubscribe, survey ratings) uses this one key
// and scheme; the purpose keeps a token of one kind from being taken for another.
func (u *unsubscribes) mac(purpose, payload string) (string, error) {
	key, err := u.unsubscribeKey()
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose + ":" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// signed is "<payload>.<mac>".
func (u *unsubscribes) signed(purpose, payload string) (string, error) {
	sig, err := u.mac(purpose, payload)
	if err != nil {
		return "", err
	}
	return payload + "." + sig, nil
}

// verified returns the payload of a token signed for purpose; the payload is everything
// before the last dot.
func (u *unsubscribes) verified(purpose, token string) (string, bool) {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 {
		return "", false
	}
	want, err := u.signed(purpose, token[:i])
	if err != nil {
		return "", false
	}
	return token[:i], hmac.Equal([]byte(want), []byte(token))
}

// unsubscribeToken is "<affiliate id>.<base64url HMAC-SHA256(key, "unsubscribe:" + id)>".
func (u *unsubscribes) unsubscribeToken(affiliateID string) (string, error) {
	return u.signed("unsubscribe", affiliateID)
}

// publicBase is where links in mail point: PBA_PUBLIC_URL, else the dashboard's application URL.
func (u *unsubscribes) publicBase() string {
	base := strings.TrimRight(u.publicURL, "/")
	if base == "" {
		base = strings.TrimRight(u.app.Settings().Meta.AppURL, "/")
	}
	return base
}

// unsubscribeURL is the one-click link of marketing mail.
func (u *unsubscribes) unsubscribeURL(affiliateID string) (string, error) {
	token, err := u.unsubscribeToken(affiliateID)
	if err != nil {
		return "", err
	}
	return u.publicBase() + "/api/pba/unsubscribe?token=" + url.QueryEscape(token), nil
}

// affiliateFromToken checks a token and returns its affiliate id.
func (u *unsubscribes) affiliateFromToken(token string) (string, bool) {
	id, ok := u.verified("unsubscribe", token)
	if !ok || id == "" || strings.Contains(id, ".") {
		return "", false
	}
	return id, true
}

// unsubscribePage is the small page both methods answer with; the token is escaped by
// html/template in the form action. No inline style (the Content-Security-Policy allows
// none): pba.css styles it.
const unsubscribePage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Unsubscribe</title>` +
	`<link rel="stylesheet" href="/pba.css"></head><body class="notice"><main>` +
	`{{if .Done}}<h1>You are unsubscribed</h1><p>You will no longer receive newsletters from our affiliate program. Payout and account emails still reach you.</p>` +
	`{{else}}<h1>Unsubscribe?</h1><p>Stop newsletters from our affiliate program. Payout and account emails still reach you.</p>` +
	`<form method="post" action="/api/pba/unsubscribe?token={{.Token}}"><button type="submit">Unsubscribe</button></form>{{end}}</main></body></html>`

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
func (u *unsubscribes) handleUnsubscribePage(re *core.RequestEvent) error {
	token := re.Request.URL.Query().Get("token")
	if _, ok := u.affiliateFromToken(token); !ok {
		return re.BadRequestError("Invalid or expired unsubscribe link.", nil)
	}
	return renderUnsubscribePage(re, token, false)
}

// handleUnsubscribe is POST /api/pba/unsubscribe (RFC 8058 one-click, or the page's button):
// preferred_channel becomes none and the address is suppressed for marketing mail.
func (u *unsubscribes) handleUnsubscribe(re *core.RequestEvent) error {
	token := re.Request.URL.Query().Get("token")
	id, ok := u.affiliateFromToken(token)
	if !ok {
		return re.BadRequestError("Invalid or expired unsubscribe link.", nil)
	}
	a, err := u.app.FindRecordById(collections.Affiliates, id)
	if errors.Is(err, sql.ErrNoRows) {
		return renderUnsubscribePage(re, token, true) // nothing left to send to
	} else if err != nil {
		return re.InternalServerError("", err)
	}
	err = u.app.RunInTransaction(func(tx core.App) error {
		// Raw update: only this column changes, and no lifecycle hook needs to see it.
		if _, err := tx.DB().NewQuery("UPDATE {{affiliates}} SET [[preferred_channel]] = {:none} WHERE [[id]] = {:id}").
			Bind(dbx.Params{"none": collections.ChannelNone, "id": id}).Execute(); err != nil {
			return fmt.Errorf("set preferred_channel of %s: %w", id, err)
		}
		return addSuppression(tx, a.Email(), collections.SuppressionUnsubscribe, u.now())
	})
	if err != nil {
		return re.InternalServerError("", err)
	}
	return renderUnsubscribePage(re, token, true)
}

// newMessagingSecret returns a fresh random key (64 alphanumerics, ~380 bits) for unsubscribe tokens.
func newMessagingSecret() string {
	return security.RandomString(64)
}
