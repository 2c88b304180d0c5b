package hooks

import (
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestResolverMissExpires: an unknown code is remembered as unknown for missTTL only, so a
// legacy code another process imports (its writes fire no hook here) answers within it.
func TestResolverMissExpires(t *testing.T) {
	app := pbatest.TempApp(t)
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		t.Fatal(err)
	}
	r := newCodeResolver(app)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	a, err := pbatest.Save(app, collections.Affiliates, map[string]any{"name": "Zed", "email": "zed@example.com", "password": pbatest.Password,
		"code": "zed-x", "program": program.Id, "status": collections.AffiliateApproved})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.resolve("zed_x"); err != nil || got != nil {
		t.Fatalf("unknown code: %v, %v", got, err)
	}
	// Another process's import: a row, and no record hook in this one.
	if _, err := app.DB().NewQuery("INSERT INTO code_aliases (id, code, affiliate, source, created, updated) VALUES ('alias0000000001', 'zed_x', {:a}, 'csv', '', '')").
		Bind(dbx.Params{"a": a.Id}).Execute(); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.resolve("zed_x"); got != nil {
		t.Fatalf("a cached miss answered %+v before it expired", got)
	}
	now = now.Add(missTTL)
	if got, err := r.resolve("zed_x"); err != nil || got == nil || got.AffiliateID != a.Id || got.LinkID != "" {
		t.Fatalf("after %v: %+v, %v; want affiliate %s", missTTL, got, err, a.Id)
	}
}
