import { test } from "node:test";
import assert from "node:assert/strict";
import { zonedTime, giveText, progressOf, earnedText } from "./incentives.js";
import { incentiveRateText } from "./terms.js";

test("dates in the program's zone, across DST", () => {
  assert.equal(zonedTime("2026-11-30T23:00:00Z", "Europe/Berlin"), "1 Dec 2026, 00:00 CET");
  assert.equal(zonedTime("2026-06-30T22:00:00Z", "Europe/Berlin"), "1 Jul 2026, 00:00 CEST");
  assert.equal(zonedTime("2026-06-30 22:00:00.000Z", ""), "30 Jun 2026, 22:00 UTC");
  assert.equal(zonedTime("", "UTC"), "–");
});

test("what a campaign gives, in plain words and minor units", () => {
  assert.match(giveText({ kind: "rate_boost", value: 500 }), /^\+5 percentage points/);
  assert.match(giveText({ kind: "multiplier", value: 1500 }), /multiplied by 1\.5\./);
  assert.match(giveText({ kind: "per_sale_bonus", bonus: 250, currency: "usd", threshold: 3 }), /2\.50 USD for every sale after your first 3 sales/);
  assert.match(giveText({ kind: "target_bonus", bonus: 10000, currency: "eur", target_kind: "revenue", target: 100000 }), /100\.00 EUR once you reach 1,000\.00 EUR in sales/);
  assert.match(giveText({ kind: "target_bonus", bonus: 500, currency: "jpy", target_kind: "sales", target: 1 }), /500 JPY once you reach 1 sale /);
});

test("progress toward targets", () => {
  const t = { kind: "target_bonus", target_kind: "sales", target: 5, bonus: 1, currency: "usd", progress: { sales: 2, revenue: 9 } };
  assert.deepEqual(progressOf(t), { value: 2, max: 5, text: "2 of 5 sales" });
  assert.deepEqual(progressOf({ ...t, progress: { sales: 7, revenue: 0 } }), { value: 5, max: 5, text: "7 of 5 sales: target reached" });
  assert.equal(progressOf({ ...t, target_kind: "revenue", target: 10000, progress: { sales: 1, revenue: 2550 } }).text, "25.50 USD of 100.00 USD");
  assert.equal(progressOf({ kind: "per_sale_bonus", threshold: 2, progress: { sales: 5, revenue: 0 } }).text, "5 sales: 3 beyond the first 2 earned the bonus");
  assert.equal(progressOf({ kind: "rate_boost", value: 500 }), null);
  assert.equal(earnedText({ kind: "target_bonus", earned: true, bonuses: 1500, currency: "usd" }), "Earned: 15.00 USD");
  assert.equal(earnedText({ kind: "rate_boost", earned: false }), "");
});

test("a rate a campaign changes, spelled out", () => {
  assert.equal(incentiveRateText({ source: "incentive", type: "percent", value: 2500, base_value: 2000, boost: 500, multiplier: 1000, incentives: ["Spring push"] }, "usd"),
    "20% + 5 points during Spring push = 25%");
  assert.equal(incentiveRateText({ source: "incentive", type: "percent", value: 3750, base_value: 2000, boost: 500, multiplier: 1500, incentives: ["Spring push", "Double"] }, "usd"),
    "20% + 5 points × 1.5 during Spring push and Double = 37.5%");
  assert.equal(incentiveRateText({ source: "incentive", type: "flat", value: 750, base_value: 500, boost: 0, multiplier: 1500, incentives: ["X"] }, "usd"),
    "5.00 USD × 1.5 during X = 7.50 USD");
  assert.equal(incentiveRateText({ source: "program", value: 2000 }, "usd"), "");
});
