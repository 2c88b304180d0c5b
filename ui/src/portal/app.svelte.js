// The portal's shared state: the SDK client signed in as an affiliate, its record and terms,
// the pba/live feed (its own deltas only: hooks/live.go) and the status line.
import { client, keepFresh, message } from "../lib/pb.js";

export const pb = client("pba_portal_auth");

const own = () => (pb.authStore.record?.collectionName === "affiliates" ? pb.authStore.record : null);

export const session = $state({ user: own(), note: "" });
/** terms is GET /api/pba/terms of the signed-in affiliate (null until read). */
export const terms = $state({ value: null });
export const live = $state({ on: false, text: "connecting…" });
export const toast = $state({ text: "", kind: "info", n: 0 });

/** say shows text in the status line (kind: info, ok, error). */
export function say(text, kind = "info") {
  toast.text = text;
  toast.kind = kind;
  toast.n++;
}
/** fail shows the error's message, its field named. */
export const fail = (err) => say(message(err), "error");

/** currency is the affiliate's program currency (usd until the terms are read). */
export const currency = () => terms.value?.program?.currency || "usd";

const listeners = { live: new Set(), records: new Set() };
/** onLive registers fn for this affiliate's pba/live deltas; returns the unregister function. */
export function onLive(fn) {
  listeners.live.add(fn);
  return () => listeners.live.delete(fn);
}
/** onRecords registers fn(collection) for a change of the affiliate's own rows. */
export function onRecords(fn) {
  listeners.records.add(fn);
  return () => listeners.records.delete(fn);
}

export async function loadTerms() {
  terms.value = await pb.send("/api/pba/terms", {});
}

let stopFresh = null;
let subs = [];

// The redirector flags clicks carrying this cookie as the affiliate's own (README: click
// tracking), so testing one's own link does not count.
function markSelf(id) {
  document.cookie = "pba_self=" + encodeURIComponent(id) + "; path=/; max-age=31536000; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");
}

/** start runs once signed in: token refresh, terms, live figures and record events. */
export async function start() {
  stopFresh?.();
  stopFresh = keepFresh(pb, "affiliates", signOut);
  markSelf(session.user.id);
  pb.realtime.onDisconnect = () => { live.on = false; live.text = "reconnecting…"; };
  const topics = [
    ["pba/live", (msg) => { const d = msg?.affiliates?.[session.user?.id]; if (d) for (const fn of listeners.live) fn(d); }],
    ["affiliates/" + session.user.id, (ev) => {
      if (ev?.action !== "update" || !ev.record) return;
      const before = session.user?.status;
      session.user = ev.record;
      if (before !== ev.record.status) loadTerms().catch(fail);
    }],
    ...["commissions", "payouts", "links", "conversions"].map((c) => [c + "/*", () => { for (const fn of listeners.records) fn(c); }]),
  ];
  try {
    subs = await Promise.all(topics.map(([topic, fn]) => pb.realtime.subscribe(topic, fn)));
    live.on = true;
    live.text = "";
  } catch (e) {
    live.text = "live updates are off: " + message(e);
  }
  await loadTerms().catch(fail);
}

export async function signIn(email, password) {
  const res = await pb.collection("affiliates").authWithPassword(email, password);
  session.user = res.record;
  session.note = "";
  await start();
}

export function signOut(note = "") {
  stopFresh?.();
  stopFresh = null;
  for (const u of subs) u?.();
  subs = [];
  pb.realtime.unsubscribe();
  pb.authStore.clear();
  session.user = null;
  session.note = note;
  terms.value = null;
  live.on = false;
}
