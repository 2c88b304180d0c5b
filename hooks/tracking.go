package hooks

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/textcheck"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Cookie names. pba_click carries the click id to the checkout; pba_vid identifies a browser
// across clicks (uniqueness, first-click attribution); pba_self is set by the portal so an
// affiliate's own clicks are flagged.
const (
	ClickCookie   = "pba_click"
	VisitorCookie = "pba_vid"
	SelfCookie    = "pba_self"
)

// visitorCookieDays is how long a browser keeps its visitor id (browsers cap cookies at 400 days).
const visitorCookieDays = 365

// rateWindow is the window of the per-IP, per-link click limit.
const rateWindow = time.Minute

// ipSaltFile keeps a generated IP salt in the data dir when PBA_IP_SALT is not set, so hashes
// stay stable across restarts without the salt ever living in a collection.
const ipSaltFile = ".pba_ip_salt"

// tracker owns the click path: code resolution, fraud flags, the group-commit writer and the
// live counters.
type tracker struct {
	app      core.App
	cfg      Config
	resolver *codeResolver
	writer   *clickWriter
	live     *liveHub
	doors    *doorCounter     // visitors sent on without a click (redirect_doors.go)
	policy   *ClickClassifier // fraud flags and the IP's hourly ceiling (click_overflow.go)
	unique   *clickpolicy.UniqueWindow
	salt     []byte
	ipHasher *clickpolicy.IPHasher
	ids      store.OrderedIDs // click and visitor ids
	metrics  *metrics

	mu      sync.Mutex
	started bool
}

func registerTracking(app core.App, cfg Config) *tracker {
	t := &tracker{
		app:      app,
		cfg:      cfg,
		resolver: newCodeResolver(app),
		live:     newLiveHub(app),
		doors:    newDoorCounter(app),
		policy:   NewClickClassifier(cfg),
		metrics:  metricsOf(app),
	}
	t.writer = newClickWriter(app, clickWriterConfig{
		BatchSize:      cfg.ClickBatchSize,
		MaxWait:        cfg.ClickBatchWait,
		QueueSize:      cfg.ClickQueueSize,
		EnqueueTimeout: cfg.ClickEnqueueTimeout,
	}, t.countCommitted)
	t.metrics.clickQueueDepthFn = func() float64 { return float64(len(t.writer.queue)) }
	t.unique = clickpolicy.NewUniqueWindow(uniqueWindow, clickpolicy.DefaultUniqueKeys)
	t.writer.useUniqueWindow(t.unique)
	t.bindUniqueHooks()
	app.Store().Set(trackerKey, t) // IngestEdgeClicks finds it there

	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		if err := t.start(); err != nil {
			return err
		}
		if err := se.Next(); err != nil {
			return err
		}
		// Next built the router's handler; links are served ahead of it (redirect_direct.go).
		if se.Server != nil && se.Server.Handler != nil {
			se.Server.Handler = t.directRedirects(se.Server.Handler)
		}
		return nil
	})
	// PocketBase's own terminate handler (priority -9999) first stops the HTTP server, letting
	// in-flight redirects finish; then the writer drains its queue before the database closes.
	app.OnTerminate().BindFunc(func(e *core.TerminateEvent) error {
		t.stop()
		return e.Next()
	})
	return t
}

// start runs the writer and the live hub; only a serving app has them (CLI commands do not).
func (t *tracker) start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started {
		return nil
	}
	salt, err := loadIPSalt(t.cfg.IPSalt, t.app.DataDir())
	if err != nil {
		return err
	}
	if err := t.loadUniqueWindow(); err != nil {
		return err
	}
	t.salt, t.ipHasher, t.started = salt, clickpolicy.NewIPHasher(salt), true
	t.writer.start()
	t.live.start()
	t.doors.start()
	return nil
}

// stop drains the writer (every accepted click is committed) and stops the live hub.
func (t *tracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		return
	}
	t.writer.stop()
	t.live.stop()
	t.doors.stop()
	t.started = false
}

