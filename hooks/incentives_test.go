package hooks_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/dbx"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// incentive creates a campaign through the records API as a superuser (as the back office
// does) and returns its id.
func (e *engineEnv) incentive(fields map[string]any) string {
	e.t.Helper()
	body := map[string]any{"program": fx.ProgramP, "name": "Campaign", "eligibility": "all", "active": true}
	for k, v := range fields {
		body[k] = v
	}
	raw, _ := json.Marshal(body)
	res := pbatest.Request(e.handler, http.MethodPost, "/api/collections/incentives/records", fx.Superuser.Token, string(raw))
	if res.Code != 200 {
		e.t.Fatalf("create incentive %s: %d %s", raw, res.Code, res.Body)
	}
	return res.JSON["id"].(string)
}

// importedSale records a sale of P (the default program) as a superuser importing history, so it may have
// occurred long ago (campaign boundaries of fixed past dates).
func (e *engineEnv) importedSale(code string, amount int, at time.Time) string {
	e.t.Helper()
	e.n++
	rec := pbatest.Request(e.handler, http.MethodPost, conversionsAPI, fx.Superuser.Token,
		fmt.Sprintf(`{"affiliate_code":%q,"external_id":"inc-%d","amount":%d,"currency":"usd","occurred_at":%q,"imported":true}`,
			code, e.n, amount, at.UTC().Format(time.RFC3339Nano)))
	if rec.Code != 201 {
		e.t.Fatalf("imported sale: %d %s", rec.Code, rec.Body)
	}
	return rec.JSON["id"].(string)
}

// bonusRefs lists the refs of the affiliate's bonus commissions with the given prefix.
func (e *engineEnv) bonusRefs(affiliate, prefix string) []string {
	e.t.Helper()
	var refs []string
	err := e.app.DB().NewQuery("SELECT ref FROM commissions WHERE affiliate = {:a} AND kind = 'bonus' AND ref LIKE {:p} ORDER BY ref").
		Bind(dbx.Params{"a": affiliate, "p": prefix + "%"}).Column(&refs)
	if err != nil {
		e.t.Fatal(err)
	}
	return refs
}

// Every field an admin gets wrong is a 400 naming it, and nothing is stored.
func TestIncentiveValidation(t *testing.T) {
	env := newEngineEnv(t)
	start, end := time.Now().UTC(), time.Now().UTC().Add(24*time.Hour)
	base := map[string]any{"program": fx.ProgramP, "name": "Bad", "eligibility": "all", "kind": "rate_boost", "value": 500,
		"starts_at": start, "ends_at": end, "active": true}
	for _, c := range []struct {
		field  string
		change map[string]any
	}{
		{"ends_at", map[string]any{"ends_at": start}},
		{"ends_at", map[string]any{"ends_at": start.Add(-time.Second)}},
		{"value", map[string]any{"value": 0}},
		{"value", map[string]any{"value": 10001}},
		{"kind", map[string]any{"program": fx.ProgramQ}}, // Q pays a flat amount: no rate boost
		{"value", map[string]any{"kind": "multiplier", "value": 1000}},
		{"value", map[string]any{"kind": "multiplier", "value": 10001}},
		{"bonus", map[string]any{"kind": "per_sale_bonus", "bonus": 0}},
		{"threshold", map[string]any{"kind": "per_sale_bonus", "bonus": 100, "threshold": -1}},
		{"target_kind", map[string]any{"kind": "target_bonus", "bonus": 100, "target": 3}},
		{"target", map[string]any{"kind": "target_bonus", "bonus": 100, "target_kind": "sales"}},
		{"tiers", map[string]any{"eligibility": "tiers"}},
		{"affiliates", map[string]any{"eligibility": "affiliates"}},
		{"tiers", map[string]any{"program": fx.ProgramQ, "kind": "multiplier", "value": 1500, "eligibility": "tiers", "tiers": []string{fx.TierP}}},
		{"affiliates", map[string]any{"program": fx.ProgramQ, "kind": "multiplier", "value": 1500, "eligibility": "affiliates", "affiliates": []string{fx.A.ID}}},
	} {
		body := map[string]any{}
		for k, v := range base {
			body[k] = v
		}
		for k, v := range c.change {
			body[k] = v
		}
		raw, _ := json.Marshal(body)
		res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/incentives/records", fx.Superuser.Token, string(raw))
		data, _ := res.JSON["data"].(map[string]any)
		if res.Code != 400 || data[c.field] == nil {
			t.Errorf("%v: %d %s, want 400 naming %s", c.change, res.Code, res.Body, c.field)
		}
	}
	if n, _ := env.app.CountRecords(collections.Incentives); n != 0 {
		t.Fatalf("%d refused campaigns stored", n)
	}
	// The program's time zone is an IANA zone.
	res := pbatest.Request(env.handler, http.MethodPatch, "/api/collections/programs/records/"+fx.ProgramP, fx.Superuser.Token, `{"timezone":"Mars/Olympus"}`)
	if data, _ := res.JSON["data"].(map[string]any); res.Code != 400 || data["timezone"] == nil {
		t.Fatalf("bad time zone: %d %s", res.Code, res.Body)
	}
	// announced_at belongs to the mail worker: a save cannot set or clear it.
	id := env.incentive(map[string]any{"kind": "rate_boost", "value": 500, "starts_at": start, "ends_at": end})
	res = pbatest.Request(env.handler, http.MethodPatch, "/api/collections/incentives/records/"+id, fx.Superuser.Token, `{"announced_at":"2026-01-01 00:00:00.000Z"}`)
	if res.Code != 200 || res.JSON["announced_at"] != "" {
		t.Fatalf("announced_at written by a save: %d %s", res.Code, res.Body)
	}
}

