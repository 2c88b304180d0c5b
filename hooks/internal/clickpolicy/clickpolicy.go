// Package clickpolicy holds the pure decisions of the affiliate click redirector (GET /r/{code}):
// where the visitor goes (Target), whether the click looks automated (BotDetector) or abusive
// (RateLimiter), how much one IP may store (IPCeiling), and how visitor data is reduced before
// it is stored (HashIP, ClientIP, Country, ClickText). It imports nothing of PocketBase so every rule can be tested and benchmarked alone;
// the redirector is a hot path, so the functions here avoid allocations and global locks.
package clickpolicy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"
)

// Stored-size caps of a click's free text, in bytes (ClickText.Capped): whatever a request
// carries, one click stores at most 2,662 bytes of it. The clicks collection's field limits
// are the same numbers (in characters, which a byte cap always satisfies).
const (
	MaxUserAgentLength = 512
	MaxReferrerLength  = 2048
	MaxSubIDLength     = 100
	MaxCountryLength   = 2
)

// ClickText is the free text of one click: what the visitor's request says about itself.
type ClickText struct {
	UserAgent, Referrer, SubID, Country string
}

// Capped is t as a click stores it: the sub id without surrounding spaces, and each field cut
// to its cap by Truncate (never inside a UTF-8 sequence). Both doors of a click (/r/ and the
// clicks API) store only what Capped returns, so no request can store more.
func (t ClickText) Capped() ClickText {
	return ClickText{
		UserAgent: Truncate(t.UserAgent, MaxUserAgentLength),
		Referrer:  Truncate(t.Referrer, MaxReferrerLength),
		SubID:     Truncate(strings.TrimSpace(t.SubID), MaxSubIDLength),
		Country:   Truncate(t.Country, MaxCountryLength),
	}
}

// ipHashLength is the number of hex characters HashIP keeps (128 bits): plenty to tell visitors
// apart and to key the rate limiter, while shorter to store and index than the full digest.
const ipHashLength = 32

// HashIP returns a pseudonymous, stable identifier for a visitor IP:
// hex(HMAC-SHA256(salt, normalized ip)) cut to 32 characters. Clicks store only this value —
// the raw IP is never stored — so the data set cannot be joined with other logs without the
// secret salt, yet the same visitor still hashes to the same value for rate limiting and
// de-duplication. The IP is normalized first (IPv4-mapped IPv6 becomes IPv4, zones dropped,
// canonical text form) so one address always hashes the same; a string that is not an IP is
// hashed as given. The salt must be a server secret; rotating it breaks continuity of hashes.
func HashIP(salt []byte, ip string) string {
	return hashIP(hmac.New(sha256.New, salt), ip)
}

// IPHasher is HashIP for one salt, reusing its HMAC states: the redirector hashes every
// click's IP, and setting up an HMAC key costs as much as hashing the IP. Safe for
// concurrent use.
type IPHasher struct {
	pool sync.Pool // hash.Hash (HMAC-SHA256 keyed with the salt)
}

// NewIPHasher returns a hasher giving the same results as HashIP(salt, ip).
func NewIPHasher(salt []byte) *IPHasher {
	salt = append([]byte(nil), salt...)
	return &IPHasher{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, salt) }}}
}

// Hash is HashIP(salt, ip).
func (h *IPHasher) Hash(ip string) string {
	mac := h.pool.Get().(hash.Hash)
	s := hashIP(mac, ip)
	mac.Reset()
	h.pool.Put(mac)
	return s
}

// HashWithNetwork returns Hash(ip) and the hash of the network a per-IP limit counts the
// visitor in (NetworkKey): the same string for IPv4, the /64's hash for IPv6.
func (h *IPHasher) HashWithNetwork(ip string) (addr, network string) {
	mac := h.pool.Get().(hash.Hash)
	a, ok := parseAddr(ip)
	addr = hashAddr(mac, a, ok, ip)
	network = addr
	if ok && a.Is6() {
		mac.Reset()
		var buf [64]byte
		network = hashMessage(mac, NetworkKey(a).AppendTo(buf[:0]))
	}
	mac.Reset()
	h.pool.Put(mac)
	return addr, network
}

// IPv6NetworkBits is the prefix length per-IP limits count an IPv6 visitor by: an ISP hands
// one subscriber (at least) a /64, and a host picks any address in it at will (privacy
// addresses rotate on their own), so counting by address would let one host start over at
// every request.
const IPv6NetworkBits = 64

