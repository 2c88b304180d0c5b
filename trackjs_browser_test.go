package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The browser test gives the two sides of track.js their own sites, as in production: the shop
// that includes the script and the pbaffiliate server it posts to. Chromium maps both names to
// loopback (--host-resolver-rules), so cookies and CORS see two origins on two hosts.
const (
	shopHost      = "shop.test"       // the merchant's site
	otherShopHost = "other-shop.test" // a merchant the restricted server does not allow
	partnersHost  = "partners.test"   // the pbaffiliate server
)

// desktopUA is an ordinary Chrome user agent: HeadlessChrome's own is (rightly) flagged as a bot.
const desktopUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"

// chromiumPath finds Chromium. Without it the test is skipped on a developer machine and fails
// in CI (CI=true), where .ci/run installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, candidate := range []string{os.Getenv("PBA_CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if candidate == "" {
			continue
		}
		if p, err := exec.LookPath(candidate); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI=true): .ci/run installs the Debian package chromium")
	}
	t.Skip("chromium is not installed (apt-get install chromium); set CI=true to make this a failure")
	return ""
}

// TestTrackJSInBrowser drives real headless Chromium through pb_public/track.js as the README
// tells a merchant to use it: a shop page on its own origin includes the script from the real
// pbaffiliate binary and is opened with ?via= or ?ref=.
func TestTrackJSInBrowser(t *testing.T) {
	execPath := chromiumPath(t)

	// Demo data: approved affiliates (ada-lovelace, with link ada-lovelace-blog) in an active
	// program, and a pending one (katherine-johnson).
	dir := t.TempDir()
	if out, err := runProgram(t, "demo --days=0 --dir="+dir).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}

	// The merchant's site: /a/ includes track.js from the default server (CORS origins "*"),
	// /b/ from the server that allows only http://shop.test:PORT.
	shopListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	shopPort := fmt.Sprint(shopListener.Addr().(*net.TCPAddr).Port)

	// The demo program's redirects land on the shop page (set before the server caches codes).
	setup := openDB(t, dir)
	if _, err := setup.Exec(`UPDATE programs SET destination = ?, allowed_domains = ? WHERE id = (SELECT program FROM affiliates WHERE code = 'ada-lovelace')`,
		"http://"+shopHost+":"+shopPort+"/a/landing?campaign=spring", `["`+shopHost+`"]`); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	// An affiliate imported from FirstPromoter, whose old links carry ?fpr=Dora_FP (not one of
	// our codes: the import keeps it as a legacy code).
	fpFile := filepath.Join(t.TempDir(), "firstpromoter.csv")
	if err := os.WriteFile(fpFile, []byte("email,first_name,last_name,state,default_ref_id\ndora@example.com,Dora,Fp,accepted,Dora_FP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runProgram(t, "import --from firstpromoter --dir="+dir+" "+fpFile).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}

	// A copy for the second server, which allows one origin only: two servers never share a database.
	restrictedDir := t.TempDir()
	copyDataDir(t, dir, restrictedDir)
	addrA, addrB := freeAddr(t), freeAddr(t)
	partnersA := "http://" + partnersHost + ":" + portOf(addrA)
	partnersB := "http://" + partnersHost + ":" + portOf(addrB)
	shopOrigin := "http://" + shopHost + ":" + shopPort
	otherShopOrigin := "http://" + otherShopHost + ":" + shopPort

	startServer(t, fmt.Sprintf("serve --http=%s --dir=%s", addrA, dir), addrA)
	startServer(t, fmt.Sprintf("serve --http=%s --dir=%s --origins=%s", addrB, restrictedDir, shopOrigin), addrB)

	checkouts := make(chan string, 16)
	shop := httptest.NewUnstartedServer(shopHandler(map[string]string{"/a/": partnersA, "/b/": partnersB}, checkouts))
	shop.Listener.Close()
	shop.Listener = shopListener
	shop.Start()
	t.Cleanup(shop.Close)

	db := openDB(t, dir)
	dbB := openDB(t, restrictedDir)
	var adaID, blogLinkID, programID string
	var cookieDays int
	if err := db.QueryRow(`SELECT id, program FROM affiliates WHERE code = 'ada-lovelace' AND status = 'approved'`).Scan(&adaID, &programID); err != nil {
		t.Fatalf("demo affiliate: %v", err)
	}
	if err := db.QueryRow(`SELECT id FROM links WHERE code = 'ada-lovelace-blog' AND affiliate = ?`, adaID).Scan(&blogLinkID); err != nil {
		t.Fatalf("demo link: %v", err)
	}
	if err := db.QueryRow(`SELECT cookie_days FROM programs WHERE id = ? AND active = 1`, programID).Scan(&cookieDays); err != nil {
		t.Fatalf("demo program: %v", err)
	}

	browser := startBrowser(t, execPath)

	t.Run("via", func(t *testing.T) {
		before := countClicks(t, db)
		p := openShop(t, browser, shopOrigin+"/a/?via=ada-lovelace&sub=spring")
		if p.State.Ready == "" || p.State.ClickID != p.State.Ready {
			t.Fatalf("pbaffiliate.ready = %q, clickId() = %q: want the recorded click id", p.State.Ready, p.State.ClickID)
		}
		clickID := p.State.Ready
		if got := countClicks(t, db); got != before+1 {
			t.Fatalf("clicks: %d, want %d", got, before+1)
		}
		c := loadClick(t, db, clickID)
		if c.Affiliate != adaID || c.Program != programID || c.SubID != "spring" || c.Flag != "" || c.UserAgent != desktopUA || c.IPHash == "" {
			t.Fatalf("stored click %+v: want affiliate %s, program %s, sub_id spring, no flag, the browser's user agent", c, adaID, programID)
		}

		// The first-party cookies on the shop's own host, readable by its checkout code.
		if got := cookieValue(p.State.DocumentCookie, "pba_click"); got != clickID {
			t.Fatalf("document.cookie = %q: pba_click %q, want %q", p.State.DocumentCookie, got, clickID)
		}
		if got := cookieValue(p.State.DocumentCookie, "pba_vid"); got == "" || got != c.Visitor {
			t.Fatalf("document.cookie = %q: pba_vid %q, want the stored visitor %q", p.State.DocumentCookie, got, c.Visitor)
		}
		ck := findCookie(p.ShopCookies, "pba_click")
		if ck == nil || ck.Value != clickID || ck.Domain != shopHost || ck.Path != "/" || ck.HTTPOnly || ck.SameSite != network.CookieSameSiteLax {
			t.Fatalf("shop cookie pba_click = %+v: want %s on host %s, path /, SameSite=Lax, readable by scripts", ck, clickID, shopHost)
		}
		if lifetime := time.Until(time.Unix(int64(ck.Expires), 0)); lifetime < time.Duration(cookieDays)*24*time.Hour-time.Hour || lifetime > time.Duration(cookieDays)*24*time.Hour+time.Hour {
			t.Fatalf("pba_click expires in %v, want the program's cookie_days (%d days)", lifetime, cookieDays)
		}
		if got := cookiesFor(t, p.Ctx, partnersA+"/"); len(got) != 0 {
			t.Fatalf("the pbaffiliate host got cookies %+v: track.js posts without credentials", got)
		}

		// The cross-origin POST went through CORS (a JSON body needs a preflight) and succeeded.
		post := p.Net.find("POST", partnersA+"/api/pba/clicks")
		if post == nil || post.Status != http.StatusOK || post.Failed != "" {
			t.Fatalf("POST /api/pba/clicks: %+v\nrequests: %s", post, p.Net)
		}
		if pre := p.Net.find("OPTIONS", partnersA+"/api/pba/clicks"); pre == nil || pre.Status != http.StatusNoContent {
			t.Fatalf("CORS preflight: %+v, want OPTIONS answered 204\nrequests: %s", pre, p.Net)
		}

		// The README's checkout snippet sends the click id to the shop's server.
		ref, err := chromedp.Run(p.Ctx, chromedp.Evaluate[string](checkoutJS, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("checkout snippet: %v", err)
		}
		if ref != clickID {
			t.Fatalf("checkout snippet sent client_reference_id %q, want %q", ref, clickID)
		}
		select {
		case got := <-checkouts:
			if got != clickID {
				t.Fatalf("shop server received pba_click %q, want %q", got, clickID)
			}
		default:
			t.Fatal("the shop server received no checkout request")
		}

		// A second landing in the same browser keeps the visitor.
		p2 := openShopIn(t, p.Ctx, p.Net, shopOrigin+"/a/?via=ada-lovelace")
		second := loadClick(t, db, p2.State.Ready)
		if second.Visitor != c.Visitor || p2.State.Ready == clickID {
			t.Fatalf("second click %+v: want a new click id for the same visitor %s", second, c.Visitor)
		}
	})

	t.Run("ref link code", func(t *testing.T) {
		before := countClicks(t, db)
		p := openShop(t, browser, shopOrigin+"/a/?ref=Ada-Lovelace-Blog")
		if p.State.Ready == "" || cookieValue(p.State.DocumentCookie, "pba_click") != p.State.Ready {
			t.Fatalf("ready %q, document.cookie %q: want the click id in pba_click", p.State.Ready, p.State.DocumentCookie)
		}
		if got := countClicks(t, db); got != before+1 {
			t.Fatalf("clicks: %d, want %d", got, before+1)
		}
		if c := loadClick(t, db, p.State.Ready); c.Affiliate != adaID || c.Link != blogLinkID {
			t.Fatalf("stored click %+v: want link %s of affiliate %s", c, blogLinkID, adaID)
		}
	})

	// A landing on the merchant's site with another platform's parameter credits the
	// imported affiliate whose legacy code it is.
	t.Run("legacy fpr", func(t *testing.T) {
		p := openShop(t, browser, shopOrigin+"/a/landing?fpr=Dora_FP")
		if p.State.Ready == "" || cookieValue(p.State.DocumentCookie, "pba_click") != p.State.Ready {
			t.Fatalf("ready %q, document.cookie %q: want the click id in pba_click", p.State.Ready, p.State.DocumentCookie)
		}
		var doraID string
		if err := db.QueryRow(`SELECT id FROM affiliates WHERE email = 'dora@example.com'`).Scan(&doraID); err != nil {
			t.Fatal(err)
		}
		if c := loadClick(t, db, p.State.Ready); c.Affiliate != doraID || c.Link != "" {
			t.Fatalf("stored click %+v: want affiliate %s (Dora, imported)", c, doraID)
		}
	})

	// The redirector's flow: /r/{code} records the click and lands on the shop with
	// ?pba_click=<id>; track.js keeps that id for the checkout and records nothing more.
	t.Run("redirect then shop", func(t *testing.T) {
		before := countClicks(t, db)
		p := openShop(t, browser, partnersA+"/r/ada-lovelace?sub=newsletter")
		clickID := p.State.Ready
		if clickID == "" || p.State.ClickID != clickID || cookieValue(p.State.DocumentCookie, "pba_click") != clickID {
			t.Fatalf("state %+v: want the pba_click of the redirect in pbaffiliate.ready, clickId() and the shop's cookie\nrequests: %s", p.State, p.Net)
		}
		if got := countClicks(t, db); got != before+1 {
			t.Fatalf("clicks: %d, want %d (the redirect's click only)", got, before+1)
		}
		if c := loadClick(t, db, clickID); c.Affiliate != adaID || c.SubID != "newsletter" {
			t.Fatalf("stored click %+v: want affiliate %s, sub_id newsletter", c, adaID)
		}
		if post := p.Net.find("POST", partnersA+"/api/pba/clicks"); post != nil {
			t.Fatalf("track.js posted the redirected click again: %+v", post)
		}
		ck := findCookie(p.ShopCookies, "pba_click")
		if ck == nil || ck.Domain != shopHost || ck.HTTPOnly {
			t.Fatalf("shop cookie pba_click = %+v: want it on host %s, readable by scripts", ck, shopHost)
		}
		// The landing does not carry the program's cookie_days: the id is kept as long as
		// browsers allow (400 days), and the server applies the program's window.
		if lifetime := time.Until(time.Unix(int64(ck.Expires), 0)); lifetime < 399*24*time.Hour || lifetime > 401*24*time.Hour {
			t.Fatalf("pba_click of a redirect landing expires in %v, want 400 days", lifetime)
		}
	})

	for _, tc := range []struct {
		name, query string
		status      int64
	}{
		{"unknown code", "?via=no-such-code", http.StatusNotFound},
		// An inactive code answers {"click_id": null, "reason": "inactive"}: nothing to keep.
		{"pending affiliate", "?ref=katherine-johnson", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countClicks(t, db)
			p := openShop(t, browser, shopOrigin+"/a/"+tc.query)
			if p.State.Ready != "" || p.State.ClickID != "" || p.State.DocumentCookie != "" || len(p.ShopCookies) != 0 {
				t.Fatalf("state %+v, cookies %+v: want no click id and no cookie", p.State, p.ShopCookies)
			}
			if got := countClicks(t, db); got != before {
				t.Fatalf("clicks: %d, want %d (nothing stored)", got, before)
			}
			// The server answered and the browser let the page read it: CORS on errors too.
			if post := p.Net.find("POST", partnersA+"/api/pba/clicks"); post == nil || post.Status != tc.status || post.Failed != "" {
				t.Fatalf("POST /api/pba/clicks: %+v, want a readable %d\nrequests: %s", post, tc.status, p.Net)
			}
		})
	}

	for _, tc := range []struct{ name, query string }{
		{"no via or ref", ""},
		{"other parameters", "?utm_source=newsletter&page=2"},
		{"malformed code", "?via=%3Cscript%3E"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countClicks(t, db)
			p := openShop(t, browser, shopOrigin+"/a/"+tc.query)
			if p.State.Ready != "" || p.State.ClickID != "" || p.State.DocumentCookie != "" {
				t.Fatalf("state %+v: want no click id and no cookie", p.State)
			}
			if got := countClicks(t, db); got != before {
				t.Fatalf("clicks: %d, want %d", got, before)
			}
			if reqs := p.Net.to(partnersA); len(reqs) != 1 || !strings.HasSuffix(reqs[0].URL, "/track.js") {
				t.Fatalf("requests to the pbaffiliate server: %s; want only track.js", p.Net)
			}
		})
	}

	// CORS enforced by the browser: the server started with --origins allows shop.test only.
	t.Run("cors allowed origin", func(t *testing.T) {
		before := countClicks(t, dbB)
		p := openShop(t, browser, shopOrigin+"/b/?via=ada-lovelace")
		if p.State.Ready == "" || cookieValue(p.State.DocumentCookie, "pba_click") != p.State.Ready {
			t.Fatalf("state %+v: want a recorded click from the allowed origin\nrequests: %s", p.State, p.Net)
		}
		if got := countClicks(t, dbB); got != before+1 {
			t.Fatalf("clicks: %d, want %d", got, before+1)
		}
	})
	t.Run("cors other origin", func(t *testing.T) {
		before := countClicks(t, dbB)
		p := openShop(t, browser, otherShopOrigin+"/b/?via=ada-lovelace")
		if !p.State.Loaded {
			t.Fatal("track.js did not load on the other origin (a <script> is not subject to CORS)")
		}
		if p.State.Ready != "" || p.State.DocumentCookie != "" {
			t.Fatalf("state %+v: the browser must withhold the answer from a disallowed origin", p.State)
		}
		if got := countClicks(t, dbB); got != before {
			t.Fatalf("clicks: %d, want %d: the preflight must stop the POST", got, before)
		}
		blocked := false
		for _, r := range p.Net.to(partnersB) {
			blocked = blocked || (strings.HasSuffix(r.URL, "/api/pba/clicks") && r.CORSError != "")
		}
		if !blocked {
			t.Fatalf("no CORS error reported for /api/pba/clicks\nrequests: %s", p.Net)
		}
		t.Logf("blocked as expected: %s", p.Net)
	})
}

