import { test } from "node:test";
import assert from "node:assert/strict";
import { periodsBetween, byCurrency, seriesOf } from "./stats.js";

test("periodsBetween names periods as the stats API does", () => {
  assert.deepEqual(periodsBetween("2026-02-27", "2026-03-02"), ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]);
  assert.deepEqual(periodsBetween("2026-03-04", "2026-03-17", "week"), ["2026-03-02", "2026-03-09", "2026-03-16"]);
  assert.deepEqual(periodsBetween("2026-01-31", "2026-03-01", "month"), ["2026-01", "2026-02", "2026-03"]);
});

test("byCurrency and seriesOf fill missing periods with zeros", () => {
  const stats = { series: [
    { period: "2026-03-01", metrics: { currency: "usd", clicks: 3 } },
    { period: "2026-03-01", metrics: { currency: "eur", clicks: 1 } },
    { period: "2026-03-03", metrics: { currency: "usd", clicks: 5 } },
  ] };
  const cur = byCurrency(stats);
  assert.deepEqual(Object.keys(cur).sort(), ["eur", "usd"]);
  assert.deepEqual(seriesOf(cur.usd, periodsBetween("2026-03-01", "2026-03-03"), "clicks"), [3, 0, 5]);
});
