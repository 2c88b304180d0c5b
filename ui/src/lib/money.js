// Money in integer minor units with a lowercase ISO currency, as the server stores it. Amounts
// are formatted and parsed by string arithmetic with the currency's exponent, never through a
// float, so what is typed is exactly what is stored (hooks/internal/money is the Go side).

const ZERO_DECIMALS = new Set("bif clp djf gnf isk jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split(" "));
const THREE_DECIMALS = new Set("bhd iqd jod kwd lyd omr tnd".split(" "));

/** MAX_AMOUNT is the server's bound on an amount (money.MaxAmount): 10^11 minor units. */
export const MAX_AMOUNT = 100_000_000_000;

/** exponent is the number of decimals of currency's minor unit (jpy 0, usd 2, kwd 3). */
export function exponent(currency) {
  const c = String(currency || "").toLowerCase();
  return ZERO_DECIMALS.has(c) ? 0 : THREE_DECIMALS.has(c) ? 3 : 2;
}

// big reads an integer given as a safe number, a bigint or a digit string; anything else is 0.
export function big(v) {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
  return 0n;
}

const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");

/** plainAmount is minor as a decimal string without grouping or currency: 5000 usd → "50.00". */
export function plainAmount(minor, currency) {
  let v = big(minor);
  const sign = v < 0n ? "-" : "";
  if (v < 0n) v = -v;
  const e = exponent(currency);
  const digits = v.toString().padStart(e + 1, "0");
  return sign + (e > 0 ? digits.slice(0, -e) + "." + digits.slice(-e) : digits);
}

/** formatAmount is minor grouped, without the currency: 123456 usd → "1,234.56" (tables whose header names it). */
export function formatAmount(minor, currency) {
  const plain = plainAmount(minor, currency);
  const sign = plain.startsWith("-") ? "-" : "";
  const [whole, frac] = plain.replace("-", "").split(".");
  return sign + group(whole) + (frac !== undefined ? "." + frac : "");
}

/** formatMoney is minor for people: 123456 usd → "1,234.56 USD". */
export function formatMoney(minor, currency) {
  return formatAmount(minor, currency) + " " + String(currency || "").toUpperCase();
}

/** formatCount groups an integer: 12345 → "12,345". */
export const formatCount = (n) => group(big(n).toString());

const SYMBOLS = /[$€£¥₩₹\s,]/g;

/**
 * parseMoney reads an amount typed in major units ("$50", "1,234.5", "50 USD") into minor units
 * of currency: {minor} or {error} saying what is wrong. More decimals than the currency has is
 * an error, never rounded.
 */
export function parseMoney(text, currency) {
  const cur = String(currency || "").toLowerCase();
  let s = String(text ?? "").trim();
  if (cur && s.toLowerCase().endsWith(cur)) s = s.slice(0, -cur.length);
  if (cur && s.toLowerCase().startsWith(cur)) s = s.slice(cur.length);
  s = s.replace(SYMBOLS, "");
  if (s === "") return { error: "Enter an amount." };
  const m = /^(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) return { error: "Enter an amount like 50 or 49.99." };
  const e = exponent(cur);
  const frac = m[2] || "";
  if (frac.replace(/0+$/, "").length > e) {
    return { error: e === 0 ? `${cur.toUpperCase()} has no decimals.` : `At most ${e} decimals in ${cur.toUpperCase()}.` };
  }
  const minor = BigInt(m[1] + frac.padEnd(e, "0").slice(0, e));
  if (minor > BigInt(MAX_AMOUNT)) return { error: "That amount is too large." };
  return { minor: Number(minor) };
}

/** formatBasisPoints shows basis points as a percent number: 1250 → "12.5", 2000 → "20". */
export function formatBasisPoints(bp) {
  const v = big(bp);
  const s = (v < 0n ? -v : v).toString().padStart(3, "0");
  const frac = s.slice(-2).replace(/0+$/, "");
  return (v < 0n ? "-" : "") + s.slice(0, -2) + (frac ? "." + frac : "");
}

/**
 * parsePercent reads a percent typed by a person ("12.5", "12.5%", "0.25 %") into basis points:
 * {bp} or {error}. At most two decimals (a basis point is 0.01%), at most 100%.
 */
export function parsePercent(text) {
  const s = String(text ?? "").trim().replace(/\s*%$/, "").trim();
  if (s === "") return { error: "Enter a percent." };
  const m = /^(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) return { error: "Enter a percent like 20 or 12.5." };
  const frac = m[2] || "";
  if (frac.replace(/0+$/, "").length > 2) return { error: "At most two decimals (0.01% is the smallest step)." };
  const bp = BigInt(m[1] + frac.padEnd(2, "0").slice(0, 2));
  if (bp > 10000n) return { error: "A percent commission is at most 100%." };
  return { bp: Number(bp) };
}