// checkoutJS is the README's checkout snippet, returning what the shop's server received.
const checkoutJS = `(async () => {
  await pbaffiliate.ready;
  const session = await fetch("/create-checkout-session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ pba_click: pbaffiliate.clickId() }),
  }).then((r) => r.json());
  return session.client_reference_id;
})()`

// stateJS waits for the async script, then for pbaffiliate.ready, and reports what the page sees.
const stateJS = `(async () => {
  for (let i = 0; i < 400 && !window.pbaffiliate; i++) await new Promise((r) => setTimeout(r, 25));
  if (!window.pbaffiliate) return { origin: location.origin, loaded: false, ready: "", clickId: "", documentCookie: document.cookie };
  const ready = await window.pbaffiliate.ready;
  return { origin: location.origin, loaded: true, ready: ready, clickId: window.pbaffiliate.clickId(), documentCookie: document.cookie };
})()`

type pageState struct {
	Origin         string `json:"origin"` // of the page after redirects
	Loaded         bool   `json:"loaded"`
	Ready          string `json:"ready"`
	ClickID        string `json:"clickId"`
	DocumentCookie string `json:"documentCookie"`
}

type shopPage struct {
	Ctx         context.Context
	Net         *netLog
	State       pageState
	ShopCookies []*network.Cookie // of the page's origin, as the browser keeps them
}

