// The PocketBase client of the app: the official JS SDK on this server's origin, with its auth
// kept in localStorage under the page's own key and refreshed before it expires, so a board left
// open all day stays signed in.
import PocketBase, { LocalAuthStore, getTokenPayload } from "pocketbase";

/** client makes the SDK client of a page; storageKey keeps its session apart from other pages'. */
export function client(storageKey) {
  const pb = new PocketBase("/", new LocalAuthStore(storageKey));
  pb.autoCancellation(false); // views load in parallel; a newer request never cancels another
  return pb;
}

/**
 * keepFresh refreshes pb's auth (collection: "_superusers" or "affiliates") when half its
 * lifetime has passed, and when the tab comes back to the front after a sleep. onExpired hears
 * of a session the server no longer accepts. It returns a function that stops it.
 */
export function keepFresh(pb, collection, onExpired) {
  let timer = 0;
  let stopped = false;
  // PocketBase's tokens carry exp but no iat: a token's life counts from when this page first
  // saw it (never later than it was issued, so half of it always ends before exp).
  let seen = { token: "", at: 0 };
  const claims = () => {
    const token = pb.authStore.token;
    if (seen.token !== token) seen = { token, at: Date.now() / 1000 };
    const c = getTokenPayload(token);
    return { iat: c.iat || seen.at, exp: c.exp };
  };
  const schedule = () => {
    clearTimeout(timer);
    if (stopped || !pb.authStore.token) return;
    timer = setTimeout(refresh, refreshDelay(claims(), Date.now() / 1000) * 1000);
  };
  const refresh = async () => {
    if (stopped || !pb.authStore.token) return;
    try {
      await pb.collection(collection).authRefresh();
    } catch (e) {
      if (e.status === 401 || e.status === 403 || e.status === 404) {
        pb.authStore.clear();
        onExpired("Your session ended; please sign in again.");
        return;
      }
      // offline or the server restarting: try again in a minute
      clearTimeout(timer);
      timer = setTimeout(refresh, 60_000);
      return;
    }
    schedule();
  };
  const wake = () => {
    if (document.visibilityState !== "visible" || !pb.authStore.token) return;
    const { exp = 0 } = getTokenPayload(pb.authStore.token);
    if (exp - Date.now() / 1000 < 15 * 60) refresh();
    else schedule();
  };
  document.addEventListener("visibilitychange", wake);
  window.addEventListener("online", wake);
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", wake);
    window.removeEventListener("online", wake);
  };
}

/**
 * refreshDelay is how many seconds from now (unix seconds) a token with claims {iat, exp} is
 * refreshed: when half its lifetime has passed, at least 5 s and at most an hour from now
 * (without claims: in 10 min).
 */
export function refreshDelay({ iat = 0, exp = 0 } = {}, now) {
  const due = iat && exp > iat ? iat + (exp - iat) / 2 : now + 600;
  return Math.max(5, Math.min(due - now, 3600));
}

/** fieldErrors maps an SDK error's field errors to their messages: {field: message}. */
export function fieldErrors(err) {
  const data = err?.response?.data || {};
  const out = {};
  for (const [k, v] of Object.entries(data)) if (v && typeof v === "object" && v.message) out[k] = v.message;
  return out;
}

/** message is what to tell a person about err, with the first field named when there is one. */
export function message(err) {
  if (!err) return "";
  if (err.status === 0) return "The server cannot be reached.";
  const fields = fieldErrors(err);
  const first = Object.entries(fields)[0];
  const base = err.response?.message || err.message || "Something went wrong.";
  return first ? `${base} ${first[0]}: ${first[1]}` : base;
}

