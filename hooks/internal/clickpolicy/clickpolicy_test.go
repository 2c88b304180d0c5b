package clickpolicy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func refHash(salt []byte, s string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

func TestHashIPMatchesHMAC(t *testing.T) {
	salts := [][]byte{nil, []byte("s"), []byte(strings.Repeat("k", 64)), []byte(strings.Repeat("long-salt-", 20))}
	for _, salt := range salts {
		for _, ip := range []string{"203.0.113.7", "2001:db8::1", "not an ip", strings.Repeat("x", 300), ""} {
			if got, want := HashIP(salt, ip), refHash(salt, ip); got != want {
				t.Errorf("HashIP(%d-byte salt, %q) = %s, want %s", len(salt), ip, got, want)
			}
		}
	}
	// IPHasher reuses its HMAC states: the same answers, every time, from any goroutine.
	h := NewIPHasher([]byte("s"))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				ip := []string{"203.0.113.7", "2001:db8::1", "::ffff:203.0.113.7", "not an ip"}[i%4]
				if got, want := h.Hash(ip), HashIP([]byte("s"), ip); got != want {
					t.Errorf("IPHasher.Hash(%q) = %s, want %s", ip, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestHashIPNormalizes(t *testing.T) {
	salt := []byte("secret")
	v4 := HashIP(salt, "203.0.113.7")
	if len(v4) != 32 {
		t.Fatalf("length %d", len(v4))
	}
	for _, same := range []string{"::ffff:203.0.113.7", " 203.0.113.7 ", "::FFFF:cb00:7107"} {
		if HashIP(salt, same) != v4 {
			t.Errorf("%q hashes differently from its IPv4 form", same)
		}
	}
	v6 := HashIP(salt, "2001:db8::1")
	for _, same := range []string{"2001:DB8:0:0:0:0:0:1", "2001:0db8::0001", "2001:db8::1%eth0"} {
		if HashIP(salt, same) != v6 {
			t.Errorf("%q hashes differently from 2001:db8::1", same)
		}
	}
	if HashIP(salt, "203.0.113.8") == v4 || HashIP([]byte("other"), "203.0.113.7") == v4 {
		t.Error("different IP or salt gives the same hash")
	}
}

func TestClientIP(t *testing.T) {
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hd.Add(kv[i], kv[i+1])
		}
		return hd
	}
	cases := []struct {
		name, remote string
		headers      http.Header
		trusted      string
		want         string
	}{
		{"remote v4", "198.51.100.1:5555", nil, "", "198.51.100.1"},
		{"remote v6", "[2001:db8::2]:443", nil, "", "2001:db8::2"},
		{"remote mapped", "[::ffff:198.51.100.1]:80", nil, "", "198.51.100.1"},
		{"remote no port", "198.51.100.1", nil, "", "198.51.100.1"},
		{"remote garbage", "pipe", nil, "", "pipe"},
		{"header ignored when not trusted", "198.51.100.1:1", h("X-Forwarded-For", "1.2.3.4"), "", "198.51.100.1"},
		{"xff first", "10.0.0.1:1", h("X-Forwarded-For", "203.0.113.9, 10.0.0.2"), "X-Forwarded-For", "203.0.113.9"},
		{"xff skips junk", "10.0.0.1:1", h("X-Forwarded-For", "unknown, , 203.0.113.9"), "X-Forwarded-For", "203.0.113.9"},
		{"xff multiple lines", "10.0.0.1:1", h("X-Forwarded-For", "junk", "X-Forwarded-For", "203.0.113.10"), "x-forwarded-for", "203.0.113.10"},
		{"xff with port", "10.0.0.1:1", h("X-Forwarded-For", "203.0.113.9:4711"), "X-Forwarded-For", "203.0.113.9"},
		{"xff bracketed v6", "10.0.0.1:1", h("X-Forwarded-For", "[2001:db8::9]:4711"), "X-Forwarded-For", "2001:db8::9"},
		{"xff bracketed v6 no port", "10.0.0.1:1", h("X-Forwarded-For", "[2001:db8::9]"), "X-Forwarded-For", "2001:db8::9"},
		{"cf header", "10.0.0.1:1", h("CF-Connecting-IP", " 2001:DB8::A "), "CF-Connecting-IP", "2001:db8::a"},
		{"header all invalid", "10.0.0.1:1", h("X-Real-IP", "nope"), "X-Real-IP", "10.0.0.1"},
		{"header missing", "10.0.0.1:1", h(), "X-Real-IP", "10.0.0.1"},
	}
	for _, c := range cases {
		if got := ClientIP(c.remote, c.headers, c.trusted); got != c.want {
			t.Errorf("%s: ClientIP = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestCountry(t *testing.T) {
	cases := map[string]string{
		"DE": "DE", "fr": "FR", " us ": "US", "gB": "GB",
		"XX": "", "xx": "", "T1": "", "ZZ": "", "A1": "", "": "", "D": "", "DEU": "", "1A": "", "É": "",
	}
	for in, want := range cases {
		hd := http.Header{}
		hd.Set("CF-IPCountry", in)
		if got := Country(hd, "CF-IPCountry"); got != want {
			t.Errorf("Country(%q) = %q, want %q", in, got, want)
		}
	}
	hd := http.Header{}
	hd.Set("CF-IPCountry", "DE")
	if Country(hd, "") != "" || Country(nil, "CF-IPCountry") != "" {
		t.Error("country reported without a trusted header")
	}
}

func TestTruncate(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 5, "hello"},
		{"hello", 3, "hel"},
		{"hello", 0, ""},
		{"hello", -1, ""},
		{"héllo", 2, "h"}, // é is 2 bytes at [1:3]
		{"héllo", 3, "hé"},
		{"é", 1, ""},
		{"a€b", 3, "a"}, // € is 3 bytes at [1:4]
		{"a€b", 4, "a€"},
		{"a😀b", 4, "a"}, // 😀 is 4 bytes at [1:5]
		{"a😀b", 5, "a😀"},
		{"ab\x80\x80\x80\x80\x80", 5, "ab\x80\x80\x80"}, // invalid input: plain byte cut
	}
	for _, c := range cases {
		if got := Truncate(c.in, c.max); got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
	long := strings.Repeat("ü", 400) // 800 bytes
	got := Truncate(long, MaxUserAgentLength)
	if len(got) > MaxUserAgentLength || !utf8.ValidString(got) || len(got) != 512 {
		t.Errorf("user agent truncation: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	got = Truncate(strings.Repeat("€", 1000), MaxReferrerLength)
	if len(got) > MaxReferrerLength || !utf8.ValidString(got) || len(got) != 2046 {
		t.Errorf("referrer truncation: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

// TestClickTextCapped: every free-text field is cut to its cap, on a rune boundary, whatever
// mix of one- to four-byte characters fills it; text within the caps is kept as is.
func TestClickTextCapped(t *testing.T) {
	short := ClickText{UserAgent: "Mozilla/5.0", Referrer: "https://blog.test/ü", SubID: " spring ", Country: "DE"}
	if got, want := short.Capped(), (ClickText{"Mozilla/5.0", "https://blog.test/ü", "spring", "DE"}); got != want {
		t.Fatalf("within the caps: %+v, want %+v", got, want)
	}
	caps := []struct {
		name string
		max  int
		get  func(ClickText) string
		set  func(*ClickText, string)
	}{
		{"user agent", MaxUserAgentLength, func(c ClickText) string { return c.UserAgent }, func(c *ClickText, s string) { c.UserAgent = s }},
		{"referrer", MaxReferrerLength, func(c ClickText) string { return c.Referrer }, func(c *ClickText, s string) { c.Referrer = s }},
		{"sub", MaxSubIDLength, func(c ClickText) string { return c.SubID }, func(c *ClickText, s string) { c.SubID = s }},
		{"country", MaxCountryLength, func(c ClickText) string { return c.Country }, func(c *ClickText, s string) { c.Country = s }},
	}
	// Each filler is offset by one byte so its runes straddle the cap (except ASCII's).
	for _, fill := range []string{"a", "é", "€", "😀"} {
		for _, c := range caps {
			in := "x" + strings.Repeat(fill, 2*c.max)
			var text ClickText
			c.set(&text, in)
			got := c.get(text.Capped())
			runeWidth := len(fill)
			if len(got) > c.max || !utf8.ValidString(got) || len(got) <= c.max-runeWidth || !strings.HasPrefix(in, got) {
				t.Errorf("%s of %q: %d bytes (cap %d), valid %v", c.name, fill, len(got), c.max, utf8.ValidString(got))
			}
		}
	}
}

func BenchmarkHashIP(b *testing.B) {
	salt := []byte("0123456789abcdef0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		HashIP(salt, "2001:db8::1")
	}
}

func BenchmarkIPHasher(b *testing.B) {
	h := NewIPHasher([]byte("0123456789abcdef0123456789abcdef"))
	b.ReportAllocs()
	for b.Loop() {
		h.Hash("2001:db8::1")
	}
}

func TestReferrerDomain(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"https://www.Google.com/search?q=x":     "google.com",
		"http://news.ycombinator.com:8080/item": "news.ycombinator.com",
		"android-app://com.google.android.gm/":  "com.google.android.gm",
		"not a url":                             "",
		"/relative/path":                        "",
		"https://example.com./":                 "example.com",
		"https://WWW.example.org":               "example.org",
	} {
		if got := ReferrerDomain(in); got != want {
			t.Errorf("ReferrerDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHashWithNetwork: an IPv4 visitor is limited by its address, an IPv6 one by its /64, so
// a host rotating addresses inside its /64 stays one key of the rate limit and the ceiling.
func TestHashWithNetwork(t *testing.T) {
	salt := []byte("secret")
	h := NewIPHasher(salt)
	for _, ip := range []string{"203.0.113.7", "::ffff:203.0.113.7", "not an ip", ""} {
		addr, network := h.HashWithNetwork(ip)
		if addr != HashIP(salt, ip) || network != addr {
			t.Errorf("HashWithNetwork(%q) = %s, %s; want the address hash twice (%s)", ip, addr, network, HashIP(salt, ip))
		}
	}
	addr, network := h.HashWithNetwork("2001:db8:1:2::1")
	if addr != HashIP(salt, "2001:db8:1:2::1") || network == addr {
		t.Fatalf("IPv6: address hash %s, network hash %s", addr, network)
	}
	if want := refHash(salt, "2001:db8:1:2::/64"); network != want {
		t.Errorf("IPv6 network hash %s, want HMAC of the /64 %s", network, want)
	}
	for _, same := range []string{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:a:b:c:d%eth0", "2001:DB8:1:2::9"} {
		if a, n := h.HashWithNetwork(same); n != network || a == addr {
			t.Errorf("%q: network %s (want %s), address hash equal to another address's: %v", same, n, network, a == addr)
		}
	}
	for _, other := range []string{"2001:db8:1:3::1", "2001:db8:1::1", "203.0.113.8"} {
		if _, n := h.HashWithNetwork(other); n == network {
			t.Errorf("%q counts in 2001:db8:1:2::/64", other)
		}
	}
}

func TestNetworkKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":               "203.0.113.7/32",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"fe80::1":                   "fe80::/64",
		"2001:db8:ffff:ffff:ffff::": "2001:db8:ffff:ffff::/64",
	} {
		if got := NetworkKey(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("NetworkKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func BenchmarkIPHasherWithNetwork(b *testing.B) {
	h := NewIPHasher([]byte("secret"))
	for _, ip := range []string{"203.0.113.7", "2001:db8:1:2::1"} {
		b.Run(ip, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.HashWithNetwork(ip)
			}
		})
	}
}
