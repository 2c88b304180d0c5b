import { test } from "node:test";
import assert from "node:assert/strict";
import { qrCodes, qrFileName } from "./qr.js";

test("a link's QR code as SVG and PNG data URLs", async () => {
  const { svg, png } = await qrCodes("https://partners.example.com/r/ada-lovelace?sub=nl");
  assert.match(svg, /^data:image\/svg\+xml;charset=utf-8,/);
  const markup = decodeURIComponent(svg.split(",")[1]);
  assert.match(markup, /^<svg[^>]*viewBox="0 0 (\d+) \1"/);
  assert.match(markup, /<path/);
  assert.match(png, /^data:image\/png;base64,iVBORw0KGgo/); // the PNG signature
  assert.equal(qrFileName("ada-lovelace", "svg"), "qr-ada-lovelace.svg");
  assert.equal(qrFileName("a b/../c", "png"), "qr-a-b-c.png");
});
