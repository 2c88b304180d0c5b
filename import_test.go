package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportCommand runs `pbaffiliate import` as the binary: a file with a problem exits
// non-zero and imports nothing; a clean file imports, and importing it again changes nothing.
func TestImportCommand(t *testing.T) {
	dir, files := t.TempDir(), t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.csv", "name,email,code,payout_email,status\nAda,ada@example.com,ada,,approved\nBob,bob@example,bob,,approved\n")
	out, err := runProgram(t, "import --from csv --dir="+dir+" "+bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `line 3: email: "bob@example" is not an email address.`) {
		t.Fatalf("bad file: err=%v\n%s", err, out)
	}
	if n := countRows(t, openDB(t, dir), `SELECT COUNT(*) FROM affiliates`); n != 0 {
		t.Fatalf("a file with a problem imported %d affiliates", n)
	}
	good := write("good.csv", "name,email,code,payout_email,status,balance\nAda,ada@example.com,ada_l,,approved,10.00\n")
	for i, want := range []string{
		"created 1, updated 0, skipped 0 (unchanged), coupons 0, legacy codes 1, opening balances 1",
		"created 0, updated 0, skipped 1 (unchanged), coupons 0, legacy codes 0, opening balances 0",
	} {
		out, err := runProgram(t, "import --from csv --balances --dir="+dir+" "+good).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("run %d: err=%v, want %q in:\n%s", i+1, err, want, out)
		}
	}
}
