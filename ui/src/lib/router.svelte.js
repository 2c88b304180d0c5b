// A hash router: #/affiliates/abc?status=pending is {parts: ["affiliates", "abc"], query}. Views
// keep their filters in the query, so the back button and a shared address restore them.
function parse() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(search) };
}

export const route = $state(parse());

window.addEventListener("hashchange", () => Object.assign(route, parse()));

/** href builds a hash address from path parts and query parameters (empty values left out). */
export function href(parts, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return "#/" + parts.map(encodeURIComponent).join("/") + (s ? "?" + s : "");
}

/** go navigates; replace keeps the history entry (filters typed letter by letter). */
export function go(parts, query = {}, replace = false) {
  const h = href(parts, query);
  if (replace) {
    history.replaceState(null, "", h);
    Object.assign(route, parse());
  } else {
    location.hash = h;
  }
}
