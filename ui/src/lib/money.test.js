import { test } from "node:test";
import assert from "node:assert/strict";
import { exponent, formatAmount, formatMoney, plainAmount, parseMoney, parsePercent, formatBasisPoints, formatCount, MAX_AMOUNT } from "./money.js";

test("exponents follow the Go money package", () => {
  assert.equal(exponent("usd"), 2);
  assert.equal(exponent("JPY"), 0);
  assert.equal(exponent("kwd"), 3);
});

test("formatMoney by string arithmetic", () => {
  assert.equal(formatMoney(123456, "usd"), "1,234.56 USD");
  assert.equal(formatMoney(-5, "usd"), "-0.05 USD");
  assert.equal(formatMoney(1500, "jpy"), "1,500 JPY");
  assert.equal(formatMoney(1, "kwd"), "0.001 KWD");
  assert.equal(formatMoney("900719925474099312", "usd"), "9,007,199,254,740,993.12 USD");
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(plainAmount(5000, "usd"), "50.00");
  assert.equal(formatAmount(-123456, "usd"), "-1,234.56");
  assert.equal(plainAmount(7, "jpy"), "7");
});

test("parseMoney reads what people type, exactly", () => {
  assert.deepEqual(parseMoney("$50", "usd"), { minor: 5000 });
  assert.deepEqual(parseMoney("1,234.5", "usd"), { minor: 123450 });
  assert.deepEqual(parseMoney("50 USD", "usd"), { minor: 5000 });
  assert.deepEqual(parseMoney("0.29", "usd"), { minor: 29 }); // 0.29 * 100 is 28.999… as a float
  assert.deepEqual(parseMoney("1.50", "jpy").error, "JPY has no decimals.");
  assert.deepEqual(parseMoney("1.0", "jpy"), { minor: 1 });
  assert.deepEqual(parseMoney("0.125", "kwd"), { minor: 125 });
  assert.match(parseMoney("1.005", "usd").error, /At most 2 decimals/);
  assert.match(parseMoney("-5", "usd").error, /Enter an amount like/);
  assert.match(parseMoney("", "usd").error, /Enter an amount/);
  assert.match(parseMoney("1e3", "usd").error, /Enter an amount like/);
  assert.deepEqual(parseMoney("1000000000", "usd"), { minor: MAX_AMOUNT });
  assert.match(parseMoney("1000000000.01", "usd").error, /too large/);
});

test("percent to basis points and back", () => {
  assert.deepEqual(parsePercent("12.5%"), { bp: 1250 });
  assert.deepEqual(parsePercent("20"), { bp: 2000 });
  assert.deepEqual(parsePercent("0.01 %"), { bp: 1 });
  assert.deepEqual(parsePercent("100"), { bp: 10000 });
  assert.match(parsePercent("100.01").error, /at most 100%/);
  assert.match(parsePercent("0.125").error, /two decimals/);
  assert.match(parsePercent("abc").error, /like 20/);
  assert.equal(formatBasisPoints(1250), "12.5");
  assert.equal(formatBasisPoints(2000), "20");
  assert.equal(formatBasisPoints(1), "0.01");
  assert.equal(formatBasisPoints(10000), "100");
});
