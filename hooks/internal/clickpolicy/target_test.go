package clickpolicy

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// testDomains returns the allowed domains of the tests (a function: the package keeps no globals).
func testDomains() []string { return []string{"example.com", "a.com"} }

func TestTargetQueryMerge(t *testing.T) {
	cases := []struct{ dest, want string }{
		{"https://a.com/p", "https://a.com/p?pba_click=ID"},
		{"https://a.com", "https://a.com?pba_click=ID"},
		{"https://a.com/p?", "https://a.com/p?pba_click=ID"},
		{"https://a.com/p?x=1", "https://a.com/p?x=1&pba_click=ID"},
		{"https://a.com/p?b=2&a=1&c=%20x+y&flag", "https://a.com/p?b=2&a=1&c=%20x+y&flag&pba_click=ID"},
		{"https://a.com/p?x=1&&y=2&", "https://a.com/p?x=1&y=2&pba_click=ID"},
		{"https://a.com/p?x=1#frag", "https://a.com/p?x=1&pba_click=ID#frag"},
		{"https://a.com/p#frag?not=query", "https://a.com/p?pba_click=ID#frag?not=query"},
		{"https://a.com/p#", "https://a.com/p?pba_click=ID#"},
		{"https://a.com/%7Euser/a%2Fb?q=%E2%82%AC", "https://a.com/%7Euser/a%2Fb?q=%E2%82%AC&pba_click=ID"},
		{"HTTPS://A.COM/P?X=1", "HTTPS://A.COM/P?X=1&pba_click=ID"},
		{"https://a.com/caf\u00e9?q=\u00fc#\u00e9", "https://a.com/caf%C3%A9?q=%C3%BC&pba_click=ID#%C3%A9"},
	}
	for _, c := range cases {
		got, err := Target(c.dest, "", testDomains(), "ID")
		if err != nil || got != c.want {
			t.Errorf("Target(%q) = %q, %v; want %q", c.dest, got, err, c.want)
		}
	}
}

func TestTargetReplacesExistingClickParam(t *testing.T) {
	cases := []struct{ dest, want string }{
		{"https://a.com/p?pba_click=old", "https://a.com/p?pba_click=ID"},
		{"https://a.com/p?pba_click=old&x=1", "https://a.com/p?x=1&pba_click=ID"},
		{"https://a.com/p?x=1&pba_click=old&y=2#f", "https://a.com/p?x=1&y=2&pba_click=ID#f"},
		{"https://a.com/p?pba_click&pba_click=a&pba%5Fclick=b&x=1", "https://a.com/p?x=1&pba_click=ID"},
		{"https://a.com/p?pba_clicks=keep&xpba_click=keep", "https://a.com/p?pba_clicks=keep&xpba_click=keep&pba_click=ID"},
	}
	for _, c := range cases {
		got, err := Target(c.dest, "", testDomains(), "ID")
		if err != nil || got != c.want {
			t.Errorf("Target(%q) = %q, %v; want %q", c.dest, got, err, c.want)
		}
	}
}

func TestTargetClickIDEscapedAndEmpty(t *testing.T) {
	got, err := Target("https://a.com/p?x=1", "", testDomains(), "a b&c")
	if err != nil || got != "https://a.com/p?x=1&pba_click=a+b%26c" {
		t.Errorf("escaped click id: %q, %v", got, err)
	}
	got, err = Target("https://a.com/p?x=1&pba_click=keep#f", "", testDomains(), "")
	if err != nil || got != "https://a.com/p?x=1&pba_click=keep#f" {
		t.Errorf("empty click id: %q, %v", got, err)
	}
}

func TestTargetDeepLinks(t *testing.T) {
	const dest = "https://example.com/landing"
	cases := []struct{ deep, want string }{
		{"https://example.com/product/42?ref=x", "https://example.com/product/42?ref=x&pba_click=ID"},
		{"https://shop.example.com/p", "https://shop.example.com/p?pba_click=ID"},
		{"https://a.b.example.com/p", "https://a.b.example.com/p?pba_click=ID"},
		{"http://example.com/plain", "http://example.com/plain?pba_click=ID"},
		{"https://EXAMPLE.com/", "https://EXAMPLE.com/?pba_click=ID"},
		{"https://example.com:8443/x", "https://example.com:8443/x?pba_click=ID"},
		{"https://example.com./x", "https://example.com./x?pba_click=ID"},
		{"https://a.com/other", "https://a.com/other?pba_click=ID"},
	}
	for _, c := range cases {
		got, err := Target(dest, c.deep, testDomains(), "ID")
		if err != nil || got != c.want {
			t.Errorf("deep %q: got %q, %v; want %q", c.deep, got, err, c.want)
		}
	}
}