// A campaign's boundaries are instants: a sale is inside when starts_at <= occurred_at <
// ends_at, to the second, and a campaign entered as local midnights of the program's zone
// spans a DST change exactly (Europe/Berlin moves to summer time on 29 March 2026).
func TestIncentiveBoundariesAcrossDST(t *testing.T) {
	env := newEngineEnv(t)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	env.save(collections.Programs, fx.ProgramP, map[string]any{"timezone": "Europe/Berlin"})
	start := time.Date(2026, 3, 28, 0, 0, 0, 0, berlin).UTC() // CET, +01:00
	end := time.Date(2026, 3, 30, 0, 0, 0, 0, berlin).UTC()   // CEST, +02:00
	if start.Format(time.RFC3339) != "2026-03-27T23:00:00Z" || end.Format(time.RFC3339) != "2026-03-29T22:00:00Z" {
		t.Fatalf("local midnights %v, %v", start, end)
	}
	id := env.incentive(map[string]any{"name": "Spring boost", "kind": "rate_boost", "value": 500, "starts_at": start, "ends_at": end})

	cases := []struct {
		at   time.Time
		want int
	}{
		{start.Add(-time.Second), 2000},               // last second before: 20%
		{start.Add(-time.Millisecond), 2000},          // the stored precision
		{start, 2500},                                 // first instant in: 20% + 5 points
		{start.Add(26 * time.Hour), 2500},             // across the change
		{end.Add(-time.Second), 2500},                 // last second in
		{end.Add(-time.Millisecond), 2500},            // last instant in
		{end, 2000},                                   // first instant out
		{end.Add(30 * time.Minute), 2000},             // 00:30 on 30 March in Berlin: out (a +01:00 end would take it)
		{start.Add(46*time.Hour + time.Second), 2500}, // 47 real hours in the 48 local ones
	}
	sales := map[string]int{}
	for _, c := range cases {
		sales[env.importedSale("affiliate-a", 10000, c.at)] = c.want
	}
	env.run()
	for conv, want := range sales {
		c := env.commissionOf(conv)
		if c.GetInt("amount") != want {
			sale, _ := env.app.FindRecordById(collections.Conversions, conv)
			t.Errorf("sale at %s: commission %d, want %d (rule %s)", sale.GetString("occurred_at"), c.GetInt("amount"), want, c.GetString("rule"))
			continue
		}
		rule := c.GetString("rule")
		if inside := want == 2500; inside != strings.Contains(rule, `"incentives":[{"id":"`+id+`","name":"Spring boost","kind":"rate_boost","value":500}]`) ||
			inside != strings.Contains(rule, `"boost":500`) || !strings.Contains(rule, `"value":2000`) {
			t.Errorf("rule of a %d commission: %s", want, rule)
		}
	}
	env.ledgerOK()
}

