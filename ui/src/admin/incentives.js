// Incentive campaigns in human units: dates as local times of the program's time zone (the
// server stores instants), multipliers as "1.5" (the server's per mille), the campaign's state.

/** zoneOffset is how far the wall clock of zone is ahead of UTC at instant ms, in ms. */
function zoneOffset(ms, zone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]),
  );
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

/**
 * localToUTC turns a datetime-local value ("2026-03-30T00:00") read as a wall-clock time of
 * zone into the ISO instant (UTC). A time skipped by a DST change moves forward past the gap;
 * a repeated one takes its first occurrence.
 */
export function localToUTC(local, zone = "UTC") {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(String(local || ""));
  if (!m) return "";
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  // The offsets half a day before and after: a DST change in between gives two candidates.
  const before = wall - zoneOffset(wall - 432e5, zone);
  const after = wall - zoneOffset(wall + 432e5, zone);
  const valid = [before, after].filter((ms) => ms + zoneOffset(ms, zone) === wall);
  // None valid: the time falls in the gap of a change; the offset before it moves it forward.
  return new Date(valid.length ? Math.min(...valid) : before).toISOString();
}

/** utcToLocal shows an instant (ISO or PocketBase's "2026-03-29 22:00:00.000Z") as a datetime-local value of zone. */
export function utcToLocal(iso, zone = "UTC") {
  if (!iso) return "";
  const ms = Date.parse(String(iso).replace(" ", "T"));
  if (Number.isNaN(ms)) return "";
  return new Date(ms + zoneOffset(ms, zone)).toISOString().slice(0, 16);
}

/** validZone reports whether zone is a time zone this browser knows. */
export function validZone(zone) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** parseMultiplier reads "1.5", "×1.5" or "x2" into per mille: {permille} or {error}. */
export function parseMultiplier(text) {
  const s = String(text ?? "").trim().replace(/^[×x]\s*/i, "");
  const m = /^(\d+)(?:\.(\d{0,3}))?$/.exec(s);
  if (!m) return { error: "Enter a factor like 1.5 or 2 (at most three decimals)." };
  const permille = Number(m[1]) * 1000 + Number((m[2] || "").padEnd(3, "0"));
  if (permille <= 1000 || permille > 10000) return { error: "A multiplier is above 1 and at most 10." };
  return { permille };
}

/** formatMultiplier shows per mille as a factor: 1500 → "1.5". */
export function formatMultiplier(permille) {
  const n = Number(permille) || 0;
  const frac = String(n % 1000).padStart(3, "0").replace(/0+$/, "");
  return Math.floor(n / 1000) + (frac ? "." + frac : "");
}

/** stateOf is a campaign's state at now: "off", "upcoming", "active" or "ended". */
export function stateOf(incentive, now = Date.now()) {
  if (!incentive.active) return "off";
  const start = Date.parse(String(incentive.starts_at).replace(" ", "T"));
  const end = Date.parse(String(incentive.ends_at).replace(" ", "T"));
  if (now < start) return "upcoming";
  if (now < end) return "active";
  return "ended";
}
