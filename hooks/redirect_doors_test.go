package hooks_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// doorKey is one inactive_redirects counter: reason/affiliate/link.
type doorKey struct{ reason, affiliate, link string }

// inactiveCounts reads inactive_redirects once the counters flushed to want (at most a few
// seconds: the counter is written in the background) and returns what is stored.
func (c *clickEnv) inactiveCounts(want map[doorKey]int) map[doorKey]int {
	c.t.Helper()
	var got map[doorKey]int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var rows []struct {
			Reason, Affiliate, Link, Program, Day string
			Count                                 int
		}
		err := c.app.DB().NewQuery("SELECT reason, affiliate, link, program, day, count FROM " + collections.InactiveRedirects).All(&rows)
		if err != nil {
			c.t.Fatal(err)
		}
		got = map[doorKey]int{}
		for _, r := range rows {
			if r.Day != time.Now().UTC().Format(time.DateOnly) {
				c.t.Fatalf("counter day %q, want today (UTC)", r.Day)
			}
			got[doorKey{r.Reason, r.Affiliate, r.Link}] += r.Count
		}
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			return got
		}
	}
}

// statsClicks is the sum of stats_daily's clicks.
func (c *clickEnv) statsClicks() int {
	c.t.Helper()
	var n int
	if err := c.app.DB().NewQuery("SELECT IFNULL(SUM(clicks), 0) FROM stats_daily").Row(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// TestRedirectDoors: the visitor of a link that credits no click (affiliate pending,
// suspended or rejected; link archived; program inactive) is still sent to the program's
// destination, and only a separate counter remembers it: no click row, no cookie, no
// stats_daily click.
func TestRedirectDoors(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	links, err := env.app.FindCollectionByNameOrId(collections.Links)
	if err != nil {
		t.Fatal(err)
	}
	record := core.NewRecord(links)
	record.Load(map[string]any{"affiliate": fx.Pending.ID, "program": fx.ProgramP, "code": "pending-p-spring"})
	if err := env.app.Save(record); err != nil {
		t.Fatal(err)
	}
	pendingLink := record.Id
	linkB := env.linkID("affiliate-b-main")
	clicksBefore, statsBefore := len(env.clicks("")), env.statsClicks()

	// door asserts one click through path sends the visitor on uncredited.
	door := func(path string, mutate ...func(*http.Request)) {
		t.Helper()
		res := env.get(path, mutate...)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "https://example.com/" {
			t.Fatalf("%s: %d %q, want 302 to the program's destination", path, res.StatusCode, res.Header.Get("Location"))
		}
		if cookies := res.Header.Values("Set-Cookie"); len(cookies) != 0 || res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: cookies %v, Cache-Control %q; want none and no-store", path, cookies, res.Header.Get("Cache-Control"))
		}
	}
	want := map[doorKey]int{}

	door("/r/pending-p")
	door("/r/pending-p-spring")
	door("/r/PENDING-P-SPRING?to=" + url.QueryEscape("https://evil.example/"))
	want[doorKey{collections.InactiveAffiliatePending, fx.Pending.ID, ""}] = 1
	want[doorKey{collections.InactiveAffiliatePending, fx.Pending.ID, pendingLink}] = 2

	env.save(collections.Affiliates, fx.B.ID, map[string]any{"status": collections.AffiliateSuspended})
	door("/r/affiliate-b")
	door("/r/affiliate-b-main")
	// Through the router (an auth token sends it there) the door is the same.
	door("/r/affiliate-b-main", func(r *http.Request) { r.Header.Set("Authorization", fx.A.Token) })
	want[doorKey{collections.InactiveAffiliateSuspended, fx.B.ID, ""}] = 1
	want[doorKey{collections.InactiveAffiliateSuspended, fx.B.ID, linkB}] = 2

	env.save(collections.Affiliates, fx.Pending.ID, map[string]any{"status": collections.AffiliateRejected})
	door("/r/pending-p")
	want[doorKey{collections.InactiveAffiliateRejected, fx.Pending.ID, ""}] = 1

	// An archived link keeps its affiliate's own code working.
	env.save(collections.Links, fx.RowsA.Link, map[string]any{collections.LinkArchived: true})
	door("/r/" + linkA)
	want[doorKey{collections.InactiveLinkArchived, fx.A.ID, fx.RowsA.Link}] = 1
	if res := env.get("/r/affiliate-a"); res.StatusCode != http.StatusFound || cookie(res, hooks.ClickCookie) == nil {
		t.Fatalf("approved affiliate's code beside an archived link: %d, want a credited click", res.StatusCode)
	}
	if got := len(env.clicks("")) - clicksBefore; got != 1 {
		t.Fatalf("%d clicks stored, want only the affiliate code's one", got)
	}

	env.save(collections.Programs, fx.ProgramP, map[string]any{"active": false})
	door("/r/affiliate-a")
	door("/r/" + linkA) // the program comes first: archived or not, it is off
	want[doorKey{collections.InactiveProgram, fx.A.ID, ""}] = 1
	want[doorKey{collections.InactiveProgram, fx.A.ID, fx.RowsA.Link}] = 1

	if got := len(env.clicks("")) - clicksBefore; got != 1 {
		t.Fatalf("%d clicks stored, want only the one credited click", got)
	}
	if got := env.statsClicks() - statsBefore; got != 1 {
		t.Fatalf("stats_daily clicks grew by %d, want only the one credited click", got)
	}
	if got := env.inactiveCounts(want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inactive_redirects = %v, want %v", got, want)
	}
	// Unarchiving (with the program back on) credits clicks again.
	env.save(collections.Programs, fx.ProgramP, map[string]any{"active": true})
	env.save(collections.Links, fx.RowsA.Link, map[string]any{collections.LinkArchived: false})
	if res := env.get("/r/" + linkA); res.StatusCode != http.StatusFound || cookie(res, hooks.ClickCookie) == nil {
		t.Fatalf("unarchived link: %d, want a credited click", res.StatusCode)
	}
}

// TestRedirectUnknownCode: an unknown code answers the 404 page, or with PBA_FALLBACK_URL a
// 302 to exactly that URL; neither stores a click, and no query parameter can choose where
// the visitor goes.
func TestRedirectUnknownCode(t *testing.T) {
	evil := "/r/no-such-code?to=" + url.QueryEscape("https://evil.example/")
	env := newClickEnv(t, fx.Config)
	before := len(env.clicks(""))
	for _, path := range []string{"/r/no-such-code", evil, "/r/no-such-code/?to=https://evil.example/"} {
		res := env.get(path)
		if res.StatusCode != http.StatusNotFound || res.Header.Get("Location") != "" {
			t.Fatalf("%s without a fallback: %d %q, want the 404 page", path, res.StatusCode, res.Header.Get("Location"))
		}
	}

	cfg := fx.Config
	cfg.FallbackURL = "https://example.org/partners?from=pba"
	env = newClickEnv(t, cfg)
	for _, path := range []string{"/r/no-such-code", evil, "/r/x", "/r/no-such-code/"} {
		res := env.get(path)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != cfg.FallbackURL || len(res.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("%s with a fallback: %d %q, want 302 to exactly %s, no cookie", path, res.StatusCode, res.Header.Get("Location"), cfg.FallbackURL)
		}
	}
	if got := len(env.clicks("")); got != before {
		t.Fatalf("%d clicks stored, want none", got-before)
	}
	want := map[doorKey]int{{collections.InactiveUnknownCode, "", ""}: 4}
	if got := env.inactiveCounts(want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inactive_redirects = %v, want %v", got, want)
	}
}

func TestFallbackURLValidated(t *testing.T) {
	for _, bad := range []string{"example.org", "/lost", "javascript:alert(1)", "ftp://example.org/", "https://", "https://user:pw@example.org/"} {
		app := pbatest.TempApp(t)
		err := hooks.Register(app, nil, hooks.Config{FallbackURL: bad})
		if err == nil || !strings.Contains(err.Error(), "PBA_FALLBACK_URL") {
			t.Errorf("FallbackURL %q: %v, want an error naming PBA_FALLBACK_URL", bad, err)
		}
	}
	if err := hooks.Register(pbatest.TempApp(t), nil, hooks.Config{FallbackURL: "http://example.org/x"}); err != nil {
		t.Fatalf("a valid fallback refused: %v", err)
	}
}

// TestRedirectTrailingSlash: /r/code/ is /r/code, on the direct path and through the router.
func TestRedirectTrailingSlash(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	for name, mutate := range map[string]func(*http.Request){
		"direct": func(*http.Request) {},
		"router": func(r *http.Request) { r.Header.Set("Authorization", fx.B.Token) },
	} {
		res := env.get("/r/"+linkA+"/", mutate)
		c := cookie(res, hooks.ClickCookie)
		if res.StatusCode != http.StatusFound || c == nil || !strings.HasPrefix(res.Header.Get("Location"), "https://example.com/?pba_click="+c.Value) {
			t.Fatalf("%s /r/code/: %d %q, want the code's credited redirect", name, res.StatusCode, res.Header.Get("Location"))
		}
		if _, err := env.app.FindRecordById(collections.Clicks, c.Value); err != nil {
			t.Fatalf("%s: click not stored: %v", name, err)
		}
	}
}

// TestTrackClickInactive: track.js reporting an inactive code gets 200 without a click id
// (the shop keeps its visitor, nothing is credited); an unknown code stays 404.
func TestTrackClickInactive(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	before := len(env.clicks(""))
	rec := pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", `{"code":"pending-p"}`)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("inactive code: %d %s, want 200", rec.Code, rec.Body)
	}
	if id, ok := out["click_id"]; !ok || id != nil || out["reason"] != "inactive" {
		t.Fatalf("inactive code: %s, want click_id null and reason inactive", rec.Body)
	}
	if got := len(env.clicks("")); got != before {
		t.Fatalf("%d clicks stored, want none", got-before)
	}
	want := map[doorKey]int{{collections.InactiveAffiliatePending, fx.Pending.ID, ""}: 1}
	if got := env.inactiveCounts(want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inactive_redirects = %v, want %v", got, want)
	}
	if rec := pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", `{"code":"no-such-code"}`); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown code: %d, want 404", rec.Code)
	}
}

// TestAffiliateArchivesOwnLink: archived is one of the link fields an affiliate may change,
// on its own links only.
func TestAffiliateArchivesOwnLink(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	patch := func(token, link string) int {
		return pbatest.Request(env.handler, http.MethodPatch, "/api/collections/links/records/"+link, token, `{"archived":true}`).Code
	}
	if code := patch(fx.B.Token, fx.RowsA.Link); code != http.StatusNotFound {
		t.Fatalf("B archiving A's link: %d, want 404", code)
	}
	if code := patch(fx.A.Token, fx.RowsA.Link); code != http.StatusOK {
		t.Fatalf("A archiving its link: %d, want 200", code)
	}
	if !mustFind(t, env.app, collections.Links, fx.RowsA.Link).GetBool(collections.LinkArchived) {
		t.Fatal("the link is not archived")
	}
	var clicks int
	if err := env.app.DB().NewQuery("SELECT COUNT(*) FROM clicks WHERE link = {:l}").Bind(dbx.Params{"l": fx.RowsA.Link}).Row(&clicks); err != nil || clicks != 1 {
		t.Fatalf("the archived link's clicks: %d %v, want its 1 click kept", clicks, err)
	}
}
