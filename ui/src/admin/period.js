// The overview's periods: calendar days in the admin's time zone.
import { isoDay, addDays } from "../lib/format.js";

export const RANGES = [
  ["today", "Today"],
  ["7d", "7 days"],
  ["30d", "30 days"],
  ["90d", "90 days"],
  ["mtd", "Month to date"],
  ["custom", "Custom"],
];

const days = (from, to) => Math.round((Date.parse(to) - Date.parse(from)) / 86400000) + 1;

/** periodOf is {from, to, interval} of a range key on the day today (the server compares
 * with the period of the same length just before: compare=previous). */
export function periodOf(range, today, custom = {}) {
  let from = today;
  let to = today;
  switch (range) {
    case "today": break;
    case "7d": from = addDays(today, -6); break;
    case "90d": from = addDays(today, -89); break;
    case "mtd": from = today.slice(0, 8) + "01"; break;
    case "custom":
      if (custom.from && custom.to && custom.from <= custom.to) { from = custom.from; to = custom.to; }
      else from = addDays(today, -29);
      break;
    default: from = addDays(today, -29);
  }
  return { from, to, interval: days(from, to) > 120 ? "week" : "day" };
}

/** todayIn is today's date in zone. */
export const todayIn = (zone) => isoDay(new Date(), zone);

/** change is the relative change from prev to cur in percent (null when prev is 0). */
export function change(cur, prev) {
  if (!prev) return cur ? null : 0;
  return ((cur - prev) / Math.abs(prev)) * 100;
}
