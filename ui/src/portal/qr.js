// QR codes of tracked links, made in the browser by the `qrcode` library (MIT): an SVG (sharp
// at any print size) and a PNG (for tools that take images only), both as data: URLs the page
// may show and download under its CSP (img-src 'self' data:). Nothing leaves the browser.
import QRCode from "qrcode";

const OPTIONS = { errorCorrectionLevel: "M", margin: 2 };

/** qrCodes makes the SVG and PNG data URLs of text (a URL). */
export async function qrCodes(text) {
  const [svg, png] = await Promise.all([
    QRCode.toString(text, { ...OPTIONS, type: "svg" }),
    QRCode.toDataURL(text, { ...OPTIONS, width: 512 }),
  ]);
  return { svg: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg), png };
}

/** qrFileName is a download's file name for a link: "pba-<code>.<ext>", safe characters only. */
export const qrFileName = (code, ext) => "qr-" + String(code || "link").replace(/[^A-Za-z0-9_-]+/g, "-") + "." + ext;
