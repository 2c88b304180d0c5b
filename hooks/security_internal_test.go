package hooks

import (
	"net/http/httptest"
	"testing"
)

// TestUntrustedProxyHeader: the warning is for a proxy in front of the server (a private or
// loopback peer sending a client-address header) whose header is not trusted.
func TestUntrustedProxyHeader(t *testing.T) {
	for _, c := range []struct {
		name, remote, header string
		trusted              []string
		want                 string
	}{
		{"proxy, nothing trusted", "127.0.0.1", "X-Forwarded-For", nil, "X-Forwarded-For"},
		{"private proxy, Cloudflare header", "10.1.2.3", "Cf-Connecting-Ip", nil, "Cf-Connecting-Ip"},
		{"proxy, header trusted", "127.0.0.1", "X-Forwarded-For", []string{"X-Forwarded-For"}, ""},
		{"public client sending the header", "203.0.113.9", "X-Forwarded-For", nil, ""},
		{"proxy without the header", "127.0.0.1", "", nil, ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set(c.header, "198.51.100.1")
		}
		if got := untrustedProxyHeader(r, c.remote, c.trusted); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
