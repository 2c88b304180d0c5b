// pbaffiliate live board for superusers: plain JavaScript against PocketBase's REST and realtime
// APIs (no SDK, no build step). Server values reach the page only through textContent.
"use strict";
(() => {
  const AUTH_KEY = "pba_admin_auth";
  const $ = (id) => document.getElementById(id);
  const state = {
    live: null, // the realtime connection while signed in
    programs: new Map(), // id -> {name, currency}
    affiliates: new Map(), // id -> {name, code, email, program}
    rows: new Map(), // affiliate id -> {since: counters, today: counters}
    today: "",
  };
  const KEYS = ["clicks", "unique_clicks", "conversions", "revenue", "commission"];

  const { big, formatMoney, formatCount, ApiError, records, quote, query, cell, parseBody, setMsg, showSignIn, busy, session, realtime } = window.pba;
  const sess = session({ collection: "_superusers", storageKey: AUTH_KEY, onExpired: (message) => signOut(message) });
  const { api, request, listAll } = sess;
  // Sums per currency (a board may span programs in several currencies).
  function formatSums(map) {
    if (!map.size) {
      const first = state.programs.values().next().value;
      return formatMoney(0n, first ? first.currency : "usd");
    }
    return [...map].map(([c, v]) => formatMoney(v, c)).join(" · ");
  }

  // ---- DOM helpers
  function emptyRow(tbody, columns, text) {
    const tr = document.createElement("tr");
    const td = cell(text, "empty");
    td.colSpan = columns;
    tr.append(td);
    tbody.replaceChildren(tr);
  }
  function setText(el, text, raw) {
    if (el.textContent !== text && el.dataset.value !== undefined) {
      el.classList.remove("flash");
      void el.offsetWidth;
      el.classList.add("flash");
    }
    el.textContent = text;
    if (raw !== undefined) el.dataset.value = raw;
  }
  const show = (id, on) => { $(id).hidden = !on; };

  // ---- session
  function signOut(message) {
    if (state.live) state.live.close();
    state.live = null;
    sess.forget();
    showSignIn(["board"], message);
  }
  async function enter(record) {
    $("who-email").textContent = record.email || "";
    show("who", true);
    show("auth", false);
    show("board", true);
    $("since").textContent = new Date().toLocaleTimeString();
    $("live-h").focus();
    startRealtime();
    try {
      await loadPrograms(); // names and currencies for the board and the preview
    } catch (e) {
      setMsg(e.message, "error");
    }
    await Promise.all([loadBoard(), loadPending(), loadSales(), loadLedger(), loadPreview()].map((p) => p.catch((e) => setMsg(e.message, "error"))));
  }

  // ---- the board
  const zero = () => ({ clicks: 0n, unique_clicks: 0n, conversions: 0n, revenue: 0n, commission: 0n });
  function utcToday() { return new Date().toISOString().slice(0, 10); }

  async function loadPrograms() {
    const programs = await listAll("programs", { fields: "id,name,currency" });
    for (const p of programs) state.programs.set(p.id, { name: p.name, currency: p.currency });
  }
  async function loadBoard() {
    state.today = utcToday();
    const rows = await listAll("stats_daily", { filter: "day = " + quote(state.today), fields: "affiliate," + KEYS.join(",") });
    const today = new Map();
    for (const r of rows) {
      const t = today.get(r.affiliate) || zero();
      for (const k of KEYS) t[k] += big(r[k]);
      today.set(r.affiliate, t);
    }
    await knowAffiliates([...today.keys()]);
    for (const [id, t] of today) {
      const row = rowOf(id);
      for (const k of KEYS) row.today[k] += t[k]; // live deltas that arrived meanwhile are kept
    }
    renderAll();
  }
  // knowAffiliates fetches names and programs of affiliates the board has not seen yet.
  async function knowAffiliates(ids) {
    const missing = ids.filter((id) => !state.affiliates.has(id));
    for (let i = 0; i < missing.length; i += 50) {
      const chunk = missing.slice(i, i + 50);
      const found = await listAll("affiliates", { filter: chunk.map((id) => "id = " + quote(id)).join(" || "), fields: "id,name,code,email,program" });
      for (const a of found) state.affiliates.set(a.id, a);
    }
  }
  function rowOf(id) {
    let row = state.rows.get(id);
    if (!row) {
      row = { since: zero(), today: zero() };
      state.rows.set(id, row);
    }
    return row;
  }
  const currencyOf = (id) => {
    const a = state.affiliates.get(id);
    const p = a && state.programs.get(a.program);
    return (p && p.currency) || "usd";
  };

  function renderAll() {
    const tbody = $("board-body");
    const ids = [...state.rows.keys()].sort((a, b) => {
      const ra = state.rows.get(a), rb = state.rows.get(b);
      const d = rb.today.clicks - ra.today.clicks;
      return d > 0n ? 1 : d < 0n ? -1 : a < b ? -1 : 1;
    });
    if (!ids.length) {
      emptyRow(tbody, 9, "No activity today yet. Clicks and sales appear here as they happen.");
    } else {
      const existing = new Map([...tbody.querySelectorAll("tr[data-affiliate]")].map((tr) => [tr.dataset.affiliate, tr]));
      const ordered = ids.map((id) => existing.get(id) || newBoardRow(id));
      tbody.replaceChildren(...ordered);
      ids.forEach((id, i) => renderRow(id, ordered[i]));
    }
    renderTotals();
  }
  function newBoardRow(id) {
    const tr = document.createElement("tr");
    tr.dataset.affiliate = id;
    tr.id = "row-" + id;
    const who = document.createElement("td");
    who.className = "who";
    tr.append(who);
    for (const cls of ["since-clicks", "since-conversions", "since-commission", "today-clicks", "today-unique", "today-conversions", "today-revenue", "today-commission"]) {
      const td = cell("0", "num " + cls);
      td.dataset.value = "0";
      tr.append(td);
    }
    return tr;
  }
  function renderRow(id, tr) {
    const a = state.affiliates.get(id);
    const row = state.rows.get(id);
    const cur = currencyOf(id);
    tr.querySelector(".who").textContent = a ? a.name + " (" + a.code + ")" : id;
    const set = (cls, text, raw) => setText(tr.querySelector("." + cls), text, raw);
    set("since-clicks", formatCount(row.since.clicks), row.since.clicks.toString());
    set("since-conversions", formatCount(row.since.conversions), row.since.conversions.toString());
    set("since-commission", formatMoney(row.since.commission, cur), row.since.commission.toString());
    set("today-clicks", formatCount(row.today.clicks), row.today.clicks.toString());
    set("today-unique", formatCount(row.today.unique_clicks), row.today.unique_clicks.toString());
    set("today-conversions", formatCount(row.today.conversions), row.today.conversions.toString());
    set("today-revenue", formatMoney(row.today.revenue, cur), row.today.revenue.toString());
    set("today-commission", formatMoney(row.today.commission, cur), row.today.commission.toString());
  }
  function renderTotals() {
    let sc = 0n, sv = 0n, tc = 0n, tv = 0n;
    const scm = new Map(), tcm = new Map();
    for (const [id, row] of state.rows) {
      const cur = currencyOf(id);
      sc += row.since.clicks;
      sv += row.since.conversions;
      tc += row.today.clicks;
      tv += row.today.conversions;
      if (row.since.commission) scm.set(cur, (scm.get(cur) || 0n) + row.since.commission);
      if (row.today.commission) tcm.set(cur, (tcm.get(cur) || 0n) + row.today.commission);
    }
    setText($("total-clicks"), formatCount(sc), sc.toString());
    setText($("total-conversions"), formatCount(sv), sv.toString());
    setText($("total-commission"), formatSums(scm));
    setText($("today-clicks"), formatCount(tc), tc.toString());
    setText($("today-conversions"), formatCount(tv), tv.toString());
    setText($("today-commission"), formatSums(tcm));
  }

  async function onLive(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    if (!msg || !msg.affiliates) return;
    if (state.today && utcToday() !== state.today) {
      // A new UTC day: today's totals start again from the database.
      for (const row of state.rows.values()) row.today = zero();
      state.today = utcToday();
    }
    const ids = Object.keys(msg.affiliates);
    for (const id of ids) {
      const d = msg.affiliates[id];
      const row = rowOf(id);
      for (const k of KEYS) {
        row.since[k] += big(d[k]);
        row.today[k] += big(d[k]);
      }
    }
    renderAll();
    try {
      await knowAffiliates(ids);
      renderAll();
    } catch (e) {
      setMsg(e.message, "error");
    }
  }

  // ---- realtime
  function startRealtime() {
    if (state.live) state.live.close();
    let timer = 0;
    let salesTimer = 0;
    state.live = realtime(api, ["pba/live", "affiliates/*", "conversions/*"], {
      "pba/live": onLive,
      "affiliates/*": () => {
        clearTimeout(timer);
        timer = setTimeout(() => loadPending().catch((e) => setMsg(e.message, "error")), 300);
      },
      "conversions/*": () => {
        clearTimeout(salesTimer);
        salesTimer = setTimeout(() => loadSales().catch((e) => setMsg(e.message, "error")), 300);
      },
    }, (on, text) => {
      $("live-dot").classList.toggle("on", on);
      $("live-state").textContent = on ? "Live: counters move as clicks and sales are recorded." : text;
    });
  }

  // decisionCell is a table cell of buttons, one per [label, status, class] choice, each named
  // for screen readers with what it decides on; a click calls onDecide(status, button).
  function decisionCell(choices, what, onDecide) {
    const td = document.createElement("td");
    const box = document.createElement("div");
    box.className = "row-actions";
    for (const [label, status, cls] of choices) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.className = cls;
      b.dataset.status = status;
      b.setAttribute("aria-label", label + " " + what);
      b.addEventListener("click", () => onDecide(status, b));
      box.append(b);
    }
    td.append(box);
    return td;
  }

  // ---- applications
  async function loadPending() {
    const res = await api(records("affiliates") + query({ filter: 'status = "pending"', sort: "created", perPage: 100, fields: "id,name,email,code,program,created" }));
    $("pending-more").textContent = res.totalItems > res.items.length
      ? "Showing the oldest " + res.items.length + " of " + res.totalItems + " applications; decide on these to see more, or use the dashboard."
      : "";
    const tbody = $("pending-body");
    if (!res.items.length) {
      emptyRow(tbody, 5, "No applications waiting.");
      return;
    }
    tbody.replaceChildren(...res.items.map((a) => {
      const tr = document.createElement("tr");
      tr.id = "pending-" + a.id;
      tr.dataset.affiliate = a.id;
      const actions = decisionCell([["Approve", "approved", ""], ["Reject", "rejected", "danger"]], a.name,
        (status, b) => decide(a, status, b));
      tr.append(cell(a.name), cell(a.email), cell(a.code), cell(String(a.created || "").slice(0, 10)), actions);
      return tr;
    }));
  }
  function decide(a, status, button) {
    busy(button, async () => {
      try {
        await api(records("affiliates") + "/" + encodeURIComponent(a.id), { method: "PATCH", body: { status } });
        setMsg((status === "approved" ? "Approved " : "Rejected ") + a.name + ".", "ok");
        const tr = $("pending-" + a.id);
        const next = tr && (tr.nextElementSibling || tr.previousElementSibling);
        await loadPending();
        const focusTarget = next && $(next.id) ? $(next.id).querySelector("button") : $("pending-h");
        if (focusTarget) {
          if (focusTarget === $("pending-h")) focusTarget.tabIndex = -1;
          focusTarget.focus();
        }
      } catch (e) {
        setMsg("Could not update " + a.name + ": " + e.message, "error");
      }
    });
  }

  // ---- sales: review pending ones, reject or approve again (the server moves the commissions)
  async function loadSales() {
    const status = $("sales-status").value;
    const filter = status ? "status = " + quote(status) : "";
    // In recording order (@rowid), which the status index already holds: no sort of every
    // approved sale on each refresh. Pending ones oldest first, the others newest first.
    const res = await api(records("conversions") + query({ filter, sort: status === "pending" ? "@rowid" : "-@rowid", perPage: 50,
      skipTotal: 1, expand: "affiliate", fields: "id,occurred_at,amount,currency,status,reason,source,external_id,expand.affiliate.name,expand.affiliate.code" }));
    const tbody = $("sales-body");
    if (!res.items.length) {
      emptyRow(tbody, 6, status ? "No " + status + " sales." : "No sales yet.");
      return;
    }
    tbody.replaceChildren(...res.items.map((v) => {
      const a = (v.expand && v.expand.affiliate) || {};
      const who = a.name ? a.name + " (" + a.code + ")" : "–";
      const tr = document.createElement("tr");
      tr.id = "sale-" + v.id;
      tr.dataset.status = v.status;
      const held = v.status === "pending" && v.reason === "dispute";
      const choices = held || v.status === "refunded" ? []
        : v.status === "approved" ? [["Reject", "rejected", "danger"]]
        : v.status === "rejected" ? [["Approve", "approved", ""]]
        : [["Approve", "approved", ""], ["Reject", "rejected", "danger"]];
      const actions = decisionCell(choices, "the sale " + v.external_id + " of " + (a.name || "unknown"),
        (status, b) => decideSale(v, status, b));
      if (!choices.length) actions.firstChild.textContent = held ? "held by a dispute" : "–";
      const statusText = v.status + (v.reason ? " (" + v.reason + ")" : "");
      tr.append(cell(String(v.occurred_at || "").slice(0, 10)), cell(who), cell(v.source + " " + v.external_id),
        cell(formatMoney(big(v.amount), v.currency), "num"), cell(statusText), actions);
      return tr;
    }));
  }
  function decideSale(v, status, button) {
    busy(button, async () => {
      try {
        await api(records("conversions") + "/" + encodeURIComponent(v.id), { method: "PATCH", body: { status } });
        setMsg((status === "approved" ? "Approved" : "Rejected") + " the sale " + v.external_id + ".", "ok");
        await loadSales();
        $("sales-h").focus();
      } catch (e) {
        setMsg("Could not update the sale " + v.external_id + ": " + e.message, "error");
      }
    });
  }

  // ---- ledger and payouts
  async function loadLedger() {
    const rep = await api("/api/pba/ledger/check");
    const out = $("ledger-result");
    const problems = rep.problems || [];
    const n = (rep.balances || []).length;
    out.textContent = rep.ok
      ? "OK: the commissions of " + n + " affiliate balance" + (n === 1 ? "" : "s") + " add up and every paid commission is in exactly one paid payout."
      : problems.length + " problem" + (problems.length === 1 ? "" : "s") + " found:";
    out.className = rep.ok ? "msg ok" : "msg error";
    const list = $("ledger-problems");
    list.replaceChildren(...problems.slice(0, 50).map((p) => {
      const li = document.createElement("li");
      li.textContent = p;
      return li;
    }));
    if (problems.length > 50) {
      const li = document.createElement("li");
      li.textContent = "… and " + (problems.length - 50) + " more.";
      list.append(li);
    }
  }
  async function loadPreview() {
    const rep = await api("/api/pba/payouts/preview");
    const lines = [];
    const parts = [];
    for (const p of rep.programs || []) {
      const prog = state.programs.get(p.program);
      const name = prog ? prog.name : p.program;
      const cur = prog ? prog.currency : (p.lines[0] && p.lines[0].currency) || "usd";
      parts.push(name + ": " + p.payouts + " payout" + (p.payouts === 1 ? "" : "s") + ", " + formatMoney(p.total, cur));
      for (const l of p.lines || []) {
        lines.push([cell(name), cell(l.name + " <" + l.email + ">"), cell(l.method), cell(l.action),
          cell(formatMoney(l.amount, l.currency), "num"), cell(l.reason || "")]);
      }
    }
    $("preview-summary").textContent = parts.length ? parts.join(" · ") : "No active program.";
    const tbody = $("preview-body");
    if (!lines.length) emptyRow(tbody, 6, "Nobody would be paid right now.");
    else tbody.replaceChildren(...lines.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells);
      return tr;
    }));
  }
  // The CSV export needs the superuser's token, which a plain link cannot carry: fetch it and
  // hand the browser the file.
  async function download(format, button) {
    await busy(button, async () => {
      try {
        const res = await request("/api/pba/export/payouts.csv" + query({ format }));
        if (!res.ok) throw new ApiError(res.status, await parseBody(res));
        const blob = await res.blob();
        const a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = "payouts-" + format + "-manual.csv";
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      } catch (e) {
        setMsg("Export failed: " + e.message, "error");
      }
    });
  }

  function wire() {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = ev.currentTarget;
      $("signin-err").textContent = "";
      busy(f.querySelector("button"), async () => {
        try {
          const record = await sess.signIn(f.elements.identity.value.trim(), f.elements.password.value);
          f.reset();
          setMsg("");
          await enter(record);
        } catch (e) {
          $("signin-err").textContent = e.status === 400 ? "Wrong email or password." : e.message;
          f.elements.identity.focus();
        }
      });
    });
    $("si-email").setAttribute("aria-describedby", "signin-err");
    $("sign-out").addEventListener("click", () => signOut("You are signed out."));
    $("sales-status").addEventListener("change", () => loadSales().catch((e) => setMsg(e.message, "error")));
    $("sales-filter").addEventListener("submit", (ev) => ev.preventDefault());
    $("ledger-run").addEventListener("click", (ev) => busy(ev.currentTarget, () => loadLedger().catch((e) => setMsg(e.message, "error"))));
    $("preview-run").addEventListener("click", (ev) => busy(ev.currentTarget, () => loadPreview().catch((e) => setMsg(e.message, "error"))));
    for (const b of document.querySelectorAll("[data-export]")) b.addEventListener("click", () => download(b.dataset.export, b));
  }

  async function start() {
    wire();
    try {
      const record = await sess.resume();
      if (record) await enter(record);
      else signOut("");
    } catch (e) {
      signOut(e.status === 401 ? "Your session ended; please sign in again." : e.status === 403 || e.status === 404 ? "Please sign in again." : e.message);
    }
  }

  start();
})();
