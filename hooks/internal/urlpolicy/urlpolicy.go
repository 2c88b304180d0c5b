// Package urlpolicy decides which URLs a program may send visitors to. Every redirect target
// (a link's destination, a deep link's `to`) passes through Check, so the redirector can never
// be used as an open redirect.
package urlpolicy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode"
)

// Errors returned by Check; callers map them to field messages.
var (
	ErrNotAbsolute   = errors.New("must be an absolute http(s) URL")
	ErrUserInfo      = errors.New("must not contain credentials")
	ErrNotAllowed    = errors.New("host is not on the program's allowed domains")
	ErrInvalidDomain = errors.New("invalid domain")
)

// maxURLLength keeps destinations within what browsers and proxies handle everywhere.
const maxURLLength = 2048

// NormalizeDomain turns an admin-entered domain ("Example.COM.", "https://shop.example.com/x")
// into the bare lowercase host the checks compare against.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSpace(strings.ToLower(d))
	if strings.Contains(d, "://") {
		u, err := url.Parse(d)
		if err != nil {
			return "", fmt.Errorf("%w: %q", ErrInvalidDomain, d)
		}
		d = u.Hostname()
	}
	d = strings.TrimSuffix(d, ".")
	d = strings.TrimPrefix(d, "*.")
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("%w: %q", ErrInvalidDomain, d)
	}
	if net.ParseIP(d) != nil {
		return d, nil
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%w: %q", ErrInvalidDomain, d)
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
				return "", fmt.Errorf("%w: %q (use the punycode form of international names)", ErrInvalidDomain, d)
			}
		}
	}
	return d, nil
}

// HostAllowed reports whether host is one of domains or a subdomain of one.
// Both sides are expected normalized (lowercase, no trailing dot).
func HostAllowed(host string, domains []string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	for _, d := range domains {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// Check parses raw as a redirect target and accepts it only when it is an absolute http(s)
// URL without credentials or control characters whose host is on domains.
func Check(raw string, domains []string) (*url.URL, error) {
	if raw == "" || len(raw) > maxURLLength {
		return nil, ErrNotAbsolute
	}
	for _, r := range raw {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '\\' {
			return nil, ErrNotAbsolute
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return nil, ErrNotAbsolute
	}
	if scheme := strings.ToLower(u.Scheme); scheme != "http" && scheme != "https" {
		return nil, ErrNotAbsolute
	}
	if u.User != nil {
		return nil, ErrUserInfo
	}
	if !HostAllowed(u.Hostname(), domains) {
		return nil, ErrNotAllowed
	}
	return u, nil
}

// Placeholder tells a domain no real shop uses (the default program's example.com, reserved
// test and example names, loopback), which a program has to replace before it goes live.
func Placeholder(d string) bool {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	for _, reserved := range []string{"example.com", "example.org", "example.net", "test", "example", "invalid", "localhost"} {
		if d == reserved || strings.HasSuffix(d, "."+reserved) {
			return true
		}
	}
	return strings.HasPrefix(d, "127.") || d == "::1"
}
