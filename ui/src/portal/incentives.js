// The affiliate's campaigns (GET /api/pba/incentives items) in plain words. Pure: no SDK, no
// DOM (tested by incentives.test.js).
import { formatMoney, formatBasisPoints, formatCount } from "../lib/money.js";
import { formatMultiplier } from "../admin/incentives.js";

/** zonedTime shows an instant as a date and time of zone with the zone's short name ("1 Dec 2026, 00:00 CET"). */
export function zonedTime(iso, zone) {
  const ms = Date.parse(String(iso || "").replace(" ", "T"));
  if (Number.isNaN(ms)) return "–";
  const opts = { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
  try {
    return new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: zone || "UTC" }).format(new Date(ms));
  } catch {
    return new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: "UTC" }).format(new Date(ms));
  }
}

const plural = (n, one) => `${formatCount(n)} ${one}${n === 1 ? "" : "s"}`;

/** targetText names a target bonus's target: "5 sales", "1,000.00 USD in sales". */
function targetText(item) {
  return item.target_kind === "revenue" ? `${formatMoney(item.target, item.currency)} in sales` : plural(item.target, "sale");
}

/** giveText says what a campaign gives, in plain words. */
export function giveText(item) {
  switch (item.kind) {
    case "rate_boost":
      return `+${formatBasisPoints(item.value)} percentage point${item.value === 100 ? "" : "s"} on the commission of every sale during the campaign.`;
    case "multiplier":
      return `Your commission on every sale during the campaign is multiplied by ${formatMultiplier(item.value)}.`;
    case "per_sale_bonus":
      return item.threshold > 0
        ? `A bonus of ${formatMoney(item.bonus, item.currency)} for every sale after your first ${plural(item.threshold, "sale")} of the campaign.`
        : `A bonus of ${formatMoney(item.bonus, item.currency)} for every sale during the campaign.`;
    case "target_bonus":
      return `A bonus of ${formatMoney(item.bonus, item.currency)} once you reach ${targetText(item)} during the campaign.`;
  }
  return "";
}

/**
 * progressOf is how far the affiliate is toward what a bonus campaign counts: {value, max,
 * text} for a <progress> (minor units or sales), or null for a rate campaign (no target).
 */
export function progressOf(item) {
  const p = item.progress || { sales: 0, revenue: 0 };
  if (item.kind === "target_bonus") {
    const revenue = item.target_kind === "revenue";
    const have = revenue ? p.revenue : p.sales;
    const value = Math.min(have, item.target);
    const done = have >= item.target;
    const shown = revenue ? `${formatMoney(have, item.currency)} of ${formatMoney(item.target, item.currency)}` : `${formatCount(have)} of ${plural(item.target, "sale")}`;
    return { value, max: item.target, text: done ? `${shown}: target reached` : shown };
  }
  if (item.kind === "per_sale_bonus") {
    const beyond = Math.max(0, p.sales - item.threshold);
    if (item.threshold <= 0) return { value: p.sales, max: Math.max(p.sales, 1), text: `${plural(p.sales, "sale")} so far, each earning the bonus` };
    return {
      value: Math.min(p.sales, item.threshold), max: item.threshold,
      text: beyond > 0 ? `${plural(p.sales, "sale")}: ${beyond} beyond the first ${item.threshold} earned the bonus` : `${formatCount(p.sales)} of ${plural(item.threshold, "sale")} before the bonus starts`,
    };
  }
  return null;
}

/** earnedText says what the affiliate has earned from a bonus campaign so far. */
export function earnedText(item) {
  if (!item.earned) return item.kind === "rate_boost" || item.kind === "multiplier" ? "" : "No bonus earned yet.";
  return `Earned: ${formatMoney(item.bonuses, item.currency)}`;
}
