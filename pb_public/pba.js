// Shared by /portal/ and /admin/: money in integer minor units formatted by string arithmetic
// (never floats), the API error type, the session (REST client, stored token, sign-in and
// refresh), the realtime client and small DOM helpers. Loaded before each page's script.
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
  }
  const records = (c) => "/api/collections/" + encodeURIComponent(c) + "/records";
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
  // setMsg shows text in the page's #msg line; kind is info (the default), ok or error.
  function setMsg(text, kind) {
    const m = document.getElementById("msg");
    m.textContent = text || "";
    m.className = "msg " + (kind || "info");
  }
  // showSignIn is the signed-out page: the panels named hidden, the #auth forms shown with
  // message, the focus on the email field.
  function showSignIn(panels, message) {
    for (const id of ["who", ...panels]) document.getElementById(id).hidden = true;
    document.getElementById("auth").hidden = false;
    setMsg(message, "info");
    document.getElementById("si-email").focus();
  }
  async function busy(button, fn) {
    button.disabled = true;
    try { return await fn(); } finally { button.disabled = false; }
  }

  // ---- session: the token of one auth collection (kept in localStorage under storageKey as
  // {"token": …}) and the REST client that sends it. api() sends and reads JSON and throws an
  // ApiError; a 401 on a request made with the token ends the session through onExpired.
  function session({ collection, storageKey, onExpired }) {
    const auth = "/api/collections/" + encodeURIComponent(collection);
    let token = "";
    function save(t) {
      token = t;
      try { localStorage.setItem(storageKey, JSON.stringify({ token })); } catch (_) { /* private mode */ }
    }
    function forget() {
      token = "";
      try { localStorage.removeItem(storageKey); } catch (_) { /* ignore */ }
    }
    // request is the bare fetch with the token (opts.auth false: without); the response as is.
    async function request(path, opts = {}) {
      const headers = { ...opts.headers };
      if (opts.body !== undefined) headers["Content-Type"] = "application/json";
      if (token && opts.auth !== false) headers.Authorization = token;
      try {
        return await fetch(path, { method: opts.method || "GET", headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
      } catch (_) {
        throw new ApiError(0, null);
      }
    }
    async function api(path, opts = {}) {
      const res = await request(path, { ...opts, headers: { Accept: "application/json" } });
      const body = await parseBody(res);
      if (!res.ok) {
        if (res.status === 401 && token && opts.auth !== false && !opts.resuming) onExpired("Your session ended; please sign in again.");
        throw new ApiError(res.status, body);
      }
      return body;
    }
    async function signIn(identity, password) {
      const res = await api(auth + "/auth-with-password", { method: "POST", body: { identity, password }, auth: false });
      save(res.token);
      return res.record;
    }
    // resume refreshes the stored token: the fresh record, or null when none is stored. Its
    // errors (401 included) are the caller's to handle.
    async function resume() {
      let saved = null;
      try { saved = JSON.parse(localStorage.getItem(storageKey) || "null"); } catch (_) { saved = null; }
      if (!saved || !saved.token) return null;
      token = saved.token;
      const res = await api(auth + "/auth-refresh", { method: "POST", body: {}, resuming: true });
      save(res.token);
      return res.record;
    }
    return {
      api, request, signIn, resume, forget,
      listAll: (c, params) => listAll(api, c, params),
      get token() { return token; },
    };
  }

  // ---- realtime: EventSource on /api/realtime; on each PB_CONNECT (also after a reconnect)
  // POST the subscriptions with the auth token, as the PocketBase SDK does. handlers maps an
  // event name to a function of its data; onState(on, text) hears of the connection (text is
  // empty while live). close() ends it for good.
  function realtime(api, subscriptions, handlers, onState) {
    let es = null;
    let closed = false;
    function open() {
      const me = new EventSource("/api/realtime");
      es = me;
      me.addEventListener("PB_CONNECT", async (ev) => {
        let clientId = "";
        try { clientId = JSON.parse(ev.data).clientId; } catch (_) { return; }
        try {
          await api("/api/realtime", { method: "POST", body: { clientId, subscriptions } });
          onState(true, "");
        } catch (e) {
          onState(false, "Live updates are off: " + e.message);
        }
      });
      for (const [name, fn] of Object.entries(handlers)) me.addEventListener(name, (ev) => fn(ev.data));
      me.onerror = () => {
        onState(false, "Live updates reconnecting…");
        // The browser retries by itself unless the server answered with an error: then start over.
        if (me.readyState === EventSource.CLOSED && es === me && !closed) {
          setTimeout(() => { if (es === me && !closed) open(); }, 5000);
        }
      };
    }
    open();
    return {
      close() {
        closed = true;
        if (es) es.close();
        es = null;
      },
    };
  }

  return { exponent, big, group, formatMoney, formatCount, ApiError, records, quote, query, cell, parseBody, listAll, setMsg, showSignIn, busy, session, realtime };
})();
