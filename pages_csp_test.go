package main

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// inlineCode finds what the Content-Security-Policy (hooks.ContentSecurityPolicy, no
// 'unsafe-inline') would block in a page: a script without src, a style element or attribute,
// an event handler attribute, a javascript: URL.
var inlineCode = regexp.MustCompile(`(?is)<script\b[^>]*>\s*\S[^<]*</script>|<style\b|\sstyle\s*=|\son[a-z]+\s*=|javascript:`)

// TestPagesHaveNoInlineCode: every HTML page built into the binary (pb_public, including a
// built admin app) works under the strict policy, which blocks inline scripts and styles.
func TestPagesHaveNoInlineCode(t *testing.T) {
	pages := 0
	err := fs.WalkDir(publicFiles, "pb_public", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		pages++
		html, err := fs.ReadFile(publicFiles, path)
		if err != nil {
			return err
		}
		if found := inlineCode.Find(html); found != nil {
			t.Errorf("%s: %q would be blocked by the Content-Security-Policy", path, found)
		}
		return nil
	})
	if err != nil || pages < 3 {
		t.Fatalf("walked %d pages: %v", pages, err)
	}
}
