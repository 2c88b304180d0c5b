import { test } from "node:test";
import assert from "node:assert/strict";
import { trackedURL, checkDestination, SUB_PATTERN } from "./links.js";

test("tracked URLs carry the deep link and sub as the redirector reads them", () => {
  assert.equal(trackedURL("https://p.test", "ada"), "https://p.test/r/ada");
  assert.equal(trackedURL("https://p.test", "ada", { sub: "nl-may" }), "https://p.test/r/ada?sub=nl-may");
  const u = new URL(trackedURL("https://p.test", "a b", { to: "https://shop.example.com/x?y=1&z=2", sub: "yt" }));
  assert.equal(u.pathname, "/r/a%20b");
  assert.equal(u.searchParams.get("to"), "https://shop.example.com/x?y=1&z=2");
  assert.equal(u.searchParams.get("sub"), "yt");
});

test("destinations on the allowed domains and their subdomains only", () => {
  const d = ["example.com"];
  assert.equal(checkDestination("https://example.com/a", d), "");
  assert.equal(checkDestination("https://shop.example.com/a", d), "");
  assert.match(checkDestination("https://evil.test/", d), /example\.com/);
  assert.match(checkDestination("https://notexample.com/", d), /example\.com/);
  assert.match(checkDestination("javascript:alert(1)", d), /http/);
  assert.match(checkDestination("example.com", d), /https:\/\//);
  assert.equal(checkDestination("https://anything.test/", []), "");
  assert.ok(SUB_PATTERN.test("spring-2027"));
  assert.ok(!SUB_PATTERN.test("with space"));
});
