import { test } from "node:test";
import assert from "node:assert/strict";
import { splitSchedule, joinSchedule } from "./schedule.js";

test("schedules split into zone, preset and cron, and join back", () => {
  assert.deepEqual(splitSchedule("CRON_TZ=Europe/Berlin 0 9 1 * *"), { zone: "Europe/Berlin", preset: "monthly", cron: "0 9 1 * *" });
  assert.deepEqual(splitSchedule("0 9 1,15 * *"), { zone: "", preset: "twice", cron: "0 9 1,15 * *" });
  assert.deepEqual(splitSchedule("30 6 * * 5"), { zone: "", preset: "custom", cron: "30 6 * * 5" });
  assert.equal(joinSchedule("America/New_York", " 0  9 * * 1"), "CRON_TZ=America/New_York 0 9 * * 1");
  assert.equal(joinSchedule("", "0 9 1 * *"), "0 9 1 * *");
});
