package hooks

import (
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/types"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/codes"
)

// maxResolverEntries bounds the code cache (hits and misses); past it the cache starts over,
// so a flood of made-up codes costs memory only up to this bound.
const maxResolverEntries = 100_000

// linkTarget is what /r/{code} needs to answer without touching the database.
type linkTarget struct {
	LinkID      string // "" when the code is an affiliate's own code
	AffiliateID string
	ProgramID   string
	Destination clickpolicy.Destination // checked against the program's allowed domains
	CookieDays  int
	SubID       string // the link's default sub_id
	// Inactive is why the code credits no click (collections.Inactive*), "" when it does;
	// then Destination is the program's own (redirect_doors.go).
	Inactive string
	// missUntil marks a cached miss (Unix nanoseconds it is trusted until); 0 for a target.
	missUntil int64
}

// missTTL is how long an unknown code is remembered as unknown. Record hooks clear the cache
// for changes made in this process only: a code another process creates on the same database
// (`pbaffiliate import` while the server runs) answers within this time.
const missTTL = time.Minute

// codeResolver maps link and affiliate codes, and imported legacy codes, to their redirect
// target, from memory. Record hooks on links, affiliates, programs and code aliases
// invalidate it; a generation counter keeps a lookup that raced with an invalidation from
// storing what it read before the change.
type codeResolver struct {
	app     core.App
	mu      sync.RWMutex
	gen     uint64
	entries map[string]*linkTarget // a missUntil entry: known not to resolve, for now
	now     func() time.Time       // of the misses' expiry
}

func newCodeResolver(app core.App) *codeResolver {
	r := &codeResolver{app: app, entries: map[string]*linkTarget{}, now: time.Now}
	invalidate := func(e *core.RecordEvent) error {
		r.invalidate()
		return e.Next()
	}
	for _, name := range []string{collections.Links, collections.Affiliates, collections.Programs, collections.CodeAliases} {
		app.OnRecordAfterCreateSuccess(name).BindFunc(invalidate)
		app.OnRecordAfterUpdateSuccess(name).BindFunc(invalidate)
		app.OnRecordAfterDeleteSuccess(name).BindFunc(invalidate)
	}
	return r
}

// invalidate forgets everything: changes to links, affiliates and programs are rare next to
// clicks, and a full reset cannot miss a dependent entry (a program change moves all its links).
func (r *codeResolver) invalidate() {
	r.mu.Lock()
	r.gen++
	clear(r.entries)
	r.mu.Unlock()
}

// resolve returns the target of code, or nil when the code is unknown. The target of an
// affiliate that is not approved, of an archived link or of an inactive program says why in
// Inactive, so those doors are answered from the cache too.
func (r *codeResolver) resolve(code string) (*linkTarget, error) {
	if !codes.ValidAlias(code) { // every code, and every imported legacy code, is one
		return nil, nil
	}
	r.mu.RLock()
	t, ok := r.entries[code]
	gen := r.gen
	r.mu.RUnlock()
	if ok {
		if t.missUntil == 0 {
			return t, nil
		}
		if r.now().UnixNano() < t.missUntil {
			return nil, nil
		}
	}
	t, err := r.load(code)
	if err != nil {
		return nil, err
	}
	entry := t
	if t == nil {
		entry = &linkTarget{missUntil: r.now().Add(missTTL).UnixNano()}
	}
	r.mu.Lock()
	if r.gen == gen {
		if len(r.entries) >= maxResolverEntries {
			clear(r.entries)
		}
		r.entries[code] = entry
	}
	r.mu.Unlock()
	return t, nil
}

func (r *codeResolver) load(code string) (*linkTarget, error) {
	var row struct {
		LinkID      string `db:"link_id"`
		AffiliateID string `db:"affiliate_id"`
		ProgramID   string `db:"program_id"`
		LinkDest    string `db:"link_dest"`
		ProgramDest string `db:"program_dest"`
		Domains     string `db:"domains"`
		CookieDays  int    `db:"cookie_days"`
		SubID       string `db:"sub_id"`
		Status      string `db:"status"`
		Active      bool   `db:"active"`
		Archived    bool   `db:"archived"`
	}
	const fromLink = `SELECT l.id AS link_id, a.id AS affiliate_id, p.id AS program_id, l.destination AS link_dest,
		p.destination AS program_dest, p.allowed_domains AS domains, p.cookie_days AS cookie_days, l.sub_id AS sub_id,
		a.status AS status, p.active AS active, l.archived AS archived
		FROM links l JOIN affiliates a ON a.id = l.affiliate JOIN programs p ON p.id = l.program
		WHERE l.code = {:code} AND a.program = p.id LIMIT 1`
	const fromAffiliate = `SELECT '' AS link_id, a.id AS affiliate_id, p.id AS program_id, '' AS link_dest,
		p.destination AS program_dest, p.allowed_domains AS domains, p.cookie_days AS cookie_days, '' AS sub_id,
		a.status AS status, p.active AS active, FALSE AS archived
		FROM affiliates a JOIN programs p ON p.id = a.program
		WHERE a.code = {:code} LIMIT 1`
	// An imported legacy code (hooks/import.go) answers for its affiliate, after link and
	// affiliate codes: a code of ours always wins. Only misses reach this query, and its
	// answer is cached like the others, so an old link costs what a new one does.
	const fromAlias = `SELECT '' AS link_id, a.id AS affiliate_id, p.id AS program_id, '' AS link_dest,
		p.destination AS program_dest, p.allowed_domains AS domains, p.cookie_days AS cookie_days, '' AS sub_id,
		a.status AS status, p.active AS active, FALSE AS archived
		FROM code_aliases x JOIN affiliates a ON a.id = x.affiliate JOIN programs p ON p.id = a.program
		WHERE x.code = {:code} LIMIT 1`
	queries := []string{fromLink, fromAffiliate, fromAlias}
	if !codes.Valid(code) {
		queries = queries[2:] // only an imported code can look like this
	}
	for _, query := range queries {
		err := r.app.DB().NewQuery(query).Bind(dbx.Params{"code": code}).One(&row)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("resolve code %q: %w", code, err)
		}
		domains, err := NormalizeDomains(types.JSONRaw(row.Domains))
		if err != nil {
			return nil, fmt.Errorf("program %s domains: %w", row.ProgramID, err)
		}
		inactive := InactiveReason(row.Status, row.Active, row.Archived)
		dest := row.LinkDest
		if dest == "" || inactive != "" {
			dest = row.ProgramDest
		}
		cookieDays := row.CookieDays
		if cookieDays <= 0 {
			cookieDays = collections.DefaultCookieDays
		}
		return &linkTarget{
			LinkID: row.LinkID, AffiliateID: row.AffiliateID, ProgramID: row.ProgramID,
			Destination: clickpolicy.NewDestination(dest, domains), CookieDays: cookieDays, SubID: row.SubID,
			Inactive: inactive,
		}, nil
	}
	return nil, nil
}
