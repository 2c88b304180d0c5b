// Package edgewire is what the primary and its redirect nodes send each other through NATS
// JetStream (docs/scaling.md): the code catalog the primary publishes to a key-value bucket,
// the in-memory catalog a node resolves codes from, and the click a node publishes.
//
// The catalog is normalized as the database is: one key per program, affiliate and link, so a
// change is one small write (a suspended affiliate is one key, a program's new domains one key
// for all its links) and a node joins them when it resolves a code. Keys are
// "p.<program id>", "a.<affiliate id>", "l.<link id>" and "x.<code alias id>", plus the one
// "s.ratelimits" (the primary's rate-limit rules, which a node applies as the primary does);
// values are JSON with a format version, so a node refuses values of a format it does not know
// instead of misreading them.
package edgewire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
)

// Version is the format of the values this package writes and reads.
const Version = 1

// Key prefixes, one per kind of record.
const (
	programPrefix   = "p."
	affiliatePrefix = "a."
	linkPrefix      = "l."
	aliasPrefix     = "x."
)

// Program is what a redirect needs of a program.
type Program struct {
	ID          string   `json:"id"`
	Destination string   `json:"destination"`
	Domains     []string `json:"domains"`     // normalized (urlpolicy.NormalizeDomain)
	CookieDays  int      `json:"cookie_days"` // defaulted by the primary, never 0
	Active      bool     `json:"active"`
}

// Affiliate is what a redirect needs of an affiliate: its own code and its status.
type Affiliate struct {
	ID      string `json:"id"`
	Program string `json:"program"`
	Code    string `json:"code"` // lowercase
	Status  string `json:"status"`
}

// Link is what a redirect needs of a link.
type Link struct {
	ID          string `json:"id"`
	Code        string `json:"code"` // lowercase
	Affiliate   string `json:"affiliate"`
	Program     string `json:"program"`
	Destination string `json:"destination"`
	SubID       string `json:"sub_id"`
	Archived    bool   `json:"archived"`
}

// Alias is an imported legacy code (code_aliases): it answers for its affiliate when no link
// or affiliate has the code.
type Alias struct {
	ID        string `json:"id"`
	Code      string `json:"code"` // lowercase
	Affiliate string `json:"affiliate"`
}

// RateLimitsKey is the key of the primary's rate-limit settings.
const RateLimitsKey = "s.ratelimits"

// RateLimits is the primary's rate limiter settings (PocketBase's settings.rateLimits): a node
// applies them to the routes it serves (POST /api/pba/clicks, track.js), so a flood is refused
// on every node as on the primary.
type RateLimits struct {
	Enabled     bool            `json:"enabled"`
	ExcludedIPs []string        `json:"excluded_ips"`
	Rules       []RateLimitRule `json:"rules"`
}

// RateLimitRule is one of PocketBase's rules: at most MaxRequests per Duration seconds from
// one client on the requests Label names, for Audience ("", "@guest" or "@auth").
type RateLimitRule struct {
	Label       string `json:"label"`
	Audience    string `json:"audience"`
	MaxRequests int    `json:"max_requests"`
	Duration    int64  `json:"duration"`
}

// RateLimitsEntry encodes the rate-limit settings as their key and value.
func RateLimitsEntry(r RateLimits) (Entry, error) { return entry(RateLimitsKey, r) }

// envelope is the stored form of every value.
type envelope[T any] struct {
	V    int `json:"v"`
	Data T   `json:"data"`
}

// Entry is one key and its value, ready to put in the bucket.
type Entry struct {
	Key   string
	Value []byte
}

// ProgramEntry, AffiliateEntry and LinkEntry encode a record as its key and value.
func ProgramEntry(p Program) (Entry, error)     { return entry(programPrefix+p.ID, p) }
func AffiliateEntry(a Affiliate) (Entry, error) { return entry(affiliatePrefix+a.ID, a) }
func LinkEntry(l Link) (Entry, error)           { return entry(linkPrefix+l.ID, l) }
func AliasEntry(a Alias) (Entry, error)         { return entry(aliasPrefix+a.ID, a) }

// ProgramKey, AffiliateKey and LinkKey are the keys of a record, for deleting it.
func ProgramKey(id string) string   { return programPrefix + id }
func AffiliateKey(id string) string { return affiliatePrefix + id }
func LinkKey(id string) string      { return linkPrefix + id }
func AliasKey(id string) string     { return aliasPrefix + id }

func entry[T any](key string, v T) (Entry, error) {
	b, err := json.Marshal(envelope[T]{V: Version, Data: v})
	if err != nil {
		return Entry{}, fmt.Errorf("encode %s: %w", key, err)
	}
	return Entry{Key: key, Value: b}, nil
}

func decode[T any](key string, value []byte) (T, error) {
	var env envelope[T]
	if err := json.Unmarshal(value, &env); err != nil {
		return env.Data, fmt.Errorf("decode %s: %w", key, err)
	}
	if env.V != Version {
		return env.Data, fmt.Errorf("decode %s: format %d, this node reads %d", key, env.V, Version)
	}
	return env.Data, nil
}

// Target is what a code resolves to: the ids a click names, the checked destination and what
// decides whether the code credits clicks (the caller maps Status, Active and Archived to its
// inactive reason, as the primary's resolver does).
type Target struct {
	LinkID, AffiliateID, ProgramID string
	// Destination is the link's own, else the program's; ProgramDestination is the program's,
	// where an inactive code sends its visitor.
	Destination, ProgramDestination clickpolicy.Destination
	CookieDays                      int
	SubID                           string
	Status                          string // the affiliate's
	Active                          bool   // the program's
	Archived                        bool   // the link's
}

