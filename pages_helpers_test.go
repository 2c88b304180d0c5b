package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Helpers of the page tests (pages_browser_test.go): a browser tab driven through the DOM, with
// the page's console errors and uncaught exceptions kept for the failure message.

// startPagesBrowser starts headless Chromium like startBrowser (trackjs_browser_test.go), with
// the window and the time a walk through both pages needs.
func startPagesBrowser(t *testing.T, execPath string) context.Context {
	t.Helper()
	return launchBrowser(t, execPath, 8*time.Minute, chromedp.WindowSize(1200, 900))
}

// pageTab is one tab in its own browser context (own localStorage and cookies).
type pageTab struct {
	t   *testing.T
	ctx context.Context
	mu  sync.Mutex
	log []string // console errors and uncaught exceptions
}

func openTab(t *testing.T, browser context.Context) *pageTab {
	t.Helper()
	p := &pageTab{t: t}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(p.listen))
	t.Cleanup(cancel)
	// The pages run under a strict Content-Security-Policy (hooks.ContentSecurityPolicy): a
	// blocked script, style or connection is reported like an uncaught exception.
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `document.addEventListener("securitypolicyviolation", (e) => ` +
			`setTimeout(() => { throw new Error("CSP violation: " + e.violatedDirective + " " + e.blockedURI); }))`,
	})
	if err != nil {
		t.Fatalf("new tab: %v", err)
	}
	p.ctx = ctx
	return p
}

func (p *pageTab) listen(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			p.log = append(p.log, string(ev.Type)+": "+strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		text := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			text += " " + ev.ExceptionDetails.Exception.Description
		}
		p.log = append(p.log, "exception: "+text)
	}
}

// exceptions are the uncaught script errors seen so far.
func (p *pageTab) exceptions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.log {
		if strings.HasPrefix(l, "exception: ") {
			out = append(out, l)
		}
	}
	return out
}

func (p *pageTab) diagnostics() string {
	p.mu.Lock()
	log := strings.Join(p.log, "\n  ")
	p.mu.Unlock()
	text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return "\npage text:\n" + text + "\nconsole:\n  " + log
}

func (p *pageTab) navigate(url string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("open %s: %v", url, err)
	}
}

func pageEval[T any](p *pageTab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v%s", expr, err, p.diagnostics())
	}
	return v
}

// waitFor polls the JavaScript condition cond until it is true.
func (p *pageTab) waitFor(what, cond string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s (%s): %v%s", what, cond, err, p.diagnostics())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// typeInto focuses the field and types text as a user would (after clearing it).
func (p *pageTab) typeInto(selector, text string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	pageEval[bool](p, `(() => { const el = document.querySelector(`+strconv.Quote(selector)+`); el.value = ""; return true; })()`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(selector), text, chromedp.NodeVisible)); err != nil {
		p.t.Fatalf("type into %s: %v%s", selector, err, p.diagnostics())
	}
}

// setValue sets a field's value as a person's edit would end: input and change events that
// bubble (Svelte delegates them to the document).
func (p *pageTab) setValue(selector, value string) {
	p.t.Helper()
	pageEval[bool](p, `(() => { const el = document.querySelector(`+strconv.Quote(selector)+`); el.value = `+strconv.Quote(value)+`;
		el.dispatchEvent(new Event("input", {bubbles: true})); el.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`)
}

func (p *pageTab) click(selector string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	// A click lands where the element was when its box was read: wait (up to 2 s) until the
	// box stops moving, so a layout still settling (data arriving, a banner appearing) does not
	// send the click to whatever moved under that point.
	box := `JSON.stringify(document.querySelector(` + strconv.Quote(selector) + `)?.getBoundingClientRect() ?? null)`
	last := ""
	for settle := time.Now().Add(2 * time.Second); time.Now().Before(settle); time.Sleep(40 * time.Millisecond) {
		now := pageEval[string](p, box)
		if now == last && now != "null" {
			break
		}
		last = now
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector), chromedp.NodeVisible)); err != nil {
		p.t.Fatalf("click %s: %v%s", selector, err, p.diagnostics())
	}
}

