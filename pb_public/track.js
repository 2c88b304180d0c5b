/*! pbaffiliate track.js — records the click of a visitor who lands with ?via=CODE (or the other
 * platforms' parameters: ?ref=, ?fpr=, ?fp_ref=, ?tap_a=, ?aff=, so links made with Rewardful,
 * FirstPromoter or Tapfiliate keep crediting imported affiliates) and keeps its click id in a
 * first-party cookie for the checkout. A visitor the redirector (/r/CODE) sent here lands with
 * ?pba_click=ID, a click already recorded: that id is kept the same way and nothing is posted.
 * No dependencies.
 *
 *   <script src="https://partners.example.com/track.js" async></script>
 *   <script src="…/track.js" data-params="via, ref, deal" async></script>  (another list)
 *   // at checkout:  pbaffiliate.clickId()  → "k3j…" or "" (send it as Stripe client_reference_id)
 */
(function (w, d) {
  "use strict";
  var script = d.currentScript;
  var server = script ? new URL(script.src, w.location.href).origin : "";
  var CLICK = "pba_click", VISITOR = "pba_vid";
  // The parameters a code may arrive in, first match wins; hooks/tracking.go legacyParams is
  // the same list for /r/?via=CODE. data-params on the script tag replaces it.
  var PARAMS = ["via", "ref", "fpr", "fp_ref", "tap_a", "aff"];
  var listed = script && script.getAttribute("data-params");
  if (listed) PARAMS = listed.split(/[\s,]+/).filter(Boolean);
  // The program's default cookie_days, for a recorded click whose answer lacks it.
  var DEFAULT_DAYS = 60;
  // A ?pba_click= landing does not say its program's cookie_days, so its id is kept as long as
  // browsers keep cookies (400 days): attribution checks the program's own window on the
  // server, and a shorter guess would lose the sales of longer programs.
  var LANDED_DAYS = 400;

  function readCookie(name) {
    var parts = d.cookie ? d.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return "";
  }

  function writeCookie(name, value, days) {
    var secure = w.location.protocol === "https:" ? "; Secure" : "";
    d.cookie = name + "=" + encodeURIComponent(value) + "; Max-Age=" + days * 86400 + "; Path=/; SameSite=Lax" + secure;
  }

  var api = {
    /** The click id to attach to an order ("" when the visitor came from no affiliate). */
    clickId: function () { return readCookie(CLICK); },
    /** Resolves to the click id once a ?via= click has been recorded, or at once to the id of a
     *  ?pba_click= landing ("" when there is none). */
    ready: Promise.resolve("")
  };

  var params = new URLSearchParams(w.location.search);
  var landed = (params.get(CLICK) || "").trim();
  var code = "";
  for (var p = 0; p < PARAMS.length && !code; p++) code = (params.get(PARAMS[p]) || "").trim().toLowerCase();
  if (/^[a-z0-9]{15}$/.test(landed)) {
    // /r/CODE recorded this click and appended its id: keep it, do not count the click twice.
    writeCookie(CLICK, landed, LANDED_DAYS);
    api.ready = Promise.resolve(landed);
  } else if (code && /^[a-z0-9][a-z0-9_.~-]{0,63}$/.test(code) && server) {
    // Our codes, and the legacy codes an import brought (collections.AliasPattern).
    api.ready = fetch(server + "/api/pba/clicks", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        code: code,
        sub: params.get("sub") || "",
        referrer: d.referrer || "",
        visitor: readCookie(VISITOR)
      }),
      credentials: "omit",
      keepalive: true
    }).then(function (res) {
      return res.ok ? res.json() : null;
    }).then(function (data) {
      if (!data || !data.click_id) return "";
      writeCookie(CLICK, data.click_id, data.cookie_days || DEFAULT_DAYS);
      if (data.visitor) writeCookie(VISITOR, data.visitor, 365);
      return data.click_id;
    }).catch(function () { return ""; });
  }

  w.pbaffiliate = api;
})(window, document);
