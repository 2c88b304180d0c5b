// The feedback summary's figures as people read them: NPS from basis points (−10000…10000 is
// −100…100), averages from hundredths, rates from basis points. Integers in, text out.

/** npsText is a score in basis points as "+25", "−33.3", "0". */
export function npsText(bp) {
  const v = Number(bp) || 0;
  const abs = Math.abs(v);
  const whole = Math.trunc(abs / 100);
  const tenths = Math.round((abs % 100) / 10);
  const text = tenths === 10 ? String(whole + 1) : tenths ? `${whole}.${tenths}` : String(whole);
  return v > 0 ? "+" + text : v < 0 ? "−" + text : "0";
}

/** averageText is hundredths as "8.43". */
export function averageText(x100) {
  const v = Math.trunc(Number(x100) || 0);
  return `${Math.trunc(v / 100)}.${String(Math.abs(v % 100)).padStart(2, "0")}`;
}

/** rateText is basis points as a percent with one decimal, "12.5%". */
export function rateText(bp) {
  const v = Math.trunc(Number(bp) || 0);
  return `${Math.trunc(v / 100)}.${Math.trunc(Math.abs(v % 100) / 10)}%`;
}

/** Schedules of surveys: presets (the server's surveyround.Presets) or once at send_at. */
export const SURVEY_SCHEDULES = [
  { id: "once", label: "Once, at the send time", cron: "" },
  { id: "monthly", label: "Monthly on the 1st", cron: "0 9 1 * *" },
  { id: "quarterly", label: "Quarterly (Jan, Apr, Jul, Oct)", cron: "0 9 1 1,4,7,10 *" },
  { id: "yearly", label: "Yearly on 1 January", cron: "0 9 1 1 *" },
];

/** scheduleLabel names a stored schedule. */
export function scheduleLabel(cron) {
  const s = String(cron || "").trim();
  return SURVEY_SCHEDULES.find((p) => p.cron === s)?.label || s;
}