// openShop opens url in a new, empty browser context (its own cookie jar).
func openShop(t *testing.T, browser context.Context, url string) shopPage {
	t.Helper()
	requests := &netLog{}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(requests.listen))
	t.Cleanup(cancel)
	// Open the tab with ctx itself: the first run binds the tab's life to its context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new tab: %v", err)
	}
	return openShopIn(t, ctx, requests, url)
}

// openShopIn navigates the tab of ctx to url and reads the page's state and cookies.
func openShopIn(t *testing.T, ctx context.Context, requests *netLog, url string) shopPage {
	t.Helper()
	step, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(step, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	state, err := chromedp.Run(step, chromedp.Evaluate[pageState](stateJS, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("page state: %v", err)
	}
	// A page that sends nothing has nothing to wait for: give a stray request time to show.
	time.Sleep(200 * time.Millisecond)
	p := shopPage{Ctx: ctx, Net: requests, State: state}
	p.ShopCookies = cookiesFor(t, step, state.Origin+"/")
	return p
}

func cookiesFor(t *testing.T, ctx context.Context, url string) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		t.Fatalf("cookies of %s: %v", url, err)
	}
	return res.Cookies
}

func findCookie(cookies []*network.Cookie, name string) *network.Cookie {
	for _, c := range cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// cookieValue reads one cookie from a document.cookie string.
func cookieValue(documentCookie, name string) string {
	for _, part := range strings.Split(documentCookie, "; ") {
		if k, v, ok := strings.Cut(part, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// netLog records the tab's requests from the DevTools network events.
type netLog struct {
	mu   sync.Mutex
	reqs []*netRequest
	byID map[network.RequestID]*netRequest
}

type netRequest struct {
	Method, URL, Type string
	Status            int64
	Failed, CORSError string
}

func (l *netLog) listen(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byID == nil {
		l.byID = map[network.RequestID]*netRequest{}
	}
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		r := &netRequest{Method: ev.Request.Method, URL: ev.Request.URL, Type: string(ev.Type)}
		l.reqs = append(l.reqs, r)
		l.byID[ev.RequestID] = r
	case *network.EventResponseReceived:
		if r := l.byID[ev.RequestID]; r != nil {
			r.Status = ev.Response.Status
		}
	case *network.EventLoadingFailed:
		if r := l.byID[ev.RequestID]; r != nil {
			r.Failed = ev.ErrorText
			if ev.CorsErrorStatus != nil {
				r.CORSError = string(ev.CorsErrorStatus.CorsError)
			}
		}
	}
}

// to returns copies of the requests whose URL starts with prefix.
func (l *netLog) to(prefix string) []netRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []netRequest
	for _, r := range l.reqs {
		if strings.HasPrefix(r.URL, prefix) {
			out = append(out, *r)
		}
	}
	return out
}

func (l *netLog) find(method, url string) *netRequest {
	for _, r := range l.to(url) {
		if r.Method == method && r.URL == url {
			return &r
		}
	}
	return nil
}

func (l *netLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.reqs {
		fmt.Fprintf(&b, "\n  %s %s [%s] %d %s %s", r.Method, r.URL, r.Type, r.Status, r.Failed, r.CORSError)
	}
	return b.String()
}

// startBrowser starts headless Chromium with both test host names mapped to loopback. The
// whole browser lives at most two minutes; a hung page fails the test instead of the run.
func startBrowser(t *testing.T, execPath string) context.Context {
	t.Helper()
	return launchBrowser(t, execPath, 2*time.Minute,
		chromedp.Flag("host-resolver-rules", fmt.Sprintf("MAP %s 127.0.0.1, MAP %s 127.0.0.1, MAP %s 127.0.0.1", shopHost, otherShopHost, partnersHost)))
}

// launchBrowser starts headless Chromium with the flags this machine needs (no sandbox as root,
// no background connections on a closed network), a fresh profile (chromedp makes a new
// --user-data-dir and removes it when the browser ends) and extra options, for at most lifetime.
func launchBrowser(t *testing.T, execPath string, lifetime time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserAgent(desktopUA),
	)
	opts = append(opts, extra...)
	timeout, cancelTimeout := context.WithTimeout(context.Background(), lifetime)
	alloc, cancelAlloc := chromedp.NewExecAllocator(timeout, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser process to exit
		cancelTimeout()
	})
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium %s: %v", execPath, err)
	}
	return browser
}

