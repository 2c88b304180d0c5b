// The back office's shared state: the SDK client signed in as a superuser, the programs (names,
// currencies, units) every view needs, the pba/live feed and the status line.
import { client, keepFresh, message } from "../lib/pb.js";

export const pb = client("pba_admin_auth");

export const session = $state({ user: pb.authStore.isSuperuser ? pb.authStore.record : null, note: "" });
export const programs = $state({ list: [], byId: {} });
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

/** currencyOf is a program's currency (usd while programs load). */
export const currencyOf = (programId) => programs.byId[programId]?.currency || "usd";

export async function loadPrograms() {
  const list = await pb.collection("programs").getFullList({ sort: "name" });
  programs.list = list;
  programs.byId = Object.fromEntries(list.map((p) => [p.id, p]));
}

const liveListeners = new Set();
/** onLive registers fn for each pba/live message; it returns the unregister function. */
export function onLive(fn) {
  liveListeners.add(fn);
  return () => liveListeners.delete(fn);
}

let stopFresh = null;
let unsubscribe = null;

/** start runs once signed in: token refresh, programs, the live feed. */
export async function start() {
  stopFresh?.();
  stopFresh = keepFresh(pb, "_superusers", signOut);
  pb.realtime.onDisconnect = () => { live.on = false; live.text = "reconnecting…"; };
  try {
    unsubscribe = await pb.realtime.subscribe("pba/live", (msg) => {
      live.on = true;
      live.text = "";
      for (const fn of liveListeners) fn(msg);
    });
    live.on = true;
    live.text = "";
  } catch (e) {
    live.text = "live updates are off: " + message(e);
  }
  await loadPrograms().catch(fail);
}

export async function signIn(email, password) {
  const res = await pb.collection("_superusers").authWithPassword(email, password);
  session.user = res.record;
  session.note = "";
  await start();
}

export function signOut(note = "") {
  stopFresh?.();
  stopFresh = null;
  unsubscribe?.();
  unsubscribe = null;
  pb.realtime.unsubscribe();
  pb.authStore.clear();
  session.user = null;
  session.note = note;
}
