// Feedback and email preferences in words: the values are the server's (collections/feedback.go),
// the labels the portal's.

/** TOPICS are the feedback collection's topic values, in the order of its select field. */
export const TOPICS = [
  { value: "general", label: "General" },
  { value: "program", label: "The program and its terms" },
  { value: "portal", label: "This portal" },
  { value: "payouts", label: "Payouts" },
  { value: "materials", label: "Promotional materials" },
  { value: "support", label: "Support" },
  { value: "other", label: "Something else" },
];

/** MAIL_CATEGORIES are the categories of affiliates.mail_opt_out (collections.MailCategories). */
export const MAIL_CATEGORIES = [
  { value: "broadcast", label: "News and announcements from the program" },
  { value: "digest", label: "Weekly digest of your figures" },
  { value: "survey", label: "Surveys asking for your opinion" },
  { value: "incentive", label: "New incentives and campaigns" },
  { value: "material", label: "New promotional materials" },
];

/** topicLabel names a stored topic (an unknown one as it is). */
export const topicLabel = (v) => TOPICS.find((t) => t.value === v)?.label || v || "General";

/** npsGroup is how the NPS counts a rating: promoter 9–10, passive 7–8, detractor 0–6. */
export function npsGroup(rating) {
  const n = Number(rating);
  return n >= 9 ? "promoter" : n >= 7 ? "passive" : "detractor";
}

/** optOut is the mail_opt_out list for the categories still wanted, in the server's order. */
export function optOut(wanted) {
  const keep = new Set(wanted || []);
  return MAIL_CATEGORIES.map((c) => c.value).filter((v) => !keep.has(v));
}

/** wanted is the inverse of optOut: the categories a stored mail_opt_out still receives. */
export function wanted(stored) {
  const out = new Set(Array.isArray(stored) ? stored : []);
  return MAIL_CATEGORIES.map((c) => c.value).filter((v) => !out.has(v));
}
