package hooks

import (
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pocketbase/dbx"
	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/pocketbase/pocketbase/tools/security"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// API keys let a merchant's server call the routes bound to a scope it holds
// (docs/http-api.md#api-keys). A key is `pba_` and 40 random alphanumeric characters (about
// 238 bits), sent as "Authorization: Bearer pba_…". Only its SHA-256 is stored: a key is
// random, not a password people choose, so a fast hash cannot be brute-forced and needs no
// salt or slow KDF, and it lets the key be found with one indexed lookup.
const (
	apiKeyPrefix    = "pba_"
	apiKeyRandomLen = 40
	apiKeyShownLen  = 12 // "pba_" and 8 characters: what lists show
	// apiKeyTouchEvery is how often a key's last_used is written at most: once a minute,
	// so that a busy key does not add a write to every request.
	apiKeyTouchEvery = time.Minute
	// apiKeyContextKey holds the request's authenticated key (*apiKey) in the event's store.
	apiKeyContextKey = "pbaAPIKey"
)

// apiKey is an authenticated key, as the routes see it.
type apiKey struct {
	ID, Name, Prefix string
	Scopes           []string
}

// label names the key in a sale's history and logs (never the key itself).
func (k *apiKey) label() string { return "api key " + k.Name + " (" + k.Prefix + "…)" }

// apiKeys authenticates API keys and creates them. It remembers which routes accept which
// scope (bound through scoped) and when it last wrote each key's last_used.
type apiKeys struct {
	now func() time.Time

	mu      sync.Mutex
	touched map[string]time.Time // key id → last write of last_used
	scopes  map[string]string    // "METHOD /pattern" → the scope the route accepts
}

func newAPIKeys() *apiKeys {
	return &apiKeys{now: time.Now, touched: map[string]time.Time{}, scopes: map[string]string{}}
}

// registerAPIKeys binds the api_keys record hooks and returns the capability.
func registerAPIKeys(app core.App) *apiKeys {
	k := newAPIKeys()
	// Keys are made by POST /api/pba/api-keys only, so the records API never holds a key.
	app.OnRecordCreateRequest(collections.APIKeys).BindFunc(func(e *core.RecordRequestEvent) error {
		return e.BadRequestError("Create API keys with POST /api/pba/api-keys: the key is shown once there.",
			fieldError("hash", "create_with_route", "Use POST /api/pba/api-keys."))
	})
	// An admin renames or revokes a key; the rest is the server's, and revocation is final.
	app.OnRecordUpdateRequest(collections.APIKeys).BindFunc(func(e *core.RecordRequestEvent) error {
		orig := e.Record.Original()
		for _, f := range []string{collections.APIKeyHash, collections.APIKeyPrefix, collections.APIKeyLastUsed,
			collections.APIKeyCreatedBy, collections.APIKeyRevokedAt} {
			if e.Record.GetString(f) != orig.GetString(f) {
				return e.BadRequestError("This field is set by the server.", fieldError(f, "read_only", "Set by the server."))
			}
		}
		if orig.GetBool(collections.APIKeyRevoked) && !e.Record.GetBool(collections.APIKeyRevoked) {
			return e.BadRequestError("A revoked key stays revoked.", fieldError(collections.APIKeyRevoked, "final",
				"Revocation is final: create a new key."))
		}
		return e.Next()
	})
	// The hash is hidden, and superusers (who see hidden fields) do not get it either: it is
	// only ever compared on the server. (After Next: PocketBase unhides hidden fields for
	// superusers in the enrich chain's finalizer.)
	app.OnRecordEnrich(collections.APIKeys).BindFunc(func(e *core.RecordEnrichEvent) error {
		err := e.Next()
		e.Record.Hide(collections.APIKeyHash)
		return err
	})
	app.OnRecordUpdate(collections.APIKeys).BindFunc(func(e *core.RecordEvent) error {
		if e.Record.GetBool(collections.APIKeyRevoked) && !e.Record.Original().GetBool(collections.APIKeyRevoked) {
			e.Record.Set(collections.APIKeyRevokedAt, k.now().UTC())
		}
		return e.Next()
	})
	return k
}

// hashAPIKey is the stored form of a key: hex SHA-256.
func hashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// apiKeyCreateBody is the JSON of POST /api/pba/api-keys.
type apiKeyCreateBody struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

// handleCreate is POST /api/pba/api-keys (superusers): a new key with a name and scopes. The
// answer is the only place the key ever appears: it is not stored, and no route or records
// API answer gives it back.
func (k *apiKeys) handleCreate(e *core.RequestEvent) error {
	raw, err := io.ReadAll(e.Request.Body)
	if err != nil {
		return e.BadRequestError("Could not read the body.", err)
	}
	var body apiKeyCreateBody
	if errs := decodeStrict(raw, &body); errs != nil {
		return e.BadRequestError("Invalid API key.", errs)
	}
	body.Name = strings.TrimSpace(body.Name)
	switch {
	case body.Name == "":
		return e.BadRequestError("Invalid API key.", fieldError("name", "required", "Name the key after the server that uses it."))
	case utf8.RuneCountInString(body.Name) > 100:
		return e.BadRequestError("Invalid API key.", fieldError("name", "too_long", "At most 100 characters."))
	case len(body.Scopes) == 0:
		return e.BadRequestError("Invalid API key.", fieldError("scopes", "required", "At least one of "+strings.Join(collections.AllAPIKeyScopes, ", ")+"."))
	}
	for i, s := range body.Scopes {
		if !slices.Contains(collections.AllAPIKeyScopes, s) || slices.Index(body.Scopes, s) != i {
			return e.BadRequestError("Invalid API key.", fieldError("scopes", "invalid_scope",
				"Distinct scopes among "+strings.Join(collections.AllAPIKeyScopes, ", ")+"; got "+s+"."))
		}
	}
	c, err := e.App.FindCachedCollectionByNameOrId(collections.APIKeys)
	if err != nil {
		return e.InternalServerError("", err)
	}
	key := apiKeyPrefix + security.RandomStringWithAlphabet(apiKeyRandomLen, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
	rec := core.NewRecord(c)
	rec.Set(collections.APIKeyName, body.Name)
	rec.Set(collections.APIKeyPrefix, key[:apiKeyShownLen])
	rec.Set(collections.APIKeyHash, hashAPIKey(key))
	rec.Set(collections.APIKeyScopes, body.Scopes)
	if e.Auth != nil {
		rec.Set(collections.APIKeyCreatedBy, e.Auth.Email())
	}
	if err := e.App.Save(rec); err != nil {
		var verrs validation.Errors
		if errors.As(err, &verrs) {
			return e.BadRequestError("Invalid API key.", verrs)
		}
		return e.InternalServerError("", err)
	}
	return e.JSON(http.StatusCreated, map[string]any{
		"id": rec.Id, "name": body.Name, "prefix": rec.GetString(collections.APIKeyPrefix), "scopes": body.Scopes,
		"created": rec.GetDateTime("created"), "key": key,
	})
}

// find is the unrevoked key whose hash is the key's, or nil. The lookup is by the key's
// SHA-256 through a unique index: how long it takes depends on the hash, which tells a
// guesser nothing about any stored key; the final comparison is in constant time anyway.
func (k *apiKeys) find(app core.App, key string) (*apiKey, error) {
	hash := hashAPIKey(key)
	var row struct {
		ID      string `db:"id"`
		Name    string `db:"name"`
		Prefix  string `db:"prefix"`
		Hash    string `db:"hash"`
		Scopes  string `db:"scopes"`
		Revoked bool   `db:"revoked"`
	}
	err := app.DB().Select("id", "name", "prefix", "hash", "scopes", "revoked").From(collections.APIKeys).
		Where(dbx.HashExp{"hash": hash}).Limit(1).One(&row)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, err
	case subtle.ConstantTimeCompare([]byte(row.Hash), []byte(hash)) != 1 || row.Revoked:
		return nil, nil
	}
	rec := &apiKey{ID: row.ID, Name: row.Name, Prefix: row.Prefix}
	if err := json.Unmarshal([]byte(row.Scopes), &rec.Scopes); err != nil {
		return nil, fmt.Errorf("api key %s: scopes: %w", row.ID, err)
	}
	return rec, nil
}

// touch writes the key's last_used, at most once per apiKeyTouchEvery per key: the write is
// skipped in memory within the minute, and the UPDATE's condition keeps several processes to
// about one write a minute too.
func (k *apiKeys) touch(app core.App, id string) {
	now := k.now().UTC()
	k.mu.Lock()
	if last, ok := k.touched[id]; ok && now.Sub(last) < apiKeyTouchEvery {
		k.mu.Unlock()
		return
	}
	k.touched[id] = now
	k.mu.Unlock()
	_, err := app.DB().NewQuery("UPDATE api_keys SET last_used = {:now} WHERE id = {:id} AND (last_used = '' OR last_used <= {:before})").
		Bind(dbx.Params{"now": store.DBTime(now), "id": id, "before": store.DBTime(now.Add(-apiKeyTouchEvery))}).Execute()
	if err != nil {
		app.Logger().Warn("api key: last_used not written", "key", id, "error", err)
	}
}

// bearerAPIKey is the API key an Authorization header carries, or "".
func bearerAPIKey(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || !strings.HasPrefix(token, apiKeyPrefix) {
		return ""
	}
	return token
}

// authenticate is the router middleware that decides every request carrying an API key
// under /api/: a route bound with scoped accepts a key holding its scope (the key is put in
// the event for the route's middleware and handler); an unknown or revoked key is 401; a key
// without the route's scope, or on a route that takes none, 403. Requests without a key pass
// untouched. It runs after PocketBase's rate limiter, so a key's requests count against the
// limits of its client address like any other.
func (k *apiKeys) authenticate() *hook.Handler[*core.RequestEvent] {
	return &hook.Handler[*core.RequestEvent]{
		Id:       "pbaAPIKeys",
		Priority: apis.DefaultRateLimitMiddlewarePriority + 1,
		Func: func(e *core.RequestEvent) error {
			token := bearerAPIKey(e.Request)
			if token == "" || !strings.HasPrefix(e.Request.URL.Path, "/api/") {
				return e.Next()
			}
			key, err := k.find(e.App, token)
			if err != nil {
				return e.InternalServerError("", err)
			}
			if key == nil {
				return e.UnauthorizedError("Unknown or revoked API key.", nil)
			}
			k.mu.Lock()
			scope, ok := k.scopes[e.Request.Pattern]
			k.mu.Unlock()
			if !ok {
				return e.ForbiddenError("This route does not accept API keys.", nil)
			}
			if !slices.Contains(key.Scopes, scope) {
				return e.ForbiddenError("This API key lacks the scope "+scope+".",
					fieldError("scope", "missing_scope", "The route needs "+scope+"; create a key that holds it."))
			}
			e.Set(apiKeyContextKey, key)
			k.touch(e.App, key.ID)
			return e.Next()
		},
	}
}

// scoped lets a route accept API keys holding scope (authenticate checked the key) and sends
// every other request to the route's own auth, authz (nil: the handler decides, as the
// conversion routes do with the program's secret). route is the route as bound.
func (k *apiKeys) scoped(route, scope string, authz *hook.Handler[*core.RequestEvent]) *hook.Handler[*core.RequestEvent] {
	k.mu.Lock()
	k.scopes[route] = scope
	k.mu.Unlock()
	return &hook.Handler[*core.RequestEvent]{
		Func: func(e *core.RequestEvent) error {
			if apiKeyOf(e) != nil || authz == nil {
				return e.Next()
			}
			return authz.Func(e)
		},
	}
}

// apiKeyOf is the API key that authenticated e, or nil.
func apiKeyOf(e *core.RequestEvent) *apiKey {
	k, _ := e.Get(apiKeyContextKey).(*apiKey)
	return k
}

// adminCaller reports whether e comes from a superuser or an API key (authorised for the
// route by its scope): callers that act on every affiliate's data.
func adminCaller(e *core.RequestEvent) bool {
	return e.HasSuperuserAuth() || apiKeyOf(e) != nil
}

// exportScopes is the scope of each CSV export of exports.go: the affiliates, their sales, and
// the commissions owed and paid to them.
var exportScopes = map[string]string{
	"affiliates":  collections.ScopeAffiliatesRead,
	"conversions": collections.ScopeSalesRead,
	"commissions": collections.ScopePayoutsRead,
}