// NetworkKey is the prefix a per-IP limit counts a visitor in: the address itself (/32)
// for IPv4, its /64 for IPv6. a must be normalized (unmapped, no zone).
func NetworkKey(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(IPv6NetworkBits)
	return p
}

// parseAddr is the normalized address of ip, or false when ip is not one.
func parseAddr(ip string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func hashIP(mac hash.Hash, ip string) string {
	a, ok := parseAddr(ip)
	return hashAddr(mac, a, ok, ip)
}

// hashAddr hashes a in canonical text form, or the trimmed raw string when it is not an address.
func hashAddr(mac hash.Hash, a netip.Addr, ok bool, raw string) string {
	var buf [64]byte
	if ok {
		return hashMessage(mac, a.AppendTo(buf[:0]))
	}
	return hashMessage(mac, append(buf[:0], strings.TrimSpace(raw)...))
}

func hashMessage(mac hash.Hash, msg []byte) string {
	mac.Write(msg)
	var sum [sha256.Size]byte
	var out [ipHashLength]byte
	hex.Encode(out[:], mac.Sum(sum[:0])[:ipHashLength/2])
	return string(out[:])
}

// ClientIP picks the visitor's IP so hashing and rate limiting see the real client rather than
// the reverse proxy. When trustedProxyHeader is set (e.g. "CF-Connecting-IP", "X-Real-IP",
// "X-Forwarded-For") the first valid IP in that header's comma-separated values wins (an
// "ip:port" or "[ipv6]:port" entry is accepted too); otherwise, or when the header holds no
// valid IP, the host part of remoteAddr is used. Configure the header only when a proxy you
// control sets or overwrites it: its content is otherwise client-supplied (the first
// X-Forwarded-For entry in particular). The result is in canonical form (IPv4-mapped IPv6 as
// IPv4); an unparsable remoteAddr host is returned as is.
func ClientIP(remoteAddr string, headers http.Header, trustedProxyHeader string) string {
	if trustedProxyHeader != "" && headers != nil {
		for _, v := range headers.Values(trustedProxyHeader) {
			for v != "" {
				var part string
				part, v, _ = strings.Cut(v, ",")
				if a, ok := parseIP(strings.TrimSpace(part)); ok {
					return a.String()
				}
			}
		}
	}
	host := strings.TrimSpace(remoteAddr)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if a, ok := parseIP(host); ok {
		return a.String()
	}
	return host
}

// parseIP accepts "ip", "ip:port", "[ipv6]:port" and "[ipv6]", returning the normalized address.
func parseIP(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// Country returns the visitor's ISO 3166-1 alpha-2 country, uppercase, as reported by a trusted
// edge header (e.g. Cloudflare's "CF-IPCountry"), or "" when no header is configured or its value
// is not two letters. Cloudflare's "XX" (unknown) and "T1" (Tor) and the common "ZZ" placeholder
// are reported as "" so reports do not show pseudo-countries.
func Country(headers http.Header, trustedHeader string) string {
	if trustedHeader == "" || headers == nil {
		return ""
	}
	v := strings.TrimSpace(headers.Get(trustedHeader))
	if len(v) != 2 || !isASCIILetter(v[0]) || !isASCIILetter(v[1]) {
		return "" // also rejects "T1", "A1", "A2"
	}
	if v[0] >= 'a' || v[1] >= 'a' {
		v = string([]byte{v[0] &^ 0x20, v[1] &^ 0x20})
	}
	if v == "XX" || v == "ZZ" {
		return ""
	}
	return v
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// Truncate cuts s to at most max bytes without splitting a UTF-8 sequence, so the stored text
// of a click (ClickText.Capped) stays bounded and valid. The limit is in bytes, which also satisfies a rune-count limit of the same size. max <= 0
// yields "". Invalid UTF-8 already present in s is not repaired.
func Truncate(s string, max int) string {
	if max <= 0 {
		return ""
	}
	if len(s) <= max {
		return s
	}
	// Back off at most UTFMax-1 continuation bytes to the start of the rune at s[max].
	for i := max; i >= 0 && i > max-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i]
		}
	}
	return s[:max] // not valid UTF-8 around the cut; nothing to preserve
}

// ReferrerDomain is the host a click came from, as the referrer breakdown groups it: lower
// case, without port or a leading "www.", "" for none or a referrer that is not a URL.
func ReferrerDomain(referrer string) string {
	if referrer == "" {
		return ""
	}
	u, err := url.Parse(referrer)
	if err != nil || u.Host == "" {
		return ""
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	host = strings.TrimPrefix(host, "www.")
	if len(host) > 253 { // longer than any DNS name: not one
		return ""
	}
	return host
}
