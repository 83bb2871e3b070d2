// vipsgate behind Cloudflare: a Worker (module syntax) on the image hostname, in front
// of the vipsgate origin. Cloudflare's cache does not key on Accept, so the Worker puts
// the normalised Accept class into the cache key as a query parameter (vipsgate ignores
// query strings; the signature covers the path only) and forwards the normalised header.
// q=0 means "refused". Tested under node against vipsgate's own negotiation
// (tests/test_cdn.py).

function vipsgateAccept(accept) {
  var q = { "image/avif": 0, "image/webp": 0 };
  var seen = {};
  var parts = (accept || "").split(",");
  for (var i = 0; i < parts.length; i++) {
    var fields = parts[i].split(";");
    var media = fields[0].trim().toLowerCase();
    if (!(media in q)) continue;
    var value = 1;
    for (var j = 1; j < fields.length; j++) {
      var eq = fields[j].indexOf("=");
      var name = (eq < 0 ? fields[j] : fields[j].slice(0, eq)).trim().toLowerCase();
      if (name !== "q") continue;
      var text = eq < 0 ? "" : fields[j].slice(eq + 1).trim();
      var valid = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(text);
      value = valid ? Math.max(0, Math.min(1, Number(text))) : 0;
    }
    q[media] = seen[media] ? Math.max(q[media], value) : value;
    seen[media] = true;
  }
  var avif = q["image/avif"];
  var webp = q["image/webp"];
  if (avif > 0 && webp > 0) return avif >= webp ? "image/avif,image/webp" : "image/webp";
  if (avif > 0) return "image/avif";
  if (webp > 0) return "image/webp";
  return "";
}

// The class in the cache key: "avif-webp", "avif", "webp" or "none".
function acceptClass(accept) {
  return accept ? accept.replace(/image\//g, "").replace(",", "-") : "none";
}

export default {
  async fetch(request) {
    const accept = vipsgateAccept(request.headers.get("Accept"));
    const url = new URL(request.url);
    url.search = ""; // any other query string would only split the cache
    url.searchParams.set("vipsgate-accept", acceptClass(accept));
    const headers = new Headers(request.headers);
    if (accept) {
      headers.set("Accept", accept);
    } else {
      headers.delete("Accept");
    }
    return fetch(new Request(url.toString(), { method: request.method, headers }), {
      cf: { cacheEverything: true },
    });
  },
};
