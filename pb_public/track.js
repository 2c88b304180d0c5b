/*! pbaffiliate track.js — records the click of a visitor who lands with ?via=CODE (or ?ref=CODE)
 * and keeps its click id in a first-party cookie for the checkout. No dependencies.
 *
 *   <script src="https://partners.example.com/track.js" async></script>
 *   // at checkout:  pbaffiliate.clickId()  → "k3j…" or "" (send it as Stripe client_reference_id)
 */
(function (w, d) {
  "use strict";
  var script = d.currentScript;
  var server = script ? new URL(script.src, w.location.href).origin : "";
  var CLICK = "pba_click", VISITOR = "pba_vid";

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
    /** Resolves once a ?via= click has been recorded (immediately when there is none). */
    ready: Promise.resolve("")
  };

  var params = new URLSearchParams(w.location.search);
  var code = (params.get("via") || params.get("ref") || "").trim().toLowerCase();
  if (code && /^[a-z0-9][a-z0-9-]{2,31}$/.test(code) && server) {
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
      writeCookie(CLICK, data.click_id, data.cookie_days || 60);
      if (data.visitor) writeCookie(VISITOR, data.visitor, 365);
      return data.click_id;
    }).catch(function () { return ""; });
  }

  w.pbaffiliate = api;
})(window, document);
