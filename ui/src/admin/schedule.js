// Payout schedules: a cron spec with an optional CRON_TZ= prefix, as programs store it, split
// into a zone and a preset or custom cron for the form.
export const PRESETS = [
  { id: "monthly", label: "Monthly on the 1st", cron: "0 9 1 * *" },
  { id: "twice", label: "Twice a month (1st and 15th)", cron: "0 9 1,15 * *" },
  { id: "weekly", label: "Weekly on Monday", cron: "0 9 * * 1" },
];

/** splitSchedule reads "CRON_TZ=Europe/Berlin 0 9 1 * *" into {zone, preset, cron}. */
export function splitSchedule(spec) {
  let s = String(spec || "").trim();
  let zone = "";
  const m = /^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$/.exec(s);
  if (m) { zone = m[1]; s = m[2].trim(); }
  const preset = PRESETS.find((p) => p.cron === s.replace(/\s+/g, " "));
  return { zone, preset: preset ? preset.id : "custom", cron: s };
}

/** joinSchedule is the stored spec of a zone and a cron ("" zone: the server's time). */
export function joinSchedule(zone, cron) {
  const c = String(cron || "").trim().replace(/\s+/g, " ");
  return zone ? `CRON_TZ=${zone} ${c}` : c;
}
