// Runs the CDN recipes in cdn/ under node with their platform's request API stubbed,
// for tests/test_cdn.py. Reads {"cdn": dir, "accepts": [...]} as JSON on stdin; writes
// {recipe: [forwarded Accept ("" = none) per input], "cloudflare_key": [...]} on stdout.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import vm from "node:vm";

const input = JSON.parse(readFileSync(0, "utf8"));
const source = (name) => readFileSync(join(input.cdn, name), "utf8");

// CloudFront Functions: a global handler(event) over CloudFront's event object.
function cloudfront(accepts) {
  const context = vm.createContext({});
  vm.runInContext(source("cloudfront-function.js"), context);
  return accepts.map((accept) => {
    const headers = accept === null ? {} : { accept: { value: accept } };
    const request = context.handler({ request: { uri: "/sig/w:10/plain/x", headers } });
    return request.headers.accept ? request.headers.accept.value : "";
  });
}

// Cloudflare Workers: an ES module whose default export's fetch() calls the global fetch.
async function cloudflare(accepts) {
  const code = Buffer.from(source("cloudflare-worker.js")).toString("base64");
  const worker = (await import(`data:text/javascript;base64,${code}`)).default;
  const forwarded = [];
  const keys = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (request, init) => {
    forwarded.push(request.headers.get("Accept") || "");
    keys.push(new URL(request.url).search);
    if (!init || !init.cf) throw new Error("no cf options");
    return new Response("");
  };
  try {
    for (const accept of accepts) {
      const headers = accept === null ? {} : { Accept: accept };
      await worker.fetch(new Request("https://img.example.com/sig/w:10/plain/x?v=1", { headers }));
    }
  } finally {
    globalThis.fetch = realFetch;
  }
  return [forwarded, keys];
}

// Fastly Compute: addEventListener("fetch") and fetch(request, {backend}).
async function fastly(accepts) {
  const forwarded = [];
  let listener = null;
  const context = vm.createContext({
    Headers, Request, Response, URL,
    addEventListener: (type, fn) => { if (type === "fetch") listener = fn; },
    fetch: async (request, init) => {
      if (!init || init.backend !== "vipsgate") throw new Error("no backend");
      forwarded.push(request.headers.get("Accept") || "");
      return new Response("");
    },
  });
  vm.runInContext(source("fastly-compute.js"), context);
  for (const accept of accepts) {
    const headers = accept === null ? {} : { Accept: accept };
    let answered = null;
    listener({ request: new Request("https://img.example.com/sig/x", { headers }),
               respondWith: (promise) => { answered = promise; } });
    await answered;
  }
  return forwarded;
}

const [cloudflareForwarded, cloudflareKeys] = await cloudflare(input.accepts);
process.stdout.write(JSON.stringify({
  cloudfront: cloudfront(input.accepts),
  cloudflare: cloudflareForwarded,
  cloudflare_key: cloudflareKeys,
  fastly: await fastly(input.accepts),
}));
