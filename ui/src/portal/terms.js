// The affiliate's terms in plain words, from GET /api/pba/terms and /api/pba/apply/{slug}
// answers. Pure: no SDK, no DOM (tested by terms.test.js).
import { formatBasisPoints, formatMoney } from "../lib/money.js";
import { splitSchedule, PRESETS } from "../admin/schedule.js";
import { formatMultiplier } from "../admin/incentives.js";

/** rateText says what one sale earns: "20% of each sale", "5.00 USD per sale". */
export function rateText(type, value, currency) {
  return type === "flat" ? `${formatMoney(value, currency)} per sale` : `${formatBasisPoints(value)}% of each sale`;
}

const SOURCES = {
  override: "your personal rate",
  tier: "the rate of your tier",
  incentive: "a campaign running now",
  program: "the program's standard rate",
};

/** rateSource says where a rate comes from: {source, tier} of the terms' rate. */
export function rateSource(rate) {
  const s = SOURCES[rate?.source] || SOURCES.program;
  return rate?.source === "tier" && rate.tier ? `${s} ${rate.tier}` : s;
}

/** recurringText says which payments of a subscription earn. */
export function recurringText(recurring, months) {
  if (recurring === "lifetime") return "Every payment of a subscription you bring earns, for as long as the customer pays.";
  if (recurring === "months") return `Every payment of a subscription earns for its first ${months} month${months === 1 ? "" : "s"}.`;
  return "The first payment of a subscription earns; renewals do not.";
}

const plural = (n, one) => `${n} ${one}${n === 1 ? "" : "s"}`;

/** cookieText: how long after a click a sale still counts. */
export const cookieText = (days) => `A sale counts for you up to ${plural(days, "day")} after the visitor's click.`;

/** holdText: how long a commission waits before it can be paid. */
export const holdText = (days) =>
  days > 0 ? `A commission is held for ${plural(days, "day")} (refunds can still undo it), then becomes payable.` : "A commission is payable as soon as the sale is approved.";

/** minimumText: the least a payout pays. */
export const minimumText = (minor, currency) =>
  minor > 0 ? `Payouts are sent once you have at least ${formatMoney(minor, currency)} payable; less carries over.` : "Any payable amount is paid out.";

/** scheduleText names a payout schedule: a preset's words, or its cron spec. */
export function scheduleText(spec) {
  const { zone, preset, cron } = splitSchedule(spec);
  const name = PRESETS.find((p) => p.id === preset)?.label || `On the schedule “${cron}”`;
  return zone ? `${name} (${zone} time)` : name;
}

const REASONS = {
  nothing_payable: "Nothing is payable yet.",
  below_minimum: "Below the minimum payout: it carries over to the next one.",
  not_approved: "Your account is not approved, so nothing is paid.",
  stripe_onboarding_incomplete: "Finish setting up Stripe payouts to be paid.",
  no_schedule: "The program has no payout scheduled.",
};

/** payoutReason explains a next payout that pays nothing. */
export const payoutReason = (reason) => REASONS[reason] || "";

/** nextSteps is what happens after applying to a program. */
export function nextSteps(autoApprove) {
  return autoApprove
    ? ["You get an email to confirm your address.", "Your account is approved at once: sign in to get your links.", "Share your links; every sale they bring earns a commission."]
    : ["You get an email to confirm your address.", "The program team reviews your application, usually within a few days; you get an email with the decision.", "Once approved, sign in to get your links and start earning."];
}

/**
 * incentiveRateText spells out a rate a running campaign changes (terms' rate with source
 * incentive): "20% + 5 points during Spring push = 25%", "20% × 1.5 during Double = 30%".
 * Empty when no campaign changes it.
 */
export function incentiveRateText(rate, currency) {
  if (rate?.source !== "incentive") return "";
  const one = (v) => (rate.type === "flat" ? formatMoney(v, currency) : `${formatBasisPoints(v)}%`);
  let s = one(rate.base_value);
  if (rate.boost > 0) s += ` + ${formatBasisPoints(rate.boost)} point${rate.boost === 100 ? "" : "s"}`;
  if (rate.multiplier > 1000) s += ` × ${formatMultiplier(rate.multiplier)}`;
  const names = rate.incentives || [];
  if (names.length) s += ` during ${names.join(" and ")}`;
  return `${s} = ${one(rate.value)}`;
}
