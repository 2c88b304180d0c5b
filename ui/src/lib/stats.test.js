import { test } from "node:test";
import assert from "node:assert/strict";
import { periodsBetween, byCurrency, seriesOf, applyLive } from "./stats.js";

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

test("applyLive keeps each currency's money apart", () => {
  const stats = {
    totals: [{ currency: "usd", clicks: 10, unique_clicks: 8, conversions: 2, revenue: 5000, commission: 500 }],
    series: [{ period: "2026-03-02", metrics: { currency: "usd", clicks: 10, unique_clicks: 8, conversions: 2, revenue: 5000, commission: 500 } }],
  };
  // The first euro sale on a dollar-only board, and a dollar click.
  applyLive(stats, { currencies: { eur: { conversions: 1, revenue: 4200, commission: 420 }, usd: { clicks: 1, unique_clicks: 1 } } }, "2026-03-02");
  assert.deepEqual(stats.totals.find((t) => t.currency === "usd"), { currency: "usd", clicks: 11, unique_clicks: 9, conversions: 2, revenue: 5000, commission: 500 });
  assert.deepEqual(stats.totals.find((t) => t.currency === "eur"), { currency: "eur", clicks: 0, unique_clicks: 0, conversions: 1, revenue: 4200, commission: 420 });
  const cur = byCurrency(stats);
  assert.equal(cur.usd.rows.get("2026-03-02").revenue, 5000);
  assert.equal(cur.eur.rows.get("2026-03-02").revenue, 4200);
  // A new period gets its own row; a message without currencies changes nothing.
  applyLive(stats, { currencies: { usd: { revenue: -1000 } } }, "2026-03-03");
  applyLive(stats, { totals: { clicks: 5 } }, "2026-03-03");
  assert.deepEqual(seriesOf(byCurrency(stats).usd, ["2026-03-02", "2026-03-03"], "revenue"), [5000, -1000]);
  assert.equal(stats.totals.find((t) => t.currency === "usd").revenue, 4000);
});
