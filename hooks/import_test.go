package hooks_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// runImportCommand runs `pbaffiliate import args…` on app, as the binary would, and returns
// its output and error.
func runImportCommand(t *testing.T, app core.App, args ...string) (string, error) {
	t.Helper()
	cmd := hooks.NewImportCommand(app)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func countRows(t *testing.T, app core.App, query string, params dbx.Params) int {
	t.Helper()
	var n int
	if err := app.DB().NewQuery(query).Bind(params).Row(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// importedState is what an import writes, counted, so a run that must write nothing can be
// compared with the state before it.
func importedState(t *testing.T, app core.App) string {
	t.Helper()
	return fmt.Sprintf("affiliates=%d aliases=%d coupons=%d commissions=%d deliveries=%d",
		countRows(t, app, "SELECT count(*) FROM affiliates", nil), countRows(t, app, "SELECT count(*) FROM code_aliases", nil),
		countRows(t, app, "SELECT count(*) FROM coupons", nil), countRows(t, app, "SELECT count(*) FROM commissions", nil),
		countRows(t, app, "SELECT count(*) FROM deliveries", nil))
}

// TestImportBadRows: every problem of a file is reported with its line and field, and neither
// a dry run nor a real run of a file with problems writes anything.
func TestImportBadRows(t *testing.T) {
	app := fx.App(t)
	t.Cleanup(app.Cleanup)
	file := filepath.Join(t.TempDir(), "bad.csv")
	content := "name,email,code,payout_email,status,balance\n" +
		"Good One,good@example.com,good-one,,approved,1.00\n" + // line 2: fine
		"Bad Mail,not-an-email,bad-mail,,approved,\n" + // 3
		"Dup Code,dup@example.com,GOOD-ONE,,approved,\n" + // 4
		"Taken,taken@example.com,affiliate-a,,approved,\n" + // 5: the fixture's affiliate A
		"Odd Status,odd@example.com,odd,,retired,\n" + // 6
		"Bad Amount,amount@example.com,amount,,approved,12.345\n" + // 7
		"\"Bell\aName\",bell@example.com,bell,,approved,\n" + // 8: a control character
		"\"Two\nLines\",lines@example.com,has space,,approved,\n" // 9 (the record spans lines 9–10)
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	before := importedState(t, app)
	for _, dry := range []bool{true, false} {
		args := []string{"--from", "csv", file}
		if dry {
			args = append([]string{"--dry-run"}, args...)
		}
		out, err := runImportCommand(t, app, args...)
		if err == nil || !strings.Contains(err.Error(), "nothing was imported") {
			t.Fatalf("dry run %v: err = %v, want the problems counted", dry, err)
		}
		for _, want := range []string{
			"line 3: email: \"not-an-email\" is not an email address.",
			"line 4: code: \"good-one\" is also on line 2",
			"line 5: code: \"affiliate-a\" is already the code of another affiliate here (a@fixture.test).",
			"line 6: status: Unknown status \"retired\"",
			"line 7: balance: \"12.345\" is not an amount in USD",
			"line 8: name: Contains a control",
			"line 9: name: Contains a control",
			"line 9: code: \"has space\" cannot be a link code",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run %v: %q missing from:\n%s", dry, want, out)
			}
		}
		if strings.Contains(out, "line 2:") {
			t.Errorf("dry run %v: the good row is reported:\n%s", dry, out)
		}
		if after := importedState(t, app); after != before {
			t.Fatalf("dry run %v wrote: %s, was %s", dry, after, before)
		}
	}
}

// TestImportPlatforms imports each platform's sample export (testdata/import) with opening
// balances, then again: the second run adds nothing, the ledger check passes, nobody is mailed,
// and the old links (track.js's clicks API, /r/ with a legacy code or parameter) credit the
// imported affiliates, down to a sale attributed through the click.
func TestImportPlatforms(t *testing.T) {
	app := fx.App(t)
	t.Cleanup(app.Cleanup)
	h := pbatest.Serve(t, app)

	runs := []struct{ platform, file, first string }{
		{"rewardful", "rewardful.csv", "created 3, updated 0, skipped 0 (unchanged), coupons 1, legacy codes 3, opening balances 0"},
		{"firstpromoter", "firstpromoter.csv", "created 2, updated 0, skipped 0 (unchanged), coupons 1, legacy codes 2, opening balances 1"},
		{"tapfiliate", "tapfiliate.csv", "created 2, updated 0, skipped 0 (unchanged), coupons 1, legacy codes 4, opening balances 0"},
		{"csv", "pbaffiliate.csv", "created 2, updated 0, skipped 0 (unchanged), coupons 1, legacy codes 2, opening balances 2"},
	}
	for _, r := range runs {
		t.Run(r.platform, func(t *testing.T) {
			file := filepath.Join("testdata", "import", r.file)
			out, err := runImportCommand(t, app, "--from", r.platform, "--dry-run", "--balances", file)
			if err != nil || !strings.Contains(out, "would import (dry run): "+r.first) {
				t.Fatalf("dry run: %v\n%s", err, out)
			}
			out, err = runImportCommand(t, app, "--from", r.platform, "--balances", file)
			if err != nil || !strings.Contains(out, "imported: "+r.first) {
				t.Fatalf("first run: %v\n%s", err, out)
			}
			before := importedState(t, app)
			out, err = runImportCommand(t, app, "--from", r.platform, "--balances", file)
			if err != nil || !strings.Contains(out, "imported: created 0, updated 0, skipped") || !strings.Contains(out, "coupons 0, legacy codes 0, opening balances 0") {
				t.Fatalf("second run: %v\n%s", err, out)
			}
			if after := importedState(t, app); after != before {
				t.Fatalf("second run wrote: %s, was %s", after, before)
			}
		})
	}

	// What the files say, as stored.
	type want struct{ email, code, status, payout, tier string }
	for _, w := range []want{
		{"adam.jones@example.com", "adam", "approved", "", ""},
		{"bea@example.com", "bea-smith", "approved", "bea.pay@example.com", ""}, // bea_s is not one of our codes: kept as an alias
		{"carl@example.com", "carl-ng", "suspended", "carl@wise.example", ""},
		{"dora@example.com", "heubv", "approved", "dora@pay.example", ""},
		{"eli@example.com", "eli-okafor", "pending", "", ""},
		{"fay@example.com", "fayw", "approved", "", ""},
		{"gus@example.com", "guslee", "pending", "", ""},
		{"hana@example.com", "hana", "approved", "hana@pay.example", fx.TierP},
		{"ivan@example.com", "ivan-petrov", "suspended", "", ""},
	} {
		a, err := app.FindAuthRecordByEmail(collections.Affiliates, w.email)
		if err != nil {
			t.Fatalf("%s: %v", w.email, err)
		}
		got := want{a.Email(), a.GetString("code"), a.GetString("status"), a.GetString("payout_email"), a.GetString("tier")}
		if got != w || a.GetString("program") != fx.ProgramP || !a.Verified() {
			t.Errorf("%s: got %+v (program %s, verified %v), want %+v", w.email, got, a.GetString("program"), a.Verified(), w)
		}
	}
	// Opening balances: once each, payable adjustments; the ledger holds.
	var balances []struct {
		Email  string `db:"email"`
		Amount int    `db:"amount"`
		Status string `db:"status"`
		Ref    string `db:"ref"`
	}
	if err := app.DB().NewQuery(`SELECT a.email AS email, c.amount AS amount, c.status AS status, c.ref AS ref FROM commissions c
		JOIN affiliates a ON a.id = c.affiliate WHERE c.kind = 'adjustment' ORDER BY a.email`).All(&balances); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(balances); got != "[{dora@example.com 1250 payable import:firstpromoter:dora@example.com} {hana@example.com 2500 payable import:csv:hana@example.com} {ivan@example.com -350 payable import:csv:ivan@example.com}]" {
		t.Errorf("opening balances: %s", got)
	}
	if res := pbatest.Request(h, http.MethodGet, "/api/pba/ledger/check", fx.Superuser.Token, ""); res.Code != 200 || res.JSON["ok"] != true {
		t.Fatalf("ledger check: %d %v", res.Code, res.JSON)
	}
	// No welcome mail without --notify: the lifecycle deliveries are recorded as skipped.
	if n := countRows(t, app, `SELECT count(*) FROM deliveries d JOIN affiliates a ON a.id = d.affiliate
		WHERE a.email LIKE '%@example.com' AND d.status != 'skipped'`, nil); n != 0 {
		t.Errorf("%d mails queued for imported affiliates", n)
	}
	if n := countRows(t, app, "SELECT count(*) FROM coupons WHERE code IN ('adam10', 'eli20', 'gus5', 'hana')", nil); n != 4 {
		t.Errorf("coupons: %d of 4", n)
	}

	affiliateOf := func(email string) string {
		a, err := app.FindAuthRecordByEmail(collections.Affiliates, email)
		if err != nil {
			t.Fatal(err)
		}
		return a.Id
	}
	browser := func(ip string) func(*http.Request) {
		return func(req *http.Request) {
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36")
			req.RemoteAddr = ip + ":5555"
		}
	}
	clickOf := func(id string) *core.Record {
		c, err := app.FindRecordById(collections.Clicks, id)
		if err != nil {
			t.Fatalf("click %s: %v", id, err)
		}
		return c
	}

	// Bea's old Rewardful link, https://shop.example.com/?via=Bea_S: track.js posts the code.
	res := pbatest.Request(h, http.MethodPost, "/api/pba/clicks", "", `{"code":"Bea_S"}`, browser("203.0.113.10"))
	clickID, _ := res.JSON["click_id"].(string)
	if res.Code != 200 || clickID == "" || clickOf(clickID).GetString("affiliate") != affiliateOf("bea@example.com") {
		t.Fatalf("?via=Bea_S through track.js: %d %v", res.Code, res.JSON)
	}
	// The sale of that visitor is Bea's.
	sale := pbatest.Request(h, http.MethodPost, "/api/pba/conversions", "Bearer "+fx.SecretP,
		fmt.Sprintf(`{"click_id":%q,"external_id":"legacy-sale-1","amount":4900,"currency":"usd"}`, clickID))
	if sale.Code != 201 || sale.JSON["affiliate"] != affiliateOf("bea@example.com") {
		t.Fatalf("sale through the legacy click: %d %v", sale.Code, sale.JSON)
	}
	// A merchant server still sending the old code as affiliate_code credits her too.
	sale = pbatest.Request(h, http.MethodPost, "/api/pba/conversions", "Bearer "+fx.SecretP,
		`{"affiliate_code":"BEA_S","external_id":"legacy-sale-2","amount":4900,"currency":"usd"}`)
	if sale.Code != 201 || sale.JSON["affiliate"] != affiliateOf("bea@example.com") {
		t.Fatalf("sale with the legacy affiliate_code: %d %v", sale.Code, sale.JSON)
	}

	// /r/ takes a legacy code as a path, and the other platforms' parameters.
	for i, c := range []struct{ path, email string }{
		{"/r/cn", "carl@example.com"}, // suspended: sent on uncredited, below
		{"/r/eli_o", "eli@example.com"},
		{"/r/?fpr=heubv", "dora@example.com"},
		{"/r/?fp_ref=heubv", "dora@example.com"},
		{"/r/?tap_a=123-abc", "fay@example.com"},
		{"/r/?ref=GusLee", "gus@example.com"},
		{"/r/?via=Bea_S&to=https://shop.example.com/pricing", "bea@example.com"},
		{"/r/?aff=ivan_p", "ivan@example.com"},
		{"/r/BEA_S/", "bea@example.com"},
	} {
		rec := pbatest.Request(h, http.MethodGet, c.path, "", "", browser(fmt.Sprintf("198.51.100.%d", i+1)))
		if rec.Code != http.StatusFound {
			t.Errorf("%s: %d, want 302", c.path, rec.Code)
			continue
		}
		a, _ := app.FindAuthRecordByEmail(collections.Affiliates, c.email)
		clickID := ""
		for _, ck := range rec.Result().Cookies() {
			if ck.Name == hooks.ClickCookie {
				clickID = ck.Value
			}
		}
		credited := a.GetString("status") == collections.AffiliateApproved
		switch {
		case credited && (clickID == "" || clickOf(clickID).GetString("affiliate") != a.Id):
			t.Errorf("%s: click %q, want one of %s", c.path, clickID, c.email)
		case !credited && clickID != "":
			t.Errorf("%s: a %s affiliate was credited a click", c.path, a.GetString("status"))
		}
	}
	if loc := pbatest.Request(h, http.MethodGet, "/r/?via=Bea_S&to=https://shop.example.com/pricing", "", "", browser("198.51.100.99")).Header().Get("Location"); !strings.HasPrefix(loc, "https://shop.example.com/pricing") {
		t.Errorf("deep link through a legacy parameter: Location %q", loc)
	}
	// An unknown legacy code and a bare /r/ answer as unknown links do.
	for _, path := range []string{"/r/?via=nobody-here", "/r/", "/r/?utm_source=x"} {
		if rec := pbatest.Request(h, http.MethodGet, path, "", "", browser("198.51.100.200")); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, rec.Code)
		}
	}

	// The namespace stays one: a signup cannot take an imported legacy code (eli_o is not one
	// of our codes, but 123-abc would be), nor can an alias take a link's code.
	signup := pbatest.Request(h, http.MethodPost, "/api/collections/affiliates/records", "",
		`{"name":"Squatter","email":"squat@example.org","code":"123-abc","password":"new-password-1","passwordConfirm":"new-password-1"}`)
	if signup.Code != 400 || !strings.Contains(signup.Body.String(), "code_taken") {
		t.Errorf("signup with an imported code: %d %s", signup.Code, signup.Body)
	}
	link, err := app.FindRecordById(collections.Links, fx.RowsA.Link)
	if err != nil {
		t.Fatal(err)
	}
	alias := pbatest.Request(h, http.MethodPost, "/api/collections/code_aliases/records", fx.Superuser.Token,
		fmt.Sprintf(`{"code":%q,"affiliate":%q,"source":"csv"}`, strings.ToUpper(link.GetString("code")), affiliateOf("fay@example.com")))
	if alias.Code != 400 || !strings.Contains(alias.Body.String(), "code_taken") {
		t.Errorf("alias of a link's code: %d %s", alias.Code, alias.Body)
	}
}

