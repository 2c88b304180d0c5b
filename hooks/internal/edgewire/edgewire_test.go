package edgewire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustPut(t *testing.T, c *Catalog, e Entry, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(e.Key, e.Value); err != nil {
		t.Fatal(err)
	}
}

func TestCatalogResolvesJoinedRecords(t *testing.T) {
	c := NewCatalog()
	e, err := ProgramEntry(Program{ID: "p1", Destination: "https://shop.example/", Domains: []string{"shop.example"}, CookieDays: 30, Active: true})
	mustPut(t, c, e, err)
	e, err = AffiliateEntry(Affiliate{ID: "a1", Program: "p1", Code: "anna", Status: "approved"})
	mustPut(t, c, e, err)
	e, err = LinkEntry(Link{ID: "l1", Code: "spring", Affiliate: "a1", Program: "p1", Destination: "https://shop.example/sale", SubID: "news"})
	mustPut(t, c, e, err)

	link, ok := c.Resolve("spring")
	if !ok || link.LinkID != "l1" || link.AffiliateID != "a1" || link.ProgramID != "p1" || link.SubID != "news" ||
		link.CookieDays != 30 || !link.Active || link.Status != "approved" {
		t.Fatalf("link target %+v %v", link, ok)
	}
	if got, err := link.Destination.Target("", "c1"); err != nil || got != "https://shop.example/sale?pba_click=c1" {
		t.Fatalf("link destination %q %v", got, err)
	}
	// The open-redirect rule of the primary: a deep link off the program's domains is ignored.
	if got, _ := link.Destination.Target("https://evil.example/", "c1"); !strings.HasPrefix(got, "https://shop.example/sale") {
		t.Fatalf("deep link off the domains followed: %q", got)
	}
	own, ok := c.Resolve("anna")
	if !ok || own.LinkID != "" || own.AffiliateID != "a1" {
		t.Fatalf("affiliate target %+v %v", own, ok)
	}
	if got, _ := own.Destination.Target("", ""); got != "https://shop.example/" {
		t.Fatalf("affiliate destination %q", got)
	}

	// A suspension is one key: both codes see it.
	e, err = AffiliateEntry(Affiliate{ID: "a1", Program: "p1", Code: "anna", Status: "suspended"})
	mustPut(t, c, e, err)
	if l, _ := c.Resolve("spring"); l.Status != "suspended" {
		t.Fatalf("link after suspension: %+v", l)
	}
	// A changed code frees the old one; a deleted link no longer resolves.
	e, err = AffiliateEntry(Affiliate{ID: "a1", Program: "p1", Code: "anna2", Status: "approved"})
	mustPut(t, c, e, err)
	if _, ok := c.Resolve("anna"); ok {
		t.Fatal("old affiliate code still resolves")
	}
	c.Delete(LinkKey("l1"))
	if _, ok := c.Resolve("spring"); ok {
		t.Fatal("deleted link still resolves")
	}
	// Without its program a code does not resolve (never half a target).
	c.Delete(ProgramKey("p1"))
	if _, ok := c.Resolve("anna2"); ok {
		t.Fatal("code resolves without its program")
	}
	if c.Len() != 1 {
		t.Fatalf("codes %d", c.Len())
	}
}

func TestCatalogLinkCodeWinsAndBadValuesChangeNothing(t *testing.T) {
	c := NewCatalog()
	e, err := ProgramEntry(Program{ID: "p1", Destination: "https://shop.example/", Domains: []string{"shop.example"}, CookieDays: 30, Active: true})
	mustPut(t, c, e, err)
	e, err = LinkEntry(Link{ID: "l1", Code: "same", Affiliate: "a1", Program: "p1"})
	mustPut(t, c, e, err)
	e, err = AffiliateEntry(Affiliate{ID: "a1", Program: "p1", Code: "same", Status: "approved"})
	mustPut(t, c, e, err)
	if got, ok := c.Resolve("same"); !ok || got.LinkID != "l1" {
		t.Fatalf("link code should win: %+v", got)
	}
	if err := c.Put("a.a1", []byte(`{"v":2,"data":{"id":"a1","code":"x"}}`)); err == nil {
		t.Fatal("a value of a future format was read")
	}
	if err := c.Put("a.a1", []byte(`not json`)); err == nil {
		t.Fatal("garbage was read")
	}
	if err := c.Put("z.1", e.Value); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	if got, ok := c.Resolve("same"); !ok || got.Status != "approved" {
		t.Fatalf("refused values changed the catalog: %+v", got)
	}
	// A link whose affiliate moved to another program does not resolve (the primary's join).
	e, err = AffiliateEntry(Affiliate{ID: "a1", Program: "p2", Code: "other", Status: "approved"})
	mustPut(t, c, e, err)
	if _, ok := c.Resolve("same"); ok {
		t.Fatal("link of an affiliate of another program resolves")
	}
}