// Boosts add to whichever rate wins (override, tier, program), the largest multiplier applies
// to the result, and a campaign counts only for the affiliates it is for.
func TestIncentiveRatesCombineAndEligibility(t *testing.T) {
	env := newEngineEnv(t)
	now := time.Now().UTC()
	start, end := now.Add(-24*time.Hour), now.Add(24*time.Hour)
	env.save(collections.Affiliates, fx.A.ID, map[string]any{"tier": fx.TierP}) // Gold: 30%
	env.incentive(map[string]any{"name": "Gold boost", "kind": "rate_boost", "value": 500, "eligibility": "tiers", "tiers": []string{fx.TierP},
		"starts_at": start, "ends_at": end})
	env.incentive(map[string]any{"name": "B double", "kind": "multiplier", "value": 2000, "eligibility": "affiliates", "affiliates": []string{fx.B.ID},
		"starts_at": start, "ends_at": end})
	env.incentive(map[string]any{"name": "Everyone 1.5", "kind": "multiplier", "value": 1500, "starts_at": start, "ends_at": end})
	env.incentive(map[string]any{"name": "Everyone +1", "kind": "rate_boost", "value": 100, "starts_at": start, "ends_at": end})
	env.incentive(map[string]any{"name": "Switched off", "kind": "rate_boost", "value": 5000, "starts_at": start, "ends_at": end, "active": false})
	env.incentive(map[string]any{"name": "Later", "kind": "rate_boost", "value": 5000, "starts_at": end, "ends_at": end.Add(time.Hour)})

	a := env.sale("affiliate-a", 10000, now.Add(-time.Minute))
	b := env.sale("affiliate-b", 10000, now.Add(-time.Minute))
	env.run()
	// A (Gold 30%): 30 + 5 + 1 = 36% × 1.5 = 54% of 100.00.
	if c := env.commissionOf(a); c.GetInt("amount") != 5400 || !strings.Contains(c.GetString("rule"), `"source":"tier"`) ||
		!strings.Contains(c.GetString("rule"), `"boost":600`) || !strings.Contains(c.GetString("rule"), `"multiplier":1500`) {
		t.Fatalf("A's commission %d, rule %s", c.GetInt("amount"), c.GetString("rule"))
	}
	// B (program 20%): 20 + 1 = 21% × 2 (the larger multiplier, not ×3) = 42%.
	if c := env.commissionOf(b); c.GetInt("amount") != 4200 || !strings.Contains(c.GetString("rule"), `"multiplier":2000`) ||
		strings.Contains(c.GetString("rule"), "Everyone 1.5") || strings.Contains(c.GetString("rule"), "Gold boost") {
		t.Fatalf("B's commission %d, rule %s", c.GetInt("amount"), c.GetString("rule"))
	}
	// An override is the base rate too; a commission never exceeds the sale.
	env.save(collections.Affiliates, fx.B.ID, map[string]any{"commission_override": 9000})
	b2 := env.sale("affiliate-b", 10000, now.Add(-time.Minute))
	env.run()
	if c := env.commissionOf(b2); c.GetInt("amount") != 10000 || !strings.Contains(c.GetString("rule"), `"source":"override"`) {
		t.Fatalf("B's capped commission %d, rule %s", c.GetInt("amount"), c.GetString("rule"))
	}
	env.ledgerOK()
}

