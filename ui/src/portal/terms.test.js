import { test } from "node:test";
import assert from "node:assert/strict";
import { rateText, rateSource, recurringText, scheduleText, minimumText, holdText, cookieText, payoutReason, nextSteps } from "./terms.js";

test("rates in plain words, in minor units by the currency's exponent", () => {
  assert.equal(rateText("percent", 1250, "usd"), "12.5% of each sale");
  assert.equal(rateText("percent", 2000, "usd"), "20% of each sale");
  assert.equal(rateText("flat", 500, "eur"), "5.00 EUR per sale");
  assert.equal(rateText("flat", 500, "jpy"), "500 JPY per sale");
  assert.equal(rateSource({ source: "tier", tier: "Gold" }), "the rate of your tier Gold");
  assert.equal(rateSource({ source: "override" }), "your personal rate");
  assert.equal(rateSource({}), "the program's standard rate");
});

test("windows, minimum and schedule", () => {
  assert.equal(cookieText(1), "A sale counts for you up to 1 day after the visitor's click.");
  assert.match(holdText(30), /held for 30 days/);
  assert.match(holdText(0), /as soon as/);
  assert.match(minimumText(5000, "usd"), /50\.00 USD/);
  assert.match(recurringText("months", 12), /first 12 months/);
  assert.match(recurringText("lifetime"), /as long as/);
  assert.match(recurringText(""), /first payment/);
  assert.equal(scheduleText("0 9 1 * *"), "Monthly on the 1st");
  assert.equal(scheduleText("CRON_TZ=Europe/Berlin 0 9 * * 1"), "Weekly on Monday (Europe/Berlin time)");
  assert.equal(scheduleText("5 4 * * *"), "On the schedule “5 4 * * *”");
  assert.match(payoutReason("below_minimum"), /minimum/);
  assert.equal(payoutReason("unknown"), "");
  assert.equal(nextSteps(false).length, 3);
});
