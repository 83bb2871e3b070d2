// vipsgate behind Fastly: a Compute (JavaScript) service with the vipsgate origin as the
// backend named "vipsgate". Fastly's cache honours Vary, and vipsgate sends
// "Vary: Accept" when the format was negotiated, so normalising Accept before the
// request reaches the cache leaves at most four copies per URL. q=0 means "refused".
// Tested under node against vipsgate's own negotiation (tests/test_cdn.py).

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

async function handleRequest(request) {
  const accept = vipsgateAccept(request.headers.get("Accept"));
  const headers = new Headers(request.headers);
  if (accept) {
    headers.set("Accept", accept);
  } else {
    headers.delete("Accept");
  }
  return fetch(new Request(request.url, { method: request.method, headers }), {
    backend: "vipsgate",
  });
}

addEventListener("fetch", (event) => event.respondWith(handleRequest(event.request)));