// Per-sale and target bonuses are paid once per campaign, affiliate (and sale), whatever
// the number of runs, and a run that dies half-way through its bonuses leaves neither them
// nor the commissions of its batch: the next run pays everything exactly once. The ledger
// and every rollup stay consistent.
func TestIncentiveBonusesPaidOnce(t *testing.T) {
	env := newEngineEnv(t)
	now := time.Now().UTC()
	gaps, saleGaps := statsCommissionGaps(t, env.app), statsSaleGaps(t, env.app)
	start, end := env.afterFixture(), now.Add(24*time.Hour)
	at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Second) } // in order, in the campaign
	perSale := env.incentive(map[string]any{"name": "After 2", "kind": "per_sale_bonus", "threshold": 2, "bonus": 300, "starts_at": start, "ends_at": end})
	target := env.incentive(map[string]any{"name": "3 sales", "kind": "target_bonus", "target_kind": "sales", "target": 3, "bonus": 5000,
		"starts_at": start, "ends_at": end})
	revenue := env.incentive(map[string]any{"name": "100 revenue", "kind": "target_bonus", "target_kind": "revenue", "target": 10000, "bonus": 700,
		"starts_at": start, "ends_at": end, "eligibility": "affiliates", "affiliates": []string{fx.B.ID}})

	var sales []string
	for i := 0; i < 2; i++ {
		sales = append(sales, env.sale("affiliate-a", 1000, at(i)))
	}
	env.run()
	if refs := env.bonusRefs(fx.A.ID, "incentive:"); len(refs) != 0 {
		t.Fatalf("bonuses before the threshold: %v", refs)
	}
	// Two more sales: the third and fourth earn the per-sale bonus, the third reaches the target.
	for i := 2; i < 4; i++ {
		sales = append(sales, env.sale("affiliate-a", 1000, at(i)))
	}
	// The injected crash: the second per-sale bonus cannot be written.
	crash := fmt.Sprintf(`CREATE TRIGGER crash_bonus BEFORE INSERT ON commissions WHEN NEW.ref = %q
		BEGIN SELECT RAISE(ABORT, 'injected crash'); END`, "incentive:"+perSale+":sale:"+sales[3])
	if _, err := env.app.DB().NewQuery(crash).Execute(); err != nil {
		t.Fatal(err)
	}
	if code := pbatest.Request(env.handler, http.MethodPost, "/api/pba/commissions/run", fx.Superuser.Token, "").Code; code != 500 {
		t.Fatalf("run with the crash: %d, want 500", code)
	}
	// Nothing of the batch is left: neither bonuses nor the sales' commissions.
	if refs := env.bonusRefs(fx.A.ID, "incentive:"); len(refs) != 0 {
		t.Fatalf("bonuses after the crash: %v", refs)
	}
	if n, _ := env.app.CountRecords(collections.Commissions, dbxEq("conversion", sales[2])); n != 0 {
		t.Fatalf("the crashed batch left %d commissions", n)
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, saleGaps, "after the crash")
	if _, err := env.app.DB().NewQuery("DROP TRIGGER crash_bonus").Execute(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		env.run()
	}
	want := []string{"incentive:" + perSale + ":sale:" + sales[2], "incentive:" + perSale + ":sale:" + sales[3]}
	if refs := env.bonusRefs(fx.A.ID, "incentive:"+perSale); fmt.Sprint(refs) != fmt.Sprint(slices.Sorted(slices.Values(want))) {
		t.Fatalf("per-sale bonuses %v, want %v", refs, want)
	}
	if refs := env.bonusRefs(fx.A.ID, "incentive:"+target); len(refs) != 1 || refs[0] != "incentive:"+target+":target" {
		t.Fatalf("target bonuses %v", refs)
	}
	// A fifth sale: one more per-sale bonus, the target bonus stays paid once.
	env.sale("affiliate-a", 1000, at(4))
	env.run()
	env.run()
	if n := len(env.bonusRefs(fx.A.ID, "incentive:"+perSale)); n != 3 {
		t.Fatalf("%d per-sale bonuses after the fifth sale, want 3", n)
	}
	if n := len(env.bonusRefs(fx.A.ID, "incentive:"+target)); n != 1 {
		t.Fatalf("%d target bonuses, want 1", n)
	}
	// The revenue target is B's alone: A's 50.00 are not counted, B's 100.00 reach it.
	if refs := env.bonusRefs(fx.A.ID, "incentive:"+revenue); len(refs) != 0 {
		t.Fatalf("A got B's campaign: %v", refs)
	}
	env.sale("affiliate-b", 6000, at(5))
	env.run()
	if refs := env.bonusRefs(fx.B.ID, "incentive:"+revenue); len(refs) != 0 {
		t.Fatalf("revenue bonus below the target: %v", refs)
	}
	env.sale("affiliate-b", 4000, at(6))
	env.run()
	if refs := env.bonusRefs(fx.B.ID, "incentive:"+revenue); len(refs) != 1 {
		t.Fatalf("revenue bonus: %v", refs)
	}
	// Amounts, holds and why: held until the campaign ended plus the program's hold.
	bonus, err := env.app.FindFirstRecordByFilter(collections.Commissions, "ref = {:r}", dbx.Params{"r": "incentive:" + target + ":target"})
	if err != nil {
		t.Fatal(err)
	}
	if bonus.GetInt("amount") != 5000 || bonus.GetString("status") != "pending" || bonus.GetString("note") != "3 sales" ||
		!bonus.GetDateTime("payable_at").Time().Equal(end.Truncate(time.Millisecond).AddDate(0, 0, 30)) ||
		!strings.Contains(bonus.GetString("rule"), `"incentive":"`+target+`"`) {
		t.Fatalf("target bonus %v", bonus.FieldsData())
	}
	env.ledgerOK()
	rollupsConsistent(t, env.app, gaps, statsSaleGaps(t, env.app), "after the bonuses")
}