// loadUniqueWindow fills the unique window with the unflagged clicks of the last 24 h, so
// uniqueness stays exact across restarts. It reads idx_clicks_affiliate (affiliate, created)
// once per affiliate; clicks of deleted affiliates cannot recur and are skipped.
func (t *tracker) loadUniqueWindow() error {
	rows, err := t.app.DB().NewQuery(`SELECT c.visitor, c.link, c.affiliate, c.created
		FROM {{affiliates}} a CROSS JOIN {{clicks}} c ON c.affiliate = a.id
		WHERE c.created >= {:since} AND c.flag = '' AND c.visitor != ''`).
		Bind(dbx.Params{"since": store.DBTime(time.Now().Add(-uniqueWindow))}).Rows()
	if err != nil {
		return fmt.Errorf("load unique window: %w", err)
	}
	defer rows.Close()
	type seen struct {
		key uint64
		at  int64
	}
	// 16 bytes a click, and at most twice the window's bound: past it only the newest clicks
	// are kept and the window is told the time of the newest one it never saw.
	var all []seen
	var lost int64
	keepNewest := func(n int) {
		slices.SortFunc(all, func(a, b seen) int { return cmp.Compare(a.at, b.at) })
		if cut := len(all) - n; cut > 0 {
			lost = max(lost, all[cut-1].at)
			all = append(all[:0], all[cut:]...)
		}
	}
	var visitor, link, affiliate, created string
	for rows.Next() {
		if err := rows.Scan(&visitor, &link, &affiliate, &created); err != nil {
			return fmt.Errorf("load unique window: %w", err)
		}
		at, err := store.ParseDBTime(created)
		if err != nil {
			return fmt.Errorf("load unique window: click created %q: %w", created, err)
		}
		all = append(all, seen{t.unique.Key(visitor, link, affiliate), at.UnixMilli()})
		if len(all) >= 2*t.unique.Max() {
			keepNewest(t.unique.Max())
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load unique window: %w", err)
	}
	keepNewest(t.unique.Max())
	for _, s := range all {
		t.unique.Seen(s.key, s.at)
	}
	if lost != 0 {
		t.unique.Lost(lost)
	}
	return nil
}

// bindUniqueHooks keeps the unique window true to clicks written outside the click writer
// (the records API, app.Save): a created unflagged click is remembered; a changed or deleted
// one makes its keys ask the database until the window has passed.
func (t *tracker) bindUniqueHooks() {
	key := func(r *core.Record) uint64 {
		return t.unique.Key(r.GetString(collections.ClickVisitor), r.GetString(collections.FieldLink), r.GetString(collections.FieldAffiliate))
	}
	t.app.OnRecordAfterCreateSuccess(collections.Clicks).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		if r.GetString(collections.ClickFlag) == "" && r.GetString(collections.ClickVisitor) != "" {
			t.unique.Seen(key(r), r.GetDateTime(collections.FieldCreated).Time().UnixMilli())
		}
		return e.Next()
	})
	forget := func(e *core.RecordEvent) error {
		now := time.Now().UnixMilli()
		t.unique.Forget(key(e.Record), now)
		if o := e.Record.Original(); o != nil {
			t.unique.Forget(key(o), now)
		}
		return e.Next()
	}
	t.app.OnRecordAfterUpdateSuccess(collections.Clicks).BindFunc(forget)
	t.app.OnRecordAfterDeleteSuccess(collections.Clicks).BindFunc(forget)
}

// countCommitted turns a committed batch into live counter deltas.
func (t *tracker) countCommitted(rows []clickRow) {
	for _, r := range rows {
		if r.Flag != "" {
			continue
		}
		d := liveCounters{Clicks: 1}
		if r.Unique {
			d.UniqueClicks = 1
		}
		t.live.add(r.AffiliateID, d)
	}
}

// handleRedirect is GET /r/{code} as the router serves it (see directRedirects).
func (t *tracker) handleRedirect(e *core.RequestEvent) error {
	return t.redirect(e, e.Request.PathValue("code"))
}

// legacyParams are the query parameters other platforms' links carry an affiliate's code in,
// in the order they are looked at: Rewardful's via, Tapfiliate's ref and tap_a, FirstPromoter's
// fpr and fp_ref (it also reads via and ref), and the common aff. /r/?fpr=CODE answers as
// /r/CODE, so a merchant can forward an old link's query to the redirector unchanged;
// pb_public/track.js reads the same list on the merchant's pages.
var legacyParams = [...]string{"via", "ref", "fpr", "fp_ref", "tap_a", "aff"}

// LegacyCode is the first non-empty legacy parameter of query, "" when there is none.
func LegacyCode(query url.Values) string {
	for _, p := range legacyParams {
		if v := strings.TrimSpace(query.Get(p)); v != "" {
			return v
		}
	}
	return ""
}