func (p *pageTab) text(selector string) string {
	p.t.Helper()
	return pageEval[string](p, `(document.querySelector(`+strconv.Quote(selector)+`) || {}).textContent || ""`)
}

func (p *pageTab) attr(selector, name string) string {
	p.t.Helper()
	return pageEval[string](p, `(document.querySelector(`+strconv.Quote(selector)+`) || {getAttribute() { return "" }}).getAttribute(`+strconv.Quote(name)+`) || ""`)
}

// phoneOverflow lists (up to five) elements that reach past the window's right edge and are
// not inside an element that scrolls or clips sideways; "" when the page fits.
const phoneOverflow = `(() => {
	if (document.documentElement.scrollWidth <= innerWidth) return "";
	const out = [];
	for (const el of document.querySelectorAll("body *")) {
		const r = el.getBoundingClientRect();
		if (r.width === 0 || r.right <= innerWidth + 1) continue;
		// An absolutely positioned element is clipped only by a scroller that contains it:
		// one that is positioned itself, or has a positioned element between them.
		let clipped = false;
		let absolute = ["absolute", "fixed"].includes(getComputedStyle(el).position);
		for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
			const style = getComputedStyle(p);
			if (absolute && style.position === "static") continue;
			absolute = false;
			if (["auto", "scroll", "hidden", "clip"].includes(style.overflowX)) { clipped = true; break; }
		}
		if (!clipped) out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "") + " (" + Math.round(r.right) + " px)");
		if (out.length === 5) break;
	}
	return out.join(", ") || "the page (" + document.documentElement.scrollWidth + " px)";
})()`

// screenshots saves PNGs of the whole page at desktop width (1200px) and at a phone's 390px as
// <name>-1200.png and <name>-390.png, in $PBA_SCREENSHOTS when set (to look at), else in a
// temporary directory, then gives the tab its window size back.
func (p *pageTab) screenshots(name string) {
	p.t.Helper()
	dir := os.Getenv("PBA_SCREENSHOTS")
	if dir == "" {
		dir = p.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	defer chromedp.Do(p.ctx, chromedp.ResetViewport())
	for _, width := range []int64{1200, 390} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900)); err != nil {
			p.t.Fatalf("viewport %d: %v", width, err)
		}
		time.Sleep(300 * time.Millisecond) // layout and the figures' flash
		if width == 390 {
			// A phone never scrolls the page sideways: name what sticks out (outside the
			// tables' own scrolling wrappers).
			if wide := pageEval[string](p, phoneOverflow); wide != "" {
				p.t.Errorf("%s is wider than a 390 px phone: %s", name, wide)
			}
		}
		height := min(max(pageEval[int64](p, `document.documentElement.scrollHeight`), 900), 8000)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
			p.t.Fatalf("viewport %dx%d: %v", width, height, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			p.t.Fatalf("screenshot %s at %dpx: %v", name, width, err)
		}
		file := filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, width))
		if err := os.WriteFile(file, png, 0o644); err != nil {
			p.t.Fatal(err)
		}
		p.t.Logf("screenshot: %s", file)
	}
}

// hitRedirect is a visitor following a tracking link (not the browser under test, so the portal's
// pba_self cookie does not flag it): it must answer the 302 of a recorded click.
func hitRedirect(t *testing.T, url string) {
	t.Helper()
	redirectLocation(t, url)
}

// redirectLocation follows nothing: it returns where a 302 from url points.
func redirectLocation(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("User-Agent", desktopUA)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: %d, want 302", url, res.StatusCode)
	}
	return res.Header.Get("Location")
}

// formatMinor is the pages' money format for a two-decimal currency: 1,234.56 USD.
func formatMinor(minor int64, currency string) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	digits := fmt.Sprintf("%03d", minor)
	whole, frac := digits[:len(digits)-2], digits[len(digits)-2:]
	return sign + groupThousands(whole) + "." + frac + " " + strings.ToUpper(currency)
}

func groupThousands(digits string) string {
	var b strings.Builder
	for i, r := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