// Catalog holds the entries a node has seen and resolves codes from them. It is safe for
// concurrent use: one goroutine applies the bucket's updates while requests resolve.
type Catalog struct {
	mu         sync.RWMutex
	programs   map[string]Program
	affiliates map[string]Affiliate
	links      map[string]Link
	aliases    map[string]Alias
	byCode     map[string]string // code → "a.<id>" or "l.<id>"
	byAlias    map[string]string // legacy code → alias id, looked at after byCode
	rateLimits *RateLimits       // nil until the primary's arrive
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{programs: map[string]Program{}, affiliates: map[string]Affiliate{},
		links: map[string]Link{}, aliases: map[string]Alias{}, byCode: map[string]string{}, byAlias: map[string]string{}}
}

// ErrUnknownKey is returned by Put for a key of no known kind.
var ErrUnknownKey = errors.New("edgewire: unknown key")

// Put stores the value of key; a value of an unknown format is refused and changes nothing.
func (c *Catalog) Put(key string, value []byte) error {
	switch {
	case strings.HasPrefix(key, programPrefix):
		p, err := decode[Program](key, value)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.programs[p.ID] = p
		c.mu.Unlock()
	case strings.HasPrefix(key, affiliatePrefix):
		a, err := decode[Affiliate](key, value)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.dropCode(key, c.affiliates[a.ID].Code)
		c.affiliates[a.ID] = a
		c.setCode(key, a.Code)
		c.mu.Unlock()
	case strings.HasPrefix(key, linkPrefix):
		l, err := decode[Link](key, value)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.dropCode(key, c.links[l.ID].Code)
		c.links[l.ID] = l
		c.setCode(key, l.Code)
		c.mu.Unlock()
	case strings.HasPrefix(key, aliasPrefix):
		a, err := decode[Alias](key, value)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.dropAlias(c.aliases[a.ID])
		c.aliases[a.ID] = a
		if a.Code != "" {
			c.byAlias[a.Code] = a.ID
		}
		c.mu.Unlock()
	case key == RateLimitsKey:
		r, err := decode[RateLimits](key, value)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.rateLimits = &r
		c.mu.Unlock()
	default:
		return fmt.Errorf("%w %q", ErrUnknownKey, key)
	}
	return nil
}

// RateLimits is the primary's rate-limit settings, nil until they arrived. Each put is a new
// value, so a caller keeping state per settings (counters) can tell a change by the pointer;
// the value is shared and must not be modified.
func (c *Catalog) RateLimits() *RateLimits {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rateLimits
}

func (c *Catalog) dropAlias(a Alias) {
	if a.Code != "" && c.byAlias[a.Code] == a.ID {
		delete(c.byAlias, a.Code)
	}
}

// Delete forgets key (a deleted record).
func (c *Catalog) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(key) < 2 {
		return
	}
	switch id := key[2:]; {
	case key == RateLimitsKey:
		c.rateLimits = nil
	case strings.HasPrefix(key, programPrefix):
		delete(c.programs, id)
	case strings.HasPrefix(key, affiliatePrefix):
		c.dropCode(key, c.affiliates[id].Code)
		delete(c.affiliates, id)
	case strings.HasPrefix(key, linkPrefix):
		c.dropCode(key, c.links[id].Code)
		delete(c.links, id)
	case strings.HasPrefix(key, aliasPrefix):
		c.dropAlias(c.aliases[id])
		delete(c.aliases, id)
	}
}

// setCode and dropCode keep byCode; a link's code wins over an affiliate's, as in the
// primary's resolver (the shared namespace makes a clash a transient state at most).
func (c *Catalog) setCode(key, code string) {
	if code == "" {
		return
	}
	if cur, ok := c.byCode[code]; ok && strings.HasPrefix(cur, linkPrefix) && !strings.HasPrefix(key, linkPrefix) {
		return
	}
	c.byCode[code] = key
}

func (c *Catalog) dropCode(key, code string) {
	if code != "" && c.byCode[code] == key {
		delete(c.byCode, code)
	}
}

// Len is the number of codes the catalog resolves (legacy codes included).
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byCode) + len(c.byAlias)
}

// Resolve returns the target of code (lowercase), or false when the code is unknown or a
// record it needs (its affiliate, its program) has not arrived.
func (c *Catalog) Resolve(code string) (Target, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	key, ok := c.byCode[code]
	if !ok {
		// An imported legacy code answers for its affiliate, after link and affiliate codes,
		// as in the primary's resolver.
		id, ok := c.byAlias[code]
		if !ok {
			return Target{}, false
		}
		key = affiliatePrefix + c.aliases[id].Affiliate
	}
	var t Target
	dest := ""
	if id, isLink := strings.CutPrefix(key, linkPrefix); isLink {
		l := c.links[id]
		a, ok := c.affiliates[l.Affiliate]
		if !ok || a.Program != l.Program {
			return Target{}, false
		}
		t.LinkID, t.AffiliateID, t.ProgramID = l.ID, a.ID, l.Program
		t.SubID, t.Archived, t.Status, dest = l.SubID, l.Archived, a.Status, l.Destination
	} else {
		a, ok := c.affiliates[strings.TrimPrefix(key, affiliatePrefix)]
		if !ok {
			return Target{}, false
		}
		t.AffiliateID, t.ProgramID, t.Status = a.ID, a.Program, a.Status
	}
	p, ok := c.programs[t.ProgramID]
	if !ok {
		return Target{}, false
	}
	t.Active, t.CookieDays = p.Active, p.CookieDays
	t.ProgramDestination = clickpolicy.NewDestination(p.Destination, p.Domains)
	t.Destination = t.ProgramDestination
	if dest != "" {
		t.Destination = clickpolicy.NewDestination(dest, p.Domains)
	}
	return t, true
}