func TestClickRoundTrip(t *testing.T) {
	in := Click{ID: "c1", Link: "l1", Affiliate: "a1", Program: "p1", Visitor: "c1", NewVisitor: true,
		IPHash: "h", NetworkHash: "n", UserAgent: "ua", Created: 1_700_000_000_123}
	b, err := EncodeClick(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeClick(b)
	if err != nil {
		t.Fatal(err)
	}
	in.V = Version
	if out != in || out.CreatedTime().UnixMilli() != in.Created {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
	for _, bad := range []string{`{"v":1,"id":"c1","program":"p1"}`, `{"v":9,"id":"c1","affiliate":"a1","program":"p1"}`, `[`} {
		if _, err := DecodeClick([]byte(bad)); err == nil {
			t.Fatalf("accepted %s", bad)
		}
	}
}

// TestCatalogAliases: an imported legacy code answers for its affiliate after link and
// affiliate codes (a code of ours wins), keeps answering when it equals its affiliate's code
// and that code changes, and stops with its deletion.
func TestCatalogAliases(t *testing.T) {
	c := NewCatalog()
	e, err := ProgramEntry(Program{ID: "p1", Destination: "https://shop.example/", Domains: []string{"shop.example"}, CookieDays: 30, Active: true})
	mustPut(t, c, e, err)
	e, err = AffiliateEntry(Affiliate{ID: "a1", Program: "p1", Code: "anna", Status: "approved"})
	mustPut(t, c, e, err)
	e, err = AffiliateEntry(Affiliate{ID: "a2", Program: "p1", Code: "bert", Status: "approved"})
	mustPut(t, c, e, err)
	for _, a := range []Alias{{ID: "x1", Code: "old_anna.1", Affiliate: "a1"}, {ID: "x2", Code: "anna", Affiliate: "a1"}, {ID: "x3", Code: "bert", Affiliate: "a1"}} {
		e, err = AliasEntry(a)
		mustPut(t, c, e, err)
	}
	if got, ok := c.Resolve("old_anna.1"); !ok || got.AffiliateID != "a1" || got.LinkID != "" || got.CookieDays != 30 {
		t.Fatalf("alias target %+v %v", got, ok)
	}
	if got, _ := c.Resolve("bert"); got.AffiliateID != "a2" {
		t.Fatalf("an alias won over an affiliate's code: %+v", got)
	}
	e, err = AffiliateEntry(Affiliate{ID: "a1", Program: "p1", Code: "anna-new", Status: "approved"})
	mustPut(t, c, e, err)
	if got, ok := c.Resolve("anna"); !ok || got.AffiliateID != "a1" {
		t.Fatalf("the legacy code equal to the old own code: %+v %v", got, ok)
	}
	if c.Len() != 5 { // anna-new, bert and three legacy codes
		t.Fatalf("Len %d", c.Len())
	}
	c.Delete(AliasKey("x1"))
	if _, ok := c.Resolve("old_anna.1"); ok {
		t.Fatal("a deleted alias still resolves")
	}
	c.Delete(AffiliateKey("a1"))
	if _, ok := c.Resolve("anna"); ok {
		t.Fatal("the alias of a deleted affiliate still resolves")
	}
}

// TestCatalogRateLimits: the primary's rate-limit settings arrive as one key; each put is a new
// value (a node resets its counters on a change), a deletion forgets them, a value of another
// format changes nothing.
func TestCatalogRateLimits(t *testing.T) {
	c := NewCatalog()
	if c.RateLimits() != nil {
		t.Fatal("rate limits before any arrived")
	}
	want := RateLimits{Enabled: true, ExcludedIPs: []string{"10.0.0.0/8"},
		Rules: []RateLimitRule{{Label: "POST /api/pba/clicks", MaxRequests: 300, Duration: 10}}}
	e, err := RateLimitsEntry(want)
	if err != nil || e.Key != RateLimitsKey {
		t.Fatal(e.Key, err)
	}
	if err := c.Put(e.Key, e.Value); err != nil {
		t.Fatal(err)
	}
	first := c.RateLimits()
	if first == nil || !reflect.DeepEqual(*first, want) {
		t.Fatalf("got %+v, want %+v", first, want)
	}
	if err := c.Put(e.Key, e.Value); err != nil || c.RateLimits() == first {
		t.Fatalf("a second put is not a new value (%v)", err)
	}
	if err := c.Put(e.Key, []byte(`{"v":99,"data":{"enabled":false}}`)); err == nil || !c.RateLimits().Enabled {
		t.Fatalf("a value of another format was taken (%v)", err)
	}
	if c.Len() != 0 {
		t.Fatalf("the settings count as %d codes", c.Len())
	}
	c.Delete(RateLimitsKey)
	if c.RateLimits() != nil {
		t.Fatal("deleted settings kept")
	}
}
