import { test } from "node:test";
import assert from "node:assert/strict";
import { checklist } from "./setupChecklist.js";

test("a fresh server: everything but Stripe's optional item says what to do", () => {
  const items = checklist({ public_url: "", mail: { sender: "none", from: "" }, stripe: {}, programs: [{ id: "p1", name: "Default", active: true, placeholder_domains: true, allowed_domains: ["example.com"] }], rate_limits: { enabled: false, rules: 0 }, backups: { cron: "" } });
  assert.deepEqual(items.map((i) => i.done), [false, false, false, false, false, false]);
  assert.match(items[0].detail, /PBA_PUBLIC_URL/);
  assert.match(items[1].detail, /RESEND_API_KEY/);
  assert.match(items[1].detail, /only written to the log/);
  assert.equal(items[3].program, "p1");
});

test("a configured server is done", () => {
  const items = checklist({ public_url: "https://p.acme.io", mail: { sender: "resend", from: "A <a@acme.io>", resend_webhook: true }, stripe: { secret_key: true, webhook_secret: true, webhook_url: "https://p.acme.io/api/pba/stripe/webhook" }, programs: [{ id: "p1", name: "Acme", active: true, placeholder_domains: false, allowed_domains: ["acme.io"] }], rate_limits: { enabled: true, rules: 3 }, backups: { cron: "0 3 * * *", s3: true } });
  assert.ok(items.every((i) => i.done), JSON.stringify(items.filter((i) => !i.done)));
});
