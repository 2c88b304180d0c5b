// Shared by /portal/ and /admin/: money in integer minor units formatted by string arithmetic
// (never floats), the API error type and small REST/DOM helpers. Loaded before each page's script.
"use strict";
window.pba = (() => {
  // ---- money: integer minor units, formatted by string arithmetic with the currency's exponent
  const ZERO_DECIMALS = new Set("bif clp djf gnf isk jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split(" "));
  const THREE_DECIMALS = new Set("bhd iqd jod kwd lyd omr tnd".split(" "));
  const exponent = (c) => (ZERO_DECIMALS.has(c) ? 0 : THREE_DECIMALS.has(c) ? 3 : 2);
  function big(v) {
    if (typeof v === "bigint") return v;
    if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
    if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
    return 0n;
  }
  const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  function formatMoney(minor, currency) {
    const cur = String(currency || "").toLowerCase();
    let v = big(minor);
    const sign = v < 0n ? "-" : "";
    if (v < 0n) v = -v;
    const e = exponent(cur);
    let digits = v.toString();
    let text = group(digits);
    if (e > 0) {
      digits = digits.padStart(e + 1, "0");
      text = group(digits.slice(0, -e)) + "." + digits.slice(-e);
    }
    return sign + text + " " + cur.toUpperCase();
  }
  const formatCount = (n) => group(big(n).toString());
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || (status ? "The server answered " + status + "." : "The server cannot be reached."));
      this.status = status;
      this.data = (body && body.data) || {};
    }
  }  const records = (c) => "/api/collections/" + encodeURIComponent(c) + "/records";
  const quote = (v) => '"' + String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
    return "?" + q.toString();
  }
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  // parseBody reads a fetch response as JSON: null when it is empty or not JSON.
  async function parseBody(res) {
    const text = await res.text();
    if (!text) return null;
    try { return JSON.parse(text); } catch (_) { return null; }
  }
  // listAll pages through a collection with the page's own api function (its token); the API
  // rules decide which rows that is.
  async function listAll(api, collection, params) {
    const out = [];
    for (let page = 1; page < 1000; page++) {
      const res = await api(records(collection) + query({ ...params, page, perPage: 500, skipTotal: 1 }));
      out.push(...res.items);
      if (res.items.length < 500) break;
    }
    return out;
  }
  return { exponent, big, group, formatMoney, formatCount, ApiError, records, quote, query, cell, parseBody, listAll };
})();