// shopHandler is the merchant's site: a page per prefix that includes track.js from that
// pbaffiliate server, and the checkout endpoint of the README's snippet.
func shopHandler(servers map[string]string, checkouts chan<- string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /create-checkout-session", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			PBAClick string `json:"pba_click"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		checkouts <- body.PBAClick
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"id": "cs_test_1", "client_reference_id": body.PBAClick})
	})
	for prefix, server := range servers {
		page := `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="` + server + `/track.js" async></script></head><body><h1>Shop</h1></body></html>`
		mux.HandleFunc("GET "+prefix, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, page)
		})
	}
	mux.HandleFunc("GET /favicon.ico", http.NotFound)
	return mux
}

func startServer(t *testing.T, args, addr string) {
	t.Helper()
	cmd := runProgram(t, args)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("server %s output:\n%s", addr, out.String())
		}
	})
	waitHealthy(t, "http://"+addr)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func copyDataDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func openDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "data.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func countClicks(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM clicks`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type storedClick struct {
	Link, Affiliate, Program, Visitor, SubID, Flag, UserAgent, IPHash string
}

func loadClick(t *testing.T, db *sql.DB, id string) storedClick {
	t.Helper()
	var c storedClick
	err := db.QueryRow(`SELECT link, affiliate, program, visitor, sub_id, flag, user_agent, ip_hash FROM clicks WHERE id = ?`, id).
		Scan(&c.Link, &c.Affiliate, &c.Program, &c.Visitor, &c.SubID, &c.Flag, &c.UserAgent, &c.IPHash)
	if err != nil {
		t.Fatalf("click %q: %v", id, err)
	}
	return c
}