// afterFixture is the first whole second after the fixture's own sales: campaigns that start
// then count only the sales a test makes.
func (e *engineEnv) afterFixture() time.Time {
	e.t.Helper()
	var last string
	if err := e.app.DB().NewQuery("SELECT MAX(occurred_at) FROM conversions").Row(&last); err != nil {
		e.t.Fatal(err)
	}
	at, err := time.Parse("2006-01-02 15:04:05.000Z", last)
	if err != nil {
		e.t.Fatal(err)
	}
	return at.Truncate(time.Second).Add(time.Second) // sale() sends whole seconds
}

// GET /api/pba/incentives: an affiliate sees the running and upcoming campaigns it is
// eligible for, with its own progress; another affiliate's campaign and its progress never.
func TestIncentivesRoute(t *testing.T) {
	env := newEngineEnv(t)
	now := time.Now().UTC()
	start, end := env.afterFixture(), now.Add(24*time.Hour)
	all := env.incentive(map[string]any{"name": "Five sales", "description": "Reach five sales", "kind": "target_bonus", "target_kind": "sales",
		"target": 2, "bonus": 1000, "starts_at": start, "ends_at": end})
	onlyB := env.incentive(map[string]any{"name": "B only", "kind": "multiplier", "value": 1500, "eligibility": "affiliates",
		"affiliates": []string{fx.B.ID}, "starts_at": start, "ends_at": end})
	upcoming := env.incentive(map[string]any{"name": "Next week", "kind": "rate_boost", "value": 200, "starts_at": end, "ends_at": end.Add(7 * 24 * time.Hour)})
	env.incentive(map[string]any{"name": "Over", "kind": "rate_boost", "value": 200, "starts_at": start.Add(-48 * time.Hour), "ends_at": start})
	env.incentive(map[string]any{"name": "Off", "kind": "rate_boost", "value": 200, "starts_at": start, "ends_at": end, "active": false})
	env.sale("affiliate-a", 1500, start)
	env.sale("affiliate-a", 2500, start)
	env.sale("affiliate-b", 999, start)
	env.run()

	get := func(token string) []map[string]any {
		res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/incentives", token, "")
		if res.Code != 200 {
			t.Fatalf("incentives: %d %s", res.Code, res.Body)
		}
		var out struct {
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal(res.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		return out.Items
	}
	byID := func(items []map[string]any) map[string]map[string]any {
		m := map[string]map[string]any{}
		for _, it := range items {
			m[it["id"].(string)] = it
		}
		return m
	}
	a := byID(get(fx.A.Token))
	if len(a) != 2 || a[all] == nil || a[upcoming] == nil || a[onlyB] != nil {
		t.Fatalf("A's campaigns: %v", a)
	}
	if it := a[all]; it["state"] != "active" || it["currency"] != "usd" || it["earned"] != true || it["bonus"].(float64) != 1000 ||
		fmt.Sprint(it["progress"]) != "map[revenue:4000 sales:2]" || it["description"] != "Reach five sales" {
		t.Fatalf("A's target campaign: %v", it)
	}
	if it := a[upcoming]; it["state"] != "upcoming" || fmt.Sprint(it["progress"]) != "map[revenue:0 sales:0]" || it["earned"] != false {
		t.Fatalf("A's upcoming campaign: %v", it)
	}
	b := byID(get(fx.B.Token))
	if len(b) != 3 || b[onlyB] == nil || b[all]["earned"] != false || fmt.Sprint(b[all]["progress"]) != "map[revenue:999 sales:1]" {
		t.Fatalf("B's campaigns: %v", b)
	}
	if res := pbatest.Request(env.handler, http.MethodGet, "/api/pba/incentives", "", ""); res.Code != 401 {
		t.Fatalf("guest: %d", res.Code)
	}
}
