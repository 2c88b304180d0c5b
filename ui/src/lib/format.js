// Dates and numbers for people. Times are shown in the browser's time zone.
const dateFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
const timeFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

// PocketBase's dates are "2006-01-02 15:04:05.000Z" (UTC).
export function parseDate(s) {
  if (!s) return null;
  const d = new Date(String(s).replace(" ", "T"));
  return isNaN(d) ? null : d;
}
export const day = (s) => { const d = parseDate(s); return d ? dateFmt.format(d) : "–"; };
export const time = (s) => { const d = parseDate(s); return d ? timeFmt.format(d) : "–"; };

/** percent shows a server percent number (cr, unique_rate; 2 decimals): 3.5 → "3.50%". */
export const percent = (n) => (typeof n === "number" && isFinite(n) ? n.toFixed(2) + "%" : "–");

/** localZone is the browser's IANA time zone. */
export const localZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** isoDay is the calendar day of d in zone as YYYY-MM-DD. */
export function isoDay(d, zone = localZone()) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(d);
  const get = (t) => parts.find((p) => p.type === t).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/** addDays moves a YYYY-MM-DD day by n days (calendar arithmetic, no time zone). */
export function addDays(isoDate, n) {
  const d = new Date(isoDate + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}
