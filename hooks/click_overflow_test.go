package hooks_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// The flooder's text: every field longer than its cap, in characters of two to four bytes
// offset by one byte so a byte cut would split them.
var (
	floodUA       = "M" + strings.Repeat("é", 400)               // 801 bytes
	floodReferrer = "https://x.test/" + strings.Repeat("€", 800) // 2415 bytes
	floodSub      = "s" + strings.Repeat("😀", 40)                // 161 bytes
)

// floodRequest makes a request come from ip with the flooder's user agent and referrer.
func floodRequest(ip string) func(*http.Request) {
	return func(r *http.Request) {
		r.RemoteAddr = ip + ":4000"
		r.Header.Set("User-Agent", floodUA)
		r.Header.Set("Referer", floodReferrer)
		r.Header.Set("CF-IPCountry", "Deutschland")
	}
}

// floodResult is what a flood left: answers, rows, counts.
type floodResult struct {
	api, redirect []*pbatest.Response
	rows          int
	lean          int            // rows stored without user agent and referrer
	start         time.Time      // when the flood began
	overflow      map[string]int // "flag/link" → clicks, all of today's hour and flooder's ip hash
	statsClicks   int            // what the flood added to stats_daily's clicks
}

// flood sends, from one IP, 8 clicks through POST /api/pba/clicks (an affiliate code) and 5
// through /r/ (a link), then one API click from another IP, against a server with cfg. With a
// rate limit of 3, each door's first 3 clicks are unflagged and the rest flagged "rate".
func flood(t *testing.T, cfg hooks.Config) floodResult {
	// The ceiling starts over with the hour: keep the flood inside one.
	if rest := time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)); rest < 5*time.Second {
		time.Sleep(rest)
	}
	env := newClickEnv(t, cfg)
	res := floodResult{start: time.Now()}
	res.statsClicks = -env.statsClicks()
	body, _ := json.Marshal(map[string]string{"code": "affiliate-a", "sub": floodSub, "referrer": floodReferrer})
	for range 8 {
		res.api = append(res.api, pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", string(body), floodRequest("198.51.100.9")))
	}
	for range 5 {
		res.redirect = append(res.redirect, pbatest.Request(env.handler, http.MethodGet,
			"/r/"+linkA+"?sub="+url.QueryEscape(floodSub)+"&to="+url.QueryEscape("https://example.com/deep"), "", "", floodRequest("198.51.100.9")))
	}
	if r := pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", string(body), floodRequest("198.51.100.10")); r.Code != 200 {
		t.Fatalf("another IP: %d %s", r.Code, r.Body)
	}

	rows := env.clicks("visitor !~ 'v-%'") // not the fixture's own clicks
	res.rows = len(rows)
	var flooder string
	for _, r := range rows {
		for field, limit := range map[string]int{"user_agent": 512, "referrer": 2048, "sub_id": 100, "country": 2} {
			v := r.GetString(field)
			if len(v) > limit || !utf8.ValidString(v) {
				t.Fatalf("click %s stored %d bytes of %s (cap %d), valid UTF-8 %v", r.Id, len(v), field, limit, utf8.ValidString(v))
			}
		}
		switch ua, ref := r.GetString("user_agent"), r.GetString("referrer"); {
		case ua == "" && ref == "" && r.GetString("flag") == "":
			res.lean++ // unflagged, past the ceiling: stored without the flooder's text
		case ua == "" || ref == "":
			t.Fatalf("click %s lost its user agent or referrer", r.Id)
		}
		if sub := r.GetString("sub_id"); sub != "" && !strings.HasPrefix(floodSub, sub) {
			t.Fatalf("sub %q is not the start of the one sent", sub)
		}
		if r.GetString("flag") != "" {
			flooder = r.GetString("ip_hash")
		}
	}
	var counted []struct {
		Hour, IPHash, Program, Affiliate, Link, Flag string
		Clicks                                       int
	}
	err := env.app.DB().NewQuery("SELECT hour, ip_hash AS iphash, program, affiliate, link, flag, clicks FROM " + collections.ClickOverflow).All(&counted)
	if err != nil {
		t.Fatal(err)
	}
	res.overflow = map[string]int{}
	hour := time.Now().UTC().Truncate(time.Hour).Format("2006-01-02 15:04:05.000Z")
	for _, c := range counted {
		if c.Hour != hour || c.IPHash != flooder || c.Program != fx.ProgramP || c.Affiliate != fx.A.ID {
			t.Fatalf("overflow row %+v: want hour %s, the flooder's ip hash %s, program P, affiliate A", c, hour, flooder)
		}
		res.overflow[c.Flag+"/"+c.Link] += c.Clicks
	}
	res.statsClicks += env.statsClicks()
	assertStatsMatchClicks(t, env.app)
	return res
}

