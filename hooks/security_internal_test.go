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

// TestRedactQuery: secret parameters lose their values however they are spelled; the rest of
// the query stays as sent.
func TestRedactQuery(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"txid=1&amount=5.00":           "txid=1&amount=5.00",
		"key=s3cret&txid=1":            "key=REDACTED&txid=1",
		"txid=1&KEY=s3cret":            "txid=1&KEY=REDACTED",
		"%6Bey=s3cret&b=2":             "key=REDACTED&b=2",
		"token=a.b&token=c":            "token=REDACTED&token=REDACTED",
		"key":                          "key=REDACTED",
		"monkey=1&keys=2&secret=x&a=b": "monkey=1&keys=2&secret=REDACTED&a=b",
	} {
		if got, _ := redactQuery(in); got != want {
			t.Errorf("redactQuery(%q) = %q, want %q", in, got, want)
		}
	}
}
