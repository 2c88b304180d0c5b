import { test } from "node:test";
import assert from "node:assert/strict";
import { localToUTC, utcToLocal, parseMultiplier, formatMultiplier, stateOf, validZone } from "./incentives.js";

test("campaign dates are local times of the program's zone, across DST changes", () => {
  // Berlin moves to summer time on 29 March 2026: midnight before is +01:00, after +02:00.
  assert.equal(localToUTC("2026-03-28T00:00", "Europe/Berlin"), "2026-03-27T23:00:00.000Z");
  assert.equal(localToUTC("2026-03-30T00:00", "Europe/Berlin"), "2026-03-29T22:00:00.000Z");
  assert.equal(localToUTC("2026-10-25T02:30", "Europe/Berlin"), "2026-10-25T00:30:00.000Z"); // repeated hour: the first
  assert.equal(localToUTC("2026-03-29T02:30", "Europe/Berlin"), "2026-03-29T01:30:00.000Z"); // skipped hour: 03:30 CEST
  assert.equal(localToUTC("2026-11-03T09:15", "America/New_York"), "2026-11-03T14:15:00.000Z");
  assert.equal(localToUTC("2026-06-01T00:00", "UTC"), "2026-06-01T00:00:00.000Z");
  assert.equal(localToUTC("garbage", "UTC"), "");
  assert.equal(utcToLocal("2026-03-29 22:00:00.000Z", "Europe/Berlin"), "2026-03-30T00:00");
  assert.equal(utcToLocal("2026-03-27T23:00:00Z", "Europe/Berlin"), "2026-03-28T00:00");
  for (const local of ["2026-01-15T08:00", "2026-07-15T23:59", "2026-12-31T23:00"]) {
    assert.equal(utcToLocal(localToUTC(local, "Asia/Kolkata"), "Asia/Kolkata"), local);
  }
  assert.equal(validZone("Europe/Berlin"), true);
  assert.equal(validZone("Mars/Olympus"), false);
});

test("multipliers in human units", () => {
  assert.deepEqual(parseMultiplier("1.5"), { permille: 1500 });
  assert.deepEqual(parseMultiplier("×2"), { permille: 2000 });
  assert.deepEqual(parseMultiplier("x1.125"), { permille: 1125 });
  assert.ok(parseMultiplier("1").error);
  assert.ok(parseMultiplier("10.5").error);
  assert.ok(parseMultiplier("1.2345").error);
  assert.equal(formatMultiplier(1500), "1.5");
  assert.equal(formatMultiplier(2000), "2");
  assert.equal(formatMultiplier(1125), "1.125");
});

test("a campaign's state", () => {
  const c = { active: true, starts_at: "2026-03-27 23:00:00.000Z", ends_at: "2026-03-29 22:00:00.000Z" };
  assert.equal(stateOf(c, Date.parse("2026-03-27T22:59:59Z")), "upcoming");
  assert.equal(stateOf(c, Date.parse("2026-03-27T23:00:00Z")), "active");
  assert.equal(stateOf(c, Date.parse("2026-03-29T21:59:59Z")), "active");
  assert.equal(stateOf(c, Date.parse("2026-03-29T22:00:00Z")), "ended");
  assert.equal(stateOf({ ...c, active: false }, Date.parse("2026-03-28T00:00:00Z")), "off");
});