func TestTargetOpenRedirectFallsBack(t *testing.T) {
	const dest = "https://example.com/landing?x=1#top"
	const want = "https://example.com/landing?x=1&pba_click=ID#top"
	attacks := []string{
		"https://evil.com/",
		"http://evil.com/example.com",
		"https://evil.com/?u=https://example.com",
		"//evil.com",
		"//example.com/x", // scheme-relative: not absolute, rejected even on an allowed host
		"/\\evil.com",
		"\\\\evil.com",
		"/path/only",
		"example.com/x",
		"javascript:alert(1)",
		"JaVaScRiPt:alert(1)",
		"javascript://example.com/%0Aalert(1)",
		"data:text/html,<script>alert(1)</script>",
		"vbscript:msgbox(1)",
		"ftp://example.com/x",
		"file:///etc/passwd",
		"https:%2F%2Fevil.com",
		"https:/%2Fevil.com",
		"%68ttps://evil.com",
		"https%3A%2F%2Fevil.com",
		"https://example.com@evil.com/",
		"https://user:pass@example.com/",
		"https://evil.com#@example.com",
		"https://evil.com?@example.com",
		"https://evil.com\\@example.com",
		"https://evil.com\\.example.com",
		"https://example.com\\@evil.com",
		"https://example.com.evil.com/",
		"https://evilexample.com/",
		"https://example.co/",
		"https://exa\tmple.com/",
		"https://example.com/\nLocation: https://evil.com",
		"https://example.com/x\r\n",
		" https://evil.com",
		"https://example.com /x",
		"https://ex\u0430mple.com/",          // Cyrillic а
		"https://xn--exmple-4nf.com/",        // punycode of a lookalike
		"https://example.com\u3002evil.com/", // ideographic full stop
		"https://evil.com%2F@example.com",
		"https://example.com%2F.evil.com/",
		"https:///evil.com",
		"https:evil.com",
		"http://[::1]/",
		"http://127.0.0.1/",
		"https://" + strings.Repeat("a", 2100) + ".example.com/",
	}
	for _, deep := range attacks {
		got, err := Target(dest, deep, testDomains(), "ID")
		if err != nil || got != want {
			t.Errorf("deep %q: got %q, %v; want fallback %q", deep, got, err, want)
		}
	}
}

func TestTargetBadDestination(t *testing.T) {
	for _, dest := range []string{"", "https://evil.com/", "javascript:alert(1)", "//example.com", "https://example.com@evil.com/"} {
		got, err := Target(dest, "", testDomains(), "ID")
		if !errors.Is(err, ErrBadDestination) || got != "" {
			t.Errorf("dest %q: got %q, %v; want ErrBadDestination", dest, got, err)
		}
		// A valid deep link still wins over a broken destination.
		got, err = Target(dest, "https://example.com/d", testDomains(), "ID")
		if err != nil || got != "https://example.com/d?pba_click=ID" {
			t.Errorf("dest %q with deep link: got %q, %v", dest, got, err)
		}
	}
	if _, err := Target("https://example.com/", "", nil, "ID"); !errors.Is(err, ErrBadDestination) {
		t.Errorf("no allowed domains: err = %v", err)
	}
}

// TestTargetOutputParses checks the result keeps the chosen host and carries exactly one click id.
func TestTargetOutputParses(t *testing.T) {
	for _, deep := range []string{"", "https://shop.example.com/p?pba_click=x&pba_click=y&q=1#f", "https://evil.com"} {
		got, err := Target("https://example.com/?a=1", deep, testDomains(), "ID")
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("%q does not parse: %v", got, err)
		}
		if h := u.Hostname(); h != "example.com" && h != "shop.example.com" {
			t.Errorf("%q: host %q", got, h)
		}
		if v := u.Query()["pba_click"]; len(v) != 1 || v[0] != "ID" {
			t.Errorf("%q: pba_click = %v", got, v)
		}
	}
}

func BenchmarkTarget(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Target("https://example.com/landing?utm_source=aff#top", "https://shop.example.com/p/42?ref=x", testDomains(), "abcdefghijklmno")
	}
}