// TestImportMatchesByLegacyCode: an affiliate whose email changed on the old platform is found
// by the legacy code an earlier import of that platform brought, and gains the new file's
// coupon but keeps its profile; a code of another platform's import is never a match.
func TestImportMatchesByLegacyCode(t *testing.T) {
	app := fx.App(t)
	t.Cleanup(app.Cleanup)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := write("first.csv", "first_name,last_name,email,token\nJo,Doe,jo@old.example,jo_d\n")
	if out, err := runImportCommand(t, app, "--from", "rewardful", first); err != nil {
		t.Fatal(err, out)
	}
	moved := write("moved.csv", "first_name,last_name,email,token,coupon\nJoanna,Doe,jo@new.example,JO_D,JODEAL\n")
	out, err := runImportCommand(t, app, "--from", "rewardful", moved)
	if err != nil || !strings.Contains(out, "created 0, updated 1, skipped 0 (unchanged), coupons 1, legacy codes 0") {
		t.Fatalf("moved email: %v\n%s", err, out)
	}
	a, err := app.FindAuthRecordByEmail(collections.Affiliates, "jo@old.example")
	if err != nil || a.GetString("name") != "Jo Doe" {
		t.Fatalf("the existing affiliate keeps its profile: %v %v", err, a)
	}
	// The same code from another platform belongs to someone else here.
	out, err = runImportCommand(t, app, "--from", "firstpromoter", write("fp.csv", "email,ref_id\nother@new.example,jo_d\n"))
	if err == nil || !strings.Contains(out, `line 2: code: "jo_d" is already the code of another affiliate here (jo@old.example).`) {
		t.Fatalf("another platform's code: %v\n%s", err, out)
	}
}
