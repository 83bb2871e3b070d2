// vipsgate behind Amazon CloudFront: a CloudFront Function on "viewer request"
// (runtime cloudfront-js-1.0 or 2.0). It replaces the browser's Accept header with
// one of four values vipsgate answers the same way (see cdn/README.md), so the cache
// policy can include Accept without one copy per browser. q=0 means "refused".
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

function handler(event) {
  var request = event.request;
  var accept = vipsgateAccept(request.headers.accept ? request.headers.accept.value : "");
  if (accept) {
    request.headers.accept = { value: accept };
  } else {
    delete request.headers.accept;
  }
  return request;
}
