// pbaffiliate affiliate portal: plain JavaScript against PocketBase's REST and realtime APIs
// (no SDK, no build step). Every value from the server reaches the page through textContent
// or a form field's value, never as HTML.
"use strict";
(() => {
  const AUTH_KEY = "pba_portal_auth"; // localStorage: {"token": …}
  const $ = (id) => document.getElementById(id);
  const state = { record: null, program: null, live: null, stats: null };

  const { big, formatMoney, formatCount, ApiError, records, query, cell, setMsg, showSignIn, busy, session, realtime } = window.pba;
  const sess = session({ collection: "affiliates", storageKey: AUTH_KEY, onExpired: (message) => signOut(message) });
  const { api, listAll } = sess;

  // ---- small DOM helpers
  function fillRows(tbody, rows, columns, emptyText) {
    tbody.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(emptyText, "empty");
      td.colSpan = columns;
      tr.append(td);
      tbody.append(tr);
      return;
    }
    for (const cells of rows) {
      const tr = document.createElement("tr");
      tr.append(...cells);
      tbody.append(tr);
    }
  }
  function setFigure(id, text, raw) {
    const el = $(id);
    if (el.textContent !== text && el.textContent !== "–") {
      el.classList.remove("flash");
      void el.offsetWidth; // restart the animation
      el.classList.add("flash");
    }
    el.textContent = text;
    el.dataset.value = raw;
  }
  const day = (iso) => String(iso || "").slice(0, 10);
  const show = (id, on) => { $(id).hidden = !on; };

  // Field errors sit next to their field: <p class="field-error" data-for="name">, linked to the
  // input through aria-describedby; data-for="*" takes the form's general error.
  function wireErrors(form) {
    for (const p of form.querySelectorAll(".field-error[data-for]")) {
      const field = p.dataset.for;
      p.id = form.id + "-" + (field === "*" ? "general" : field) + "-err";
      const input = form.elements[field];
      if (input && input.setAttribute) {
        const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
        ids.push(p.id);
        input.setAttribute("aria-describedby", ids.join(" "));
      }
    }
  }
  function clearErrors(form) {
    for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
    for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
  }
  function showErrors(form, err) {
    clearErrors(form);
    let first = null;
    const rest = [];
    for (const [field, v] of Object.entries(err.data || {})) {
      const text = (v && v.message) || String(v);
      const p = form.querySelector('.field-error[data-for="' + CSS.escape(field) + '"]');
      if (p) {
        p.textContent = text;
        const input = form.elements[field];
        if (input && input.setAttribute) {
          input.setAttribute("aria-invalid", "true");
          first = first || input;
        }
      } else {
        rest.push(field + ": " + text);
      }
    }
    const general = form.querySelector('.field-error[data-for="*"]');
    const text = rest.length ? err.message + " " + rest.join("; ") : first ? "" : err.message;
    if (general) general.textContent = text;
    else if (text) setMsg(text, "error");
    if (first) first.focus();
  }

  // ---- session
  function signOut(message) {
    stopRealtime();
    sess.forget();
    state.record = null;
    showSignIn(["dash", "status"], message);
  }

  async function enter(record) {
    state.record = record;
    // The redirector flags clicks carrying this cookie as the affiliate's own (README: click tracking).
    document.cookie = "pba_self=" + encodeURIComponent(record.id) + "; path=/; max-age=31536000; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    $("who-email").textContent = record.email || "";
    show("who", true);
    show("auth", false);
    if (record.status !== "approved") {
      showStatus(record);
      startRealtime(["affiliates/" + record.id]);
      return;
    }
    show("status", false);
    show("dash", true);
    $("dash-h").textContent = "Welcome, " + (record.name || record.email);
    await loadDashboard();
  }

  const STATUS_TEXT = {
    pending: ["Your application is pending review", "The program team reviews every application. You will get an email once it is approved; this page updates by itself."],
    rejected: ["Your application was not accepted", "The program did not approve this account. Reply to the email you received if you think this is a mistake."],
    suspended: ["Your account is suspended", "Your links do not track while the account is suspended. Contact the program team."],
  };
  function showStatus(record) {
    const [title, text] = STATUS_TEXT[record.status] || ["Your account is not active", ""];
    show("dash", false);
    show("status", true);
    $("status-h").textContent = title;
    $("status-text").textContent = text;
    $("status-value").textContent = record.status || "unknown";
    $("status-value").className = "badge " + (record.status === "pending" ? "warn" : "bad");
    $("status-h").focus();
  }

  // ---- dashboard
  async function loadDashboard() {
    const r = state.record;
    try {
      state.program = await api(records("programs") + "/" + encodeURIComponent(r.program) + query({ fields: "id,name,currency,allowed_domains,destination" }));
    } catch (e) {
      state.program = { currency: "usd", allowed_domains: [] };
      setMsg("Could not load your program: " + e.message, "error");
    }
    $("ref-code").textContent = r.code;
    $("ref-link").value = location.origin + "/r/" + encodeURIComponent(r.code);
    const domains = Array.isArray(state.program.allowed_domains) ? state.program.allowed_domains : [];
    $("ln-destination-hint").textContent = domains.length ? "Allowed sites: " + domains.join(", ") + " (and their subdomains)." : "";
    if (state.program.destination && !$("ln-destination").value) $("ln-destination").placeholder = state.program.destination;
    fillProfile(r);
    $("dash-h").focus();
    startRealtime(["pba/live", "commissions/*", "payouts/*", "links/*", "affiliates/" + r.id]);
    await Promise.all([loadStats(), loadMoney(), loadLinks()].map((p) => p.catch((e) => setMsg(e.message, "error"))));
  }

  // The last 30 days: the totals of GET /api/pba/stats (per currency; one program has one), with
  // the live deltas added on top until the next read. Money stays integer minor units.
  const COUNTS = ["clicks", "unique_clicks", "conversions"];
  const MONEY = ["revenue", "commission"];
  const currency = () => (state.program && state.program.currency) || "usd";
  function addMoney(m, cur, v) { m.set(cur, (m.get(cur) || 0n) + v); }
  async function loadStats() {
    const d = new Date();
    const to = d.toISOString().slice(0, 10);
    d.setUTCDate(d.getUTCDate() - 29); // today and the 29 days before it (UTC days, as stats_daily)
    const res = await api("/api/pba/stats" + query({ affiliate: state.record.id, from: d.toISOString().slice(0, 10), to }));
    const s = { clicks: 0n, unique_clicks: 0n, conversions: 0n, revenue: new Map(), commission: new Map() };
    for (const t of res.totals || []) {
      for (const k of COUNTS) s[k] += big(t[k]);
      for (const k of MONEY) addMoney(s[k], t.currency, big(t[k]));
    }
    state.stats = s;
    renderStats();
  }
  function renderStats() {
    const s = state.stats;
    if (!s) return;
    setFigure("stat-clicks", formatCount(s.clicks), s.clicks.toString());
    setFigure("stat-unique", formatCount(s.unique_clicks), s.unique_clicks.toString());
    setFigure("stat-conversions", formatCount(s.conversions), s.conversions.toString());
    for (const k of MONEY) {
      const sums = s[k].size ? [...s[k]] : [[currency(), 0n]];
      setFigure("stat-" + k, sums.map(([c, v]) => formatMoney(v, c)).join(" · "),
        sums.length === 1 ? sums[0][1].toString() : sums.map(([c, v]) => v + " " + c).join(","));
    }
  }

  // Balances (GET /api/pba/balance: sums per status and currency), recent rows, payout state.
  async function loadMoney() {
    const [balance, recent, payouts] = await Promise.all([
      api("/api/pba/balance"),
      api(records("commissions") + query({ sort: "-created", perPage: 10, skipTotal: 1, fields: "id,created,kind,status,amount,currency" })),
      api(records("payouts") + query({ sort: "-created", perPage: 10, skipTotal: 1, fields: "id,created,paid_at,method,status,amount,currency,error" })),
    ]);
    const sums = { pending: new Map(), payable: new Map(), paid: new Map() };
    for (const b of balance.balances) {
      for (const status of Object.keys(sums)) sums[status].set(b.currency, big(b[status]));
    }
    for (const status of Object.keys(sums)) {
      const m = sums[status];
      if (!m.size) m.set(currency(), 0n);
      const parts = [...m].map(([c, v]) => formatMoney(v, c));
      setFigure("bal-" + status, parts.join(" · "), [...m].map(([c, v]) => v + " " + c).join(","));
    }
    fillRows($("commissions-body"), recent.items.map((c) => [
      cell(day(c.created)), cell(c.kind), cell(c.status), cell(formatMoney(c.amount, c.currency), "num"),
    ]), 4, "No commissions yet.");
    fillRows($("payouts-body"), payouts.items.map((p) => [
      cell(day(p.paid_at || p.created)), cell(p.method), cell(p.status + (p.error ? " (" + p.error + ")" : "")), cell(formatMoney(p.amount, p.currency), "num"),
    ]), 4, "No payouts yet.");
    renderPayoutMethod();
  }
  function renderPayoutMethod() {
    const r = state.record;
    let text = "Payout method: " + (r.payout_method === "stripe" ? "Stripe" : "manual (PayPal, Wise or bank transfer to " + (r.payout_email || r.email) + ")") + ".";
    if (r.payout_method === "stripe") text += r.payouts_enabled ? " Stripe payouts are enabled." : " Stripe onboarding is not complete yet.";
    $("payout-method").textContent = text;
  }

  async function loadLinks() {
    const links = await listAll("links", { sort: "created", fields: "id,code,destination,label" });
    fillRows($("links-body"), links.map((l) => {
      const url = location.origin + "/r/" + encodeURIComponent(l.code);
      const linkCell = document.createElement("td");
      const code = document.createElement("code");
      code.textContent = url;
      code.className = "link-url";
      linkCell.append(code);
      const copyCell = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "secondary";
      b.textContent = "Copy";
      b.setAttribute("aria-label", "Copy the link " + (l.label || l.code));
      b.addEventListener("click", () => copy(url, b));
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "secondary";
      edit.textContent = "Edit";
      edit.setAttribute("aria-label", "Edit the link " + (l.label || l.code));
      edit.addEventListener("click", () => editLink(l));
      copyCell.append(b, " ", edit);
      return [cell(l.label || l.code), linkCell, cell(l.destination), copyCell];
    }), 4, "No links yet: create one below.");
  }

  // The link form edits an existing link while data-editing holds its id (its code and owner
  // never change; the redirector picks up the new destination at once).
  function editLink(l) {
    const f = $("link-form");
    clearErrors(f);
    f.dataset.editing = l.id;
    f.elements.destination.value = l.destination || "";
    f.elements.label.value = l.label || "";
    $("link-form-h").textContent = "Edit link " + (l.label || l.code);
    f.querySelector("button[type=submit]").textContent = "Save link";
    $("link-cancel").hidden = false;
    f.elements.destination.focus();
  }
  function endEditLink() {
    const f = $("link-form");
    delete f.dataset.editing;
    f.reset();
    clearErrors(f);
    $("link-form-h").textContent = "New link";
    f.querySelector("button[type=submit]").textContent = "Create link";
    $("link-cancel").hidden = true;
  }

  async function copy(text, button) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_) {
      const input = $("ref-link");
      const before = input.value;
      input.value = text;
      input.select();
      try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
      input.value = before;
    }
    const label = button.textContent;
    button.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  function fillProfile(r) {
    const f = $("profile-form");
    for (const name of ["name", "payout_email", "payout_method", "preferred_channel", "timezone", "webhook_url"]) {
      f.elements[name].value = r[name] || (name === "payout_method" ? "manual" : name === "preferred_channel" ? "email" : "");
    }
    clearErrors(f);
  }

  // ---- realtime (pba.realtime): the figures' deltas, reloads of the money and links tables, and
  // the affiliate's own record (an approval shows the dashboard at once).
  function startRealtime(subscriptions) {
    stopRealtime();
    const handlers = {
      "pba/live": onLive,
      "commissions/*": () => scheduleReload(loadMoney),
      "payouts/*": () => scheduleReload(loadMoney),
      "links/*": () => scheduleReload(loadLinks),
    };
    if (state.record) handlers["affiliates/" + state.record.id] = onSelf;
    state.live = realtime(api, subscriptions, handlers, liveState);
  }
  function stopRealtime() {
    if (state.live) state.live.close();
    state.live = null;
    liveState(false, "");
  }
  function liveState(on, text) {
    $("live-dot").classList.toggle("on", on);
    $("live-state").textContent = on ? "Live: new clicks and sales appear here as they happen." : text || "";
  }
  function onLive(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    const d = msg && msg.affiliates && state.record && msg.affiliates[state.record.id];
    if (!d || !state.stats) return;
    const s = state.stats;
    for (const k of COUNTS) s[k] += big(d[k]);
    for (const k of MONEY) if (big(d[k])) addMoney(s[k], currency(), big(d[k]));
    renderStats();
    if (d.conversions || d.commission) scheduleReload(loadMoney);
    // The deltas show at once; a quiet second later the totals are read again from the server,
    // so a delta that raced the first load can neither be lost nor counted twice for long.
    scheduleReload(loadStats, 1000);
  }
  function onSelf(data) {
    let ev;
    try { ev = JSON.parse(data); } catch (_) { return; }
    if (!ev || ev.action !== "update" || !ev.record) return;
    const before = state.record;
    state.record = ev.record;
    if (!before || before.status !== ev.record.status) {
      enter(ev.record).catch((e) => setMsg(e.message, "error"));
    } else {
      renderPayoutMethod();
    }
  }
  // scheduleReload runs fn once after delay, however many events ask for it meanwhile.
  const timers = new Map();
  function scheduleReload(fn, delay = 300) {
    clearTimeout(timers.get(fn));
    timers.set(fn, setTimeout(() => {
      timers.delete(fn);
      if (state.record) fn().catch((e) => setMsg(e.message, "error"));
    }, delay));
  }

  // ---- forms
  function wire() {
    for (const f of document.forms) wireErrors(f);

    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = ev.currentTarget;
      clearErrors(f);
      setMsg("");
      busy(f.querySelector("button"), async () => {
        try {
          const record = await sess.signIn(f.elements.identity.value.trim(), f.elements.password.value);
          f.reset();
          await enter(record);
        } catch (e) {
          showErrors(f, e.status === 400 && !Object.keys(e.data).length ? new ApiError(400, { message: "Wrong email or password." }) : e);
        }
      });
    });

    $("signup-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = ev.currentTarget;
      clearErrors(f);
      setMsg("");
      const body = {
        name: f.elements.name.value.trim(), email: f.elements.email.value.trim(),
        password: f.elements.password.value, passwordConfirm: f.elements.passwordConfirm.value,
      };
      busy(f.querySelector("button"), async () => {
        try {
          await api(records("affiliates"), { method: "POST", body, auth: false });
          const record = await sess.signIn(body.email, body.password);
          f.reset();
          await enter(record);
          setMsg("Thank you for applying. We sent you a link to confirm your email address.", "ok");
        } catch (e) {
          showErrors(f, e);
        }
      });
    });

    $("sign-out").addEventListener("click", () => signOut("You are signed out."));
    $("ref-copy").addEventListener("click", (ev) => copy($("ref-link").value, ev.currentTarget));

    $("link-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = ev.currentTarget;
      clearErrors(f);
      const body = { label: f.elements.label.value.trim() };
      const dest = f.elements.destination.value.trim();
      const editing = f.dataset.editing;
      if (dest) body.destination = dest; // empty: the program's destination (a new link only)
      else if (editing) body.destination = ""; // the API names the required field
      busy(f.querySelector("button[type=submit]"), async () => {
        try {
          if (editing) {
            const link = await api(records("links") + "/" + encodeURIComponent(editing), { method: "PATCH", body });
            endEditLink();
            setMsg("Link saved: " + location.origin + "/r/" + link.code + " now leads to " + link.destination, "ok");
          } else {
            const link = await api(records("links"), { method: "POST", body });
            f.reset();
            setMsg("Link created: " + location.origin + "/r/" + link.code, "ok");
          }
          await loadLinks();
        } catch (e) {
          showErrors(f, e);
        }
      });
    });
    $("link-cancel").addEventListener("click", endEditLink);

    $("profile-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = ev.currentTarget;
      clearErrors(f);
      $("profile-msg").textContent = "";
      const body = {};
      for (const name of ["name", "payout_email", "payout_method", "preferred_channel", "timezone", "webhook_url"]) {
        body[name] = f.elements[name].value.trim();
      }
      busy(f.querySelector("button"), async () => {
        try {
          state.record = await api(records("affiliates") + "/" + encodeURIComponent(state.record.id), { method: "PATCH", body });
          fillProfile(state.record);
          renderPayoutMethod();
          $("dash-h").textContent = "Welcome, " + (state.record.name || state.record.email);
          $("profile-msg").textContent = "Saved.";
        } catch (e) {
          showErrors(f, e);
        }
      });
    });

    $("connect").addEventListener("click", (ev) => {
      const msg = $("connect-msg");
      msg.textContent = "";
      busy(ev.currentTarget, async () => {
        try {
          const res = await api("/api/pba/connect/onboard", { method: "POST", body: {} });
          if (res && typeof res.url === "string" && /^https?:\/\//.test(res.url)) {
            msg.textContent = "Opening Stripe…";
            location.assign(res.url);
          } else {
            msg.textContent = "Stripe did not return an onboarding link.";
          }
        } catch (e) {
          msg.textContent = e.message;
        }
      });
    });

    if (window.Intl && Intl.supportedValuesOf) {
      const list = $("tz-list");
      for (const tz of Intl.supportedValuesOf("timeZone")) {
        const o = document.createElement("option");
        o.value = tz;
        list.append(o);
      }
    }
  }

  async function start() {
    wire();
    const back = new URLSearchParams(location.search).get("stripe");
    try {
      // A fresh token and record: the status may have changed since the last visit.
      const record = await sess.resume();
      if (!record) {
        signOut("");
        return;
      }
      await enter(record);
      if (back === "return") setMsg("Back from Stripe. Payouts are enabled as soon as Stripe confirms your details.", "ok");
      if (back === "refresh") setMsg("The Stripe link expired; press “Set up payouts with Stripe” again.", "info");
    } catch (e) {
      if (e.status === 401 || e.status === 403 || e.status === 404) signOut("Your session ended; please sign in again.");
      else setMsg(e.message, "error");
    }
  }

  start();
})();
