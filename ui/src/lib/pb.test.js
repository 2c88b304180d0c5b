import { test } from "node:test";
import assert from "node:assert/strict";
import { refreshDelay } from "./pb.js";

test("a token is refreshed at half its lifetime, within 5 s and an hour", () => {
  const iat = 1_000_000;
  assert.equal(refreshDelay({ iat, exp: iat + 86400 }, iat), 3600); // a day-long token: hourly at most
  assert.equal(refreshDelay({ iat, exp: iat + 1200 }, iat + 100), 500); // half of 20 min, 100 s later
  assert.equal(refreshDelay({ iat, exp: iat + 1200 }, iat + 900), 5); // overdue: soon
  assert.equal(refreshDelay({ iat, exp: iat + 10 }, iat), 5); // PocketBase's shortest token (10 s)
  assert.equal(refreshDelay({}, iat), 600); // no claims: in 10 min
});