// redirect records the click of code, then answers 302 to the destination. An empty code
// (/r/?via=CODE) takes the code from an old platform's parameter.
func (t *tracker) redirect(e *core.RequestEvent, code string) error {
	if code == "" {
		code = LegacyCode(e.Request.URL.Query())
	}
	target, err := t.resolver.resolve(strings.ToLower(code))
	if err != nil {
		return e.InternalServerError("", err)
	}
	if target == nil {
		t.metrics.redirects.unknown.Inc()
		return t.unknownDoor(e)
	}
	if target.Inactive != "" {
		t.metrics.redirects.inactive.Inc()
		return t.inactiveDoor(e, target)
	}
	query := e.Request.URL.Query()
	row := t.newClick(e, target, query.Get("sub"), e.Request.Referer(), visitorFromCookie(e))
	clickID := row.ID
	if row.Overflow {
		clickID = "" // counted, not stored: there is no click to name
	}
	location, err := target.Destination.Target(query.Get("to"), clickID)
	if err != nil {
		// The program's domains changed under the link: answer as for an unknown link, store nothing.
		t.app.Logger().Warn("link destination no longer allowed", "link", target.LinkID, "affiliate", target.AffiliateID, "error", err)
		t.metrics.redirects.unknown.Inc()
		return t.unknownDoor(e)
	}
	// The answer is ready before the click is handed over: once its batch commits, a whole
	// batch of visitors is woken at once, and each then has only its response to send.
	h := e.Response.Header()
	if !row.Overflow {
		t.setCookies(e, row, target.CookieDays)
	}
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer-when-downgrade")
	if err := t.writer.record(e.Request.Context(), row); err != nil {
		h.Del("Set-Cookie")
		h.Del("Location")
		h.Del("Referrer-Policy")
		t.metrics.redirects.unavailable.Inc()
		return unavailable(e, err)
	}
	t.metrics.redirects.recorded(&row)
	e.Response.WriteHeader(http.StatusFound)
	return nil
}

// TrackClick is the JSON track.js posts from the merchant's page, as ReadTrackClick checked
// it: Code lowercased and trimmed, Visitor "" unless it is a visitor id.
type TrackClick struct {
	Code     string `json:"code"`
	Sub      string `json:"sub"`
	Referrer string `json:"referrer"`
	Visitor  string `json:"visitor"`
}

// ReadTrackClick reads the body of POST /api/pba/clicks; the error is the 4xx to answer, naming
// the field. Redirect nodes (hooks/scaleout) read it through this too, so both answer alike.
func ReadTrackClick(e *core.RequestEvent) (TrackClick, error) {
	var body TrackClick
	raw, err := io.ReadAll(e.Request.Body)
	if err != nil {
		return body, e.BadRequestError("Could not read the body.", err)
	}
	if errs := decodeStrict(raw, &body); errs != nil {
		return body, e.BadRequestError("The body must be JSON: {\"code\": \"…\"}.", errs)
	}
	if !textcheck.Line(body.Sub) {
		return body, e.BadRequestError("Invalid click.", fieldError("sub", "invalid_characters", textcheck.Message))
	}
	body.Code = strings.ToLower(strings.TrimSpace(body.Code))
	if !ValidVisitor(body.Visitor) {
		body.Visitor = ""
	}
	return body, nil
}

// UnknownTrackCode is the answer of POST /api/pba/clicks to a code nothing resolves.
func UnknownTrackCode(e *core.RequestEvent) error {
	return e.NotFoundError("Unknown code.", fieldError("code", "unknown_code", "No link or affiliate has this code."))
}

// InactiveTrackCode is the answer to a code that credits no click: the shop keeps its visitor;
// nothing is credited, so there is no click id to keep.
func InactiveTrackCode(e *core.RequestEvent) error {
	return e.JSON(http.StatusOK, map[string]any{"click_id": nil, "reason": "inactive"})
}

// TrackClickRecorded is the answer once the click is stored: what track.js keeps in its cookies.
func TrackClickRecorded(e *core.RequestEvent, clickID, visitor string, cookieDays int) error {
	return e.JSON(http.StatusOK, map[string]any{"click_id": clickID, "visitor": visitor, "cookie_days": cookieDays})
}

