package urlpolicy

import (
	"errors"
	"testing"
)

func TestNormalizeDomain(t *testing.T) {
	ok := map[string]string{
		"Example.COM.": "example.com", "https://Shop.Example.com/path?x=1": "shop.example.com",
		"*.example.com": "example.com", " xn--bcher-kva.example ": "xn--bcher-kva.example", "127.0.0.1": "127.0.0.1",
	}
	for in, want := range ok {
		if got, err := NormalizeDomain(in); err != nil || got != want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "exa mple.com", "-bad.com", "bad-.com", "a..b", "bücher.example", "ex_ample.com"} {
		if got, err := NormalizeDomain(bad); !errors.Is(err, ErrInvalidDomain) {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want ErrInvalidDomain", bad, got, err)
		}
	}
}

func TestCheck(t *testing.T) {
	domains := []string{"example.com"}
	for _, good := range []string{"https://example.com/", "http://shop.example.com/a?b=c#d", "https://EXAMPLE.com:8443/x"} {
		if _, err := Check(good, domains); err != nil {
			t.Errorf("Check(%q): %v", good, err)
		}
	}
	bad := map[string]error{
		"https://evil.test/":               ErrNotAllowed,
		"https://example.com.evil.test/":   ErrNotAllowed,
		"https://notexample.com/":          ErrNotAllowed,
		"https://example.com@evil.test/":   ErrUserInfo,
		"https://user:pw@example.com/":     ErrUserInfo,
		"//example.com/":                   ErrNotAbsolute,
		"/path":                            ErrNotAbsolute,
		"javascript:alert(1)":              ErrNotAbsolute,
		"data:text/html,hi":                ErrNotAbsolute,
		"ftp://example.com/":               ErrNotAbsolute,
		"https://example.com/\nSet-Cookie": ErrNotAbsolute,
		"https://example.com\\@evil.test":  ErrNotAbsolute,
		"":                                 ErrNotAbsolute,
	}
	for raw, want := range bad {
		if _, err := Check(raw, domains); !errors.Is(err, want) {
			t.Errorf("Check(%q) = %v, want %v", raw, err, want)
		}
	}
}

func TestPlaceholder(t *testing.T) {
	for d, want := range map[string]bool{
		"example.com": true, "shop.example.com": true, "Example.ORG.": true, "partners.test": true,
		"localhost": true, "127.0.0.1": true, "acme.com": false, "notexample.com": false, "test.acme.io": false,
	} {
		if got := Placeholder(d); got != want {
			t.Errorf("Placeholder(%q) = %v, want %v", d, got, want)
		}
	}
}
