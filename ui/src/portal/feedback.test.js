import { test } from "node:test";
import assert from "node:assert/strict";
import { optOut, wanted, npsGroup, topicLabel, MAIL_CATEGORIES } from "./feedback.js";

test("mail categories are the server's, in its order", () => {
  assert.deepEqual(MAIL_CATEGORIES.map((c) => c.value), ["broadcast", "digest", "survey", "incentive", "material"]);
});

test("optOut and wanted are inverses in the server's order", () => {
  assert.deepEqual(optOut(["material", "broadcast"]), ["digest", "survey", "incentive"]);
  assert.deepEqual(optOut([]), ["broadcast", "digest", "survey", "incentive", "material"]);
  assert.deepEqual(wanted(["survey", "digest"]), ["broadcast", "incentive", "material"]);
  assert.deepEqual(wanted(null), ["broadcast", "digest", "survey", "incentive", "material"]);
  assert.deepEqual(optOut(wanted(["incentive"])), ["incentive"]);
});

test("NPS groups at their boundaries", () => {
  assert.equal(npsGroup(0), "detractor");
  assert.equal(npsGroup(6), "detractor");
  assert.equal(npsGroup(7), "passive");
  assert.equal(npsGroup(8), "passive");
  assert.equal(npsGroup(9), "promoter");
  assert.equal(npsGroup(10), "promoter");
});

test("topic labels", () => {
  assert.equal(topicLabel("payouts"), "Payouts");
  assert.equal(topicLabel("new_one"), "new_one");
  assert.equal(topicLabel(""), "General");
});
