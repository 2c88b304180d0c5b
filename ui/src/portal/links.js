// Tracked links: the addresses an affiliate shares, built the way the redirector reads them
// (/r/{code}?to=<deep link>&sub=<campaign>; docs/http-api.md). Pure (tested by links.test.js).

/** trackedURL is origin/r/code with an optional deep link (to) and sub. */
export function trackedURL(origin, code, { to = "", sub = "" } = {}) {
  const q = new URLSearchParams();
  if (to) q.set("to", to);
  if (sub) q.set("sub", sub);
  const s = q.toString();
  return `${origin}/r/${encodeURIComponent(code)}${s ? "?" + s : ""}`;
}

/**
 * checkDestination says whether url may be a destination or deep link of a program with
 * allowed domains (a domain allows its subdomains), as the server checks it: "" when it may,
 * else what is wrong. The server has the last word; this only spares a round trip.
 */
export function checkDestination(url, domains = []) {
  let u;
  try {
    u = new URL(String(url || "").trim());
  } catch {
    return "Enter a full address starting with https://";
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") return "Only http(s) addresses.";
  const host = u.hostname.toLowerCase();
  if (domains.length && !domains.some((d) => host === d.toLowerCase() || host.endsWith("." + d.toLowerCase()))) {
    return `Use an address on ${domains.join(", ")}.`;
  }
  return "";
}

/** SUB_PATTERN is what a sub may hold here: short, no spaces (the server caps it at 100). */
export const SUB_PATTERN = /^[A-Za-z0-9._~-]{0,100}$/;
