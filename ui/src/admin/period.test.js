import { test } from "node:test";
import assert from "node:assert/strict";
import { periodOf, change } from "./period.js";

test("periods of the range keys", () => {
  assert.deepEqual(periodOf("30d", "2026-03-15"), { from: "2026-02-14", to: "2026-03-15", interval: "day" });
  assert.deepEqual(periodOf("today", "2026-03-15"), { from: "2026-03-15", to: "2026-03-15", interval: "day" });
  assert.equal(periodOf("mtd", "2026-03-15").from, "2026-03-01");
  assert.equal(periodOf("custom", "2026-03-15", { from: "2025-01-01", to: "2026-03-15" }).interval, "week");
  assert.equal(change(150, 100), 50);
  assert.equal(change(5, 0), null);
  assert.equal(change(0, 0), 0);
});
