import { test } from "node:test";
import assert from "node:assert/strict";
import { npsText, averageText, rateText, scheduleLabel } from "./feedback.js";

test("NPS in basis points reads as a score", () => {
  assert.equal(npsText(2500), "+25");
  assert.equal(npsText(-3333), "−33.3");
  assert.equal(npsText(0), "0");
  assert.equal(npsText(10000), "+100");
  assert.equal(npsText(1996), "+20");
});

test("averages and rates from integers", () => {
  assert.equal(averageText(843), "8.43");
  assert.equal(averageText(700), "7.00");
  assert.equal(averageText(5), "0.05");
  assert.equal(rateText(10000), "100.0%");
  assert.equal(rateText(1250), "12.5%");
  assert.equal(rateText(6667), "66.6%");
});

test("schedules are named", () => {
  assert.equal(scheduleLabel("0 9 1 1,4,7,10 *"), "Quarterly (Jan, Apr, Jul, Oct)");
  assert.equal(scheduleLabel(""), "Once, at the send time");
  assert.equal(scheduleLabel("5 4 * * *"), "5 4 * * *");
});