// handleTrackClick is POST /api/pba/clicks: the click of a visitor who landed on the
// merchant's site with ?via=CODE, reported by track.js.
func (t *tracker) handleTrackClick(e *core.RequestEvent) error {
	body, err := ReadTrackClick(e)
	if err != nil {
		return err
	}
	target, err := t.resolver.resolve(body.Code)
	if err != nil {
		return e.InternalServerError("", err)
	}
	if target == nil {
		t.metrics.trackClicks.unknown.Inc()
		return UnknownTrackCode(e)
	}
	if target.Inactive != "" {
		t.doors.add(target.Inactive, target.ProgramID, target.AffiliateID, target.LinkID)
		t.metrics.trackClicks.inactive.Inc()
		return InactiveTrackCode(e)
	}
	row := t.newClick(e, target, body.Sub, body.Referrer, body.Visitor)
	if err := t.writer.record(e.Request.Context(), row); err != nil {
		t.metrics.trackClicks.unavailable.Inc()
		return unavailable(e, err)
	}
	t.metrics.trackClicks.recorded(&row)
	if row.Overflow {
		return OverCeiling(e, row.Created)
	}
	return TrackClickRecorded(e, row.ID, row.Visitor, target.CookieDays)
}

// newClick builds the row of one click: ids, the visitor, hashed IP, its text as stored,
// fraud flags, and whether the IP's ceiling leaves it a row (Overflow when not).
func (t *tracker) newClick(e *core.RequestEvent, target *linkTarget, sub, referrer, visitor string) clickRow {
	if !textcheck.Line(sub) {
		sub = "" // a /r/ visitor still gets through: only the sub is refused (the link's own is used)
	}
	if strings.TrimSpace(sub) == "" {
		sub = target.SubID
	}
	text := clickpolicy.ClickText{
		UserAgent: e.Request.UserAgent(),
		Referrer:  referrer,
		SubID:     sub,
		Country:   clickpolicy.Country(e.Request.Header, t.cfg.CountryHeader),
	}.Capped()
	row := clickRow{
		ID:          t.ids.Next(time.Now()),
		LinkID:      target.LinkID,
		AffiliateID: target.AffiliateID,
		ProgramID:   target.ProgramID,
		Visitor:     visitor,
		UserAgent:   text.UserAgent,
		Referrer:    text.Referrer,
		Country:     text.Country,
		SubID:       text.SubID,
		Created:     time.Now().UTC(),
	}
	row.IPHash, row.NetworkHash = t.ipHasher.HashWithNetwork(e.RealIP())
	if row.Visitor == "" {
		// A new visitor's id is its first click's id: first-click attribution finds that click
		// by primary key, and idx_clicks_visitor needs to hold returning visitors' clicks only.
		row.Visitor, row.NewVisitor = row.ID, true
	}
	t.classify(&row, t.isSelf(e, target.AffiliateID))
	return row
}

// classify sets row's fraud flag (self, bot, rate) and what the IP's hourly ceiling leaves of
// it: the decisions of this process's state, for a request here or a click a redirect node
// published (edge_ingest.go).
func (t *tracker) classify(row *clickRow, self bool) {
	var admission clickpolicy.Admission
	row.Flag, admission = t.policy.Classify(row.NetworkHash, row.LinkID, row.AffiliateID, row.UserAgent, row.Created, self)
	switch admission {
	case clickpolicy.CountOnly:
		row.Overflow = true
	case clickpolicy.StoreLean:
		// Creditable, so it keeps its row; the flooder's text is what would fill the disk.
		row.UserAgent, row.Referrer = "", ""
	}
}

// ClickClassifier decides a click's fraud flag (self, bot, rate) and what its IP's hourly
// ceiling leaves of it, from this process's state: the primary's tracker, and a redirect
// node predicting the primary's answer from what it saw itself (hooks/scaleout).
type ClickClassifier struct {
	bots    *clickpolicy.BotDetector
	limiter *clickpolicy.RateLimiter
	ceiling *clickpolicy.IPCeiling
}

// NewClickClassifier is a classifier with cfg's bot list, rate limit and ceiling.
func NewClickClassifier(cfg Config) *ClickClassifier {
	return &ClickClassifier{
		bots:    clickpolicy.NewBotDetector(cfg.BotUserAgents...),
		limiter: clickpolicy.NewRateLimiter(cfg.ClickRateLimit, rateWindow, clickpolicy.DefaultRateLimitKeys),
		ceiling: clickpolicy.NewIPCeiling(cfg.ClickIPCeiling, clickpolicy.DefaultCeilingKeys),
	}
}

