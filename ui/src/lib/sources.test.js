// The app's sources keep the page's promises: no HTML built from data and nothing the strict
// Content-Security-Policy (hooks/security.go) would block: inline style attributes, inline
// handlers in markup, eval.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

function files(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.(svelte|js|html)$/.test(n) && !n.endsWith(".test.js") ? [p] : [];
  });
}

test("no innerHTML, {@html}, inline style attribute or eval in the sources", () => {
  const root = new URL("../", import.meta.url).pathname; // src/: lib, admin and portal
  const all = [...files(root), ...files(new URL("../../admin/", import.meta.url).pathname), ...files(new URL("../../portal/", import.meta.url).pathname)];
  assert.ok(all.length > 5, "sources found");
  for (const f of all) {
    const src = readFileSync(f, "utf8");
    for (const [bad, why] of [
      [/innerHTML|outerHTML|insertAdjacentHTML/, "HTML from data"],
      [/\{@html/, "HTML from data"],
      [/\sstyle="/, "inline style attribute (CSP)"],
      [/<style[\s>]/, "style element: use app.css (CSP)"],
      [/\beval\(|new Function\(/, "eval (CSP)"],
    ]) {
      assert.doesNotMatch(src, bad, `${f}: ${why}`);
    }
  }
});
