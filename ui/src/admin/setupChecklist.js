// The setup checklist, from GET /api/pba/config: each item says whether it is done, what is
// missing and how to fix it. Secrets are only ever reported as set or not.
export function checklist(c) {
  const live = (c.programs || []).filter((p) => p.active);
  const real = live.filter((p) => !p.placeholder_domains);
  const firstPlaceholder = live.find((p) => p.placeholder_domains);
  return [
    {
      id: "public-url", title: "Public address", done: !!c.public_url,
      detail: c.public_url ? `Links, emails and Stripe return to ${c.public_url}.` :
        "PBA_PUBLIC_URL is not set: links in emails and Stripe's return address use the dashboard's application URL. Start the server with PBA_PUBLIC_URL=https://partners.your-domain.com.",
    },
    {
      id: "mail", title: "Mail sender", done: c.mail?.sender !== "none" && !!c.mail?.from,
      detail: c.mail?.sender === "resend" ? `Resend sends the mail${c.mail.from ? " from " + c.mail.from : ""}.${c.mail.resend_webhook ? "" : " Set RESEND_WEBHOOK_SECRET so bounces and complaints stop marketing mail."}` :
        c.mail?.sender === "smtp" ? `SMTP (${c.mail.smtp_host}) sends the mail${c.mail.from ? " from " + c.mail.from : ""}.` :
        c.mail?.sender === "sendmail" ? `This machine's sendmail sends the mail${c.mail.from ? " from " + c.mail.from : ""}; Resend or SMTP deliver better.` :
        "No mail sender: emails are only written to the log (Logs in the dashboard). Set RESEND_API_KEY, or SMTP in the dashboard (Settings → Mail settings).",
      fix: c.mail?.from ? "" : "Set PBA_MAIL_FROM, e.g. Acme Partners <partners@acme.com>.",
      link: c.mail?.sender === "none" ? ["/_/#/settings/mail", "Mail settings"] : null,
    },
    {
      id: "stripe", title: "Stripe (optional: manual payouts work without it)", done: !!(c.stripe?.secret_key && c.stripe?.webhook_secret),
      detail: c.stripe?.secret_key ? (c.stripe.webhook_secret ? "Stripe sales and Connect payouts are on." : "STRIPE_WEBHOOK_SECRET is missing: Stripe's events are refused.") :
        "Set STRIPE_SECRET_KEY for Connect payouts and STRIPE_WEBHOOK_SECRET for sales from Stripe Checkout and invoices.",
      fix: c.stripe?.webhook_url ? `Webhook endpoint in Stripe: ${c.stripe.webhook_url} (checkout.session.completed, invoice.paid, charge.refunded, charge.dispute.*, account.updated).` : "",
    },
    {
      id: "program", title: "A program with your real domains", done: real.length > 0,
      detail: real.length ? `${real.map((p) => p.name).join(", ")} ${real.length === 1 ? "is" : "are"} live on ${real.flatMap((p) => p.allowed_domains).join(", ")}.` :
        "Every active program still leads to a placeholder domain (example.com): set your shop's address and domains.",
      program: real.length ? null : firstPlaceholder?.id || "new",
    },
    {
      id: "rate-limits", title: "Rate limits", done: !!c.rate_limits?.enabled && c.rate_limits.rules > 0,
      detail: c.rate_limits?.enabled ? `${c.rate_limits.rules} rate-limit rules are on.` : "PocketBase's rate limits are off: turn them on against password guessing and floods.",
      link: c.rate_limits?.enabled ? null : ["/_/#/settings", "Settings → Rate limiting"],
    },
    {
      id: "backups", title: "Backups", done: !!c.backups?.cron,
      detail: c.backups?.cron ? `Automatic backups run on "${c.backups.cron}"${c.backups.s3 ? " to S3" : " in pb_data/backups (copy them off the machine)"}.` : "No automatic backups: schedule them (and preferably S3).",
      link: c.backups?.cron ? null : ["/_/#/settings/backups", "Backups"],
    },
  ];
}
