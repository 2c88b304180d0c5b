import { test } from "node:test";
import assert from "node:assert/strict";
import { actionsFor } from "./affiliateStatus.js";

test("each status offers its decisions", () => {
  assert.deepEqual(actionsFor({ status: "pending" }), [["approved", "approved"], ["rejected", "rejected"]]);
  assert.deepEqual(actionsFor({ status: "approved" }), [["suspended", "suspended"]]);
  assert.deepEqual(actionsFor({ status: "suspended", erased_at: "" }), [["reinstate", "approved"]]);
  assert.deepEqual(actionsFor({ status: "rejected" }), [["approved", "approved"]]);
});

test("an erased affiliate is never reinstated", () => {
  assert.deepEqual(actionsFor({ status: "suspended", erased_at: "2026-12-06 22:10:17.333Z" }), []);
});