// Classify flags a click of network on link (of affiliate) made at `at` ("" when clean) and
// admits it under the network's hourly ceiling; both count it.
func (c *ClickClassifier) Classify(network, link, affiliate, userAgent string, at time.Time, self bool) (string, clickpolicy.Admission) {
	flag := ""
	switch {
	case self:
		flag = collections.FlagSelf
	case c.bots.IsBot(userAgent):
		flag = collections.FlagBot
	case !c.limiter.Allow(network+"|"+link+"|"+affiliate, at):
		flag = collections.FlagRate
	}
	return flag, c.ceiling.Store(network, at, flag == "")
}

// isSelf reports whether the request comes from the link's own affiliate: signed in through
// the API, or through the portal, which sets pba_self.
func (t *tracker) isSelf(e *core.RequestEvent, affiliateID string) bool {
	if e.Auth != nil && e.Auth.Id == affiliateID {
		return true
	}
	c, err := e.Request.Cookie(SelfCookie)
	return err == nil && c.Value == affiliateID
}

// setCookies sets pba_click (and pba_vid for a new visitor), Secure when the visitor came over
// HTTPS: to this server, or to a proxy the settings trust (ServedOverHTTPS).
func (t *tracker) setCookies(e *core.RequestEvent, row clickRow, cookieDays int) {
	secure := ServedOverHTTPS(e.Request, e.App.Settings().TrustedProxy.Headers)
	SetClickCookies(e.Response.Header(), row.ID, row.Visitor, row.NewVisitor, cookieDays, secure)
}

// SetClickCookies adds the cookies of an answered redirect to h: pba_click, and pba_vid for a
// new visitor. Redirect nodes (hooks/scaleout) set them through this too. The values are ids of
// [a-z0-9] made by the caller, so the headers are written directly rather than through
// http.Cookie, whose validation and formatting cost a few percent of a redirect.
func SetClickCookies(h http.Header, clickID, visitor string, newVisitor bool, cookieDays int, tls bool) {
	attrs := "; Path=/; HttpOnly; SameSite=Lax"
	if tls {
		attrs += "; Secure"
	}
	h.Add("Set-Cookie", ClickCookie+"="+clickID+"; Max-Age="+strconv.Itoa(cookieDays*86400)+attrs)
	if newVisitor {
		h.Add("Set-Cookie", VisitorCookie+"="+visitor+"; Max-Age="+strconv.Itoa(visitorCookieDays*86400)+attrs)
	}
}

func visitorFromCookie(e *core.RequestEvent) string {
	c, err := e.Request.Cookie(VisitorCookie)
	if err != nil || !ValidVisitor(c.Value) {
		return ""
	}
	return c.Value
}

// ValidVisitor accepts the ids newRecordID makes, so a cookie cannot smuggle anything else in.
func ValidVisitor(v string) bool {
	if len(v) != 15 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func unavailable(e *core.RequestEvent, err error) error {
	e.Response.Header().Set("Retry-After", "1")
	return e.Error(http.StatusServiceUnavailable, "The click could not be recorded; please retry.", err)
}

// notFoundHTML has no inline style (the Content-Security-Policy allows none): pba.css styles it.
const notFoundHTML = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Link not found</title><link rel="stylesheet" href="/pba.css"></head>
<body class="notice"><main><h1>This link is not active</h1><p>The link you followed does not exist or is no longer active.</p></main></body></html>`

func notFoundPage(e *core.RequestEvent) error {
	WriteNotFoundPage(e.Response, e.Request, e.App.Settings().TrustedProxy.Headers)
	return nil
}

// WriteNotFoundPage answers the styled 404 page of an unknown code, with the router's security
// headers; trustedProxyHeaders says whether X-Forwarded-Proto may be believed (HSTS). Redirect
// nodes (hooks/scaleout) answer it through this too.
func WriteNotFoundPage(w http.ResponseWriter, r *http.Request, trustedProxyHeaders []string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	// The router's security headers, for the one page the direct /r/ path renders.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	setSecurityHeaders(h, r, trustedProxyHeaders)
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, notFoundHTML)
}

// loadIPSalt returns the configured salt, or the one stored in the data dir (made on first use).
func loadIPSalt(configured, dataDir string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	path := filepath.Join(dataDir, ipSaltFile)
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read IP salt: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("make IP salt: %w", err)
	}
	salt := []byte(hex.EncodeToString(raw))
	if err := os.WriteFile(path, salt, 0o600); err != nil {
		return nil, fmt.Errorf("store IP salt: %w", err)
	}
	return salt, nil
}
