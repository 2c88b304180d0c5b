// Reading /api/pba/stats answers: one series entry per period and currency, metrics in minor
// units. The figures always come from the server's rollups (stats_daily), never from raw rows.

/** byCurrency splits a stats answer's series into {currency: {periods, rows}} (dense per period). */
export function byCurrency(stats) {
  const out = {};
  for (const s of stats?.series || []) {
    const c = s.metrics.currency || "";
    (out[c] ||= new Map()).set(s.period, s.metrics);
  }
  return Object.fromEntries(Object.entries(out).map(([c, m]) => [c, { periods: [...m.keys()].sort(), rows: m }]));
}

/** seriesOf picks metric key from each period of a currency's rows (0 where a period has none). */
export const seriesOf = (cur, periods, key) => periods.map((p) => cur.rows.get(p)?.[key] ?? 0);

export const METRIC_SERIES = [
  { key: "clicks", label: "Clicks", color: "#6366f1" },
  { key: "conversions", label: "Sales", color: "#0ea5e9", scale: "sales" }, // its own scale: a handful beside hundreds of clicks
  { key: "revenue", label: "Revenue", color: "#16a34a", money: true },
  { key: "commission", label: "Commission", color: "#f59e0b", money: true },
];

/**
 * periodsBetween lists the periods from..to (YYYY-MM-DD, inclusive) of interval as the stats
 * API names them: days, Mondays (week), YYYY-MM (month). A chart spans them all, zeros
 * included, whether or not the answer was dense.
 */
export function periodsBetween(from, to, interval = "day") {
  const out = [];
  const d = new Date(from + "T00:00:00Z");
  const end = new Date(to + "T00:00:00Z");
  if (interval === "week") d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  if (interval === "month") d.setUTCDate(1);
  while (d <= end && out.length < 4000) {
    const iso = d.toISOString().slice(0, 10);
    out.push(interval === "month" ? iso.slice(0, 7) : iso);
    if (interval === "week") d.setUTCDate(d.getUTCDate() + 7);
    else if (interval === "month") d.setUTCMonth(d.getUTCMonth() + 1);
    else d.setUTCDate(d.getUTCDate() + 1);
  }
  return out;
}

const LIVE_KEYS = ["clicks", "unique_clicks", "conversions", "revenue", "commission"];

/**
 * applyLive adds a pba/live message's per-currency deltas (msg.currencies) to stats: each to
 * its own currency's totals and to its own currency's row of period, creating them when the
 * currency or the period is new. Money is never added across currencies.
 */
export function applyLive(stats, msg, period) {
  const add = (m, d) => { for (const k of LIVE_KEYS) m[k] = (m[k] || 0) + (d[k] || 0); };
  const zero = (currency) => ({ currency, clicks: 0, unique_clicks: 0, conversions: 0, revenue: 0, commission: 0 });
  stats.totals ||= [];
  stats.series ||= [];
  for (const [currency, d] of Object.entries(msg?.currencies || {})) {
    let total = stats.totals.find((t) => t.currency === currency);
    if (!total) stats.totals.push((total = zero(currency)));
    add(total, d);
    let row = stats.series.find((s) => s.period === period && s.metrics.currency === currency);
    if (!row) stats.series.push((row = { period, metrics: zero(currency) }));
    add(row.metrics, d);
  }
}