// TestClickFloodCeiling: an IP past PBA_CLICK_IP_CEILING rows in the hour stores no more
// flagged clicks; they are counted in click_overflow (exactly, with their flag and link),
// the clicks API answers 429 with Retry-After, /r/ still sends the visitor on, unflagged
// clicks are always stored (past the ceiling without user agent and referrer), stats_daily is what it is without the ceiling, and no field of a
// stored click is longer than its cap.
func TestClickFloodCeiling(t *testing.T) {
	base := hooks.Config{IPSalt: "test-salt", ClickRateLimit: 3, CountryHeader: "CF-IPCountry"}
	off := flood(t, base)
	base.ClickIPCeiling = 5
	on := flood(t, base)

	// Ceiling off: every click a row, every answer a click.
	if off.rows != 14 || len(off.overflow) != 0 {
		t.Fatalf("ceiling off: %d rows, overflow %v; want 14 rows, nothing counted", off.rows, off.overflow)
	}
	for i, r := range off.api {
		if r.Code != 200 {
			t.Fatalf("ceiling off: API click %d answered %d", i, r.Code)
		}
	}

	// Ceiling 5: the API door's 3 unflagged and 2 first "rate" clicks are rows, its other 3
	// counted; the /r/ door's 3 unflagged clicks are rows although the IP is past its ceiling,
	// its 2 "rate" clicks counted. The other IP's click is a row.
	if on.rows != 5+3+1 {
		t.Fatalf("ceiling 5: %d rows, want 9", on.rows)
	}
	// Those 3 are stored lean: the row a sale needs, not the flooder's text.
	if on.lean != 3 || off.lean != 0 {
		t.Fatalf("rows stored lean: %d with the ceiling (want 3), %d without (want 0)", on.lean, off.lean)
	}
	link := fx.RowsA.Link
	if want := map[string]int{"rate/": 3, "rate/" + link: 2}; !maps.Equal(on.overflow, want) {
		t.Fatalf("counted %v, want %v", on.overflow, want)
	}
	if on.statsClicks != 3+3+1 || off.statsClicks != on.statsClicks {
		t.Fatalf("stats_daily clicks added: %d with the ceiling, %d without; want the flood's 7 unflagged clicks in both",
			on.statsClicks, off.statsClicks)
	}
	for i, r := range on.api {
		if i < 5 {
			if r.Code != 200 || r.JSON["click_id"] == nil {
				t.Fatalf("API click %d (below the ceiling): %d %s", i, r.Code, r.Body)
			}
			continue
		}
		retry, err := strconv.Atoi(r.Header().Get("Retry-After"))
		msg, _ := r.JSON["message"].(string)
		if r.Code != http.StatusTooManyRequests || err != nil || msg == "" || r.JSON["click_id"] != nil {
			t.Fatalf("API click %d (past the ceiling): %d Retry-After %q %s", i, r.Code, r.Header().Get("Retry-After"), r.Body)
		}
		// The rest of the hour the flood ran in, in whole seconds: at most what was left when
		// it began (a loaded machine can take seconds over the flood), at least what is left now.
		end := on.start.Truncate(time.Hour).Add(time.Hour)
		atStart, now := end.Sub(on.start).Seconds(), time.Until(end).Seconds()
		if float64(retry) < now-1 || float64(retry) > atStart+1 {
			t.Fatalf("Retry-After %d s, want the rest of the hour (%.0f s at the flood's start, %.0f s now)", retry, atStart, now)
		}
	}
	for i, r := range on.redirect {
		loc, _ := url.Parse(r.Header().Get("Location"))
		if r.Code != http.StatusFound || loc == nil || loc.Host != "example.com" || loc.Path != "/deep" {
			t.Fatalf("/r/ click %d: %d to %q, want 302 to the deep link", i, r.Code, r.Header().Get("Location"))
		}
		stored := i < 3
		if got := loc.Query().Get("pba_click") != ""; got != stored {
			t.Fatalf("/r/ click %d: pba_click in the Location %v, want %v", i, got, stored)
		}
		if got := cookie(r.Result(), hooks.ClickCookie) != nil; got != stored {
			t.Fatalf("/r/ click %d: pba_click cookie %v, want %v", i, got, stored)
		}
	}
}

// TestClickCeilingIPv6Network: an IPv6 host rotating addresses inside its /64 is one visitor
// to the rate limit and the ceiling (and one click_overflow row); the next /64 is another.
func TestClickCeilingIPv6Network(t *testing.T) {
	if rest := time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)); rest < 5*time.Second {
		time.Sleep(rest)
	}
	env := newClickEnv(t, hooks.Config{IPSalt: "test-salt", ClickRateLimit: 3, ClickIPCeiling: 5})
	body := `{"code": "affiliate-a"}`
	click := func(ip string) *pbatest.Response {
		return pbatest.Request(env.handler, http.MethodPost, "/api/pba/clicks", "", body, func(r *http.Request) {
			r.RemoteAddr = "[" + ip + "]:4000"
			r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
		})
	}
	for i := 1; i <= 8; i++ {
		r := click("2001:db8:1:2::" + strconv.Itoa(i))
		if want := map[bool]int{true: 200, false: 429}[i <= 5]; r.Code != want {
			t.Fatalf("click %d from a rotated address of the /64: %d, want %d (%s)", i, r.Code, want, r.Body)
		}
	}
	if r := click("2001:db8:1:3::1"); r.Code != 200 {
		t.Fatalf("the next /64: %d %s", r.Code, r.Body)
	}
	rows := env.clicks("visitor !~ 'v-%'")
	flags, hashes := map[string]int{}, map[string]bool{}
	for _, r := range rows {
		flags[r.GetString("flag")]++
		hashes[r.GetString("ip_hash")] = true
	}
	// Stored: 3 unflagged and 2 "rate" of the /64, and the other network's click; each row
	// still keeps its own address's hash.
	if want := map[string]int{"": 4, "rate": 2}; !maps.Equal(flags, want) || len(hashes) != 6 {
		t.Fatalf("stored flags %v (want %v), %d distinct ip hashes (want 6)", flags, want, len(hashes))
	}
	var counted []struct{ Clicks int }
	if err := env.app.DB().NewQuery("SELECT clicks FROM " + collections.ClickOverflow).All(&counted); err != nil {
		t.Fatal(err)
	}
	if len(counted) != 1 || counted[0].Clicks != 3 {
		t.Fatalf("click_overflow %+v, want one row of 3 clicks for the /64", counted)
	}
}
