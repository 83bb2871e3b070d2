// ipx 3 (sharp, libvips) on 127.0.0.1 for loadtest/bench.py: node server.mjs DIR --port PORT
// Files from DIR, nothing cached: ipx keeps no results, and sharp's libvips operation
// cache is off, as vipsgate's cb: and thumbor's missing storages make every request a
// full render. Everything else is ipx's default (one process; sharp's thread pool).
import { createServer } from "node:http";
import { createIPX, createIPXNodeServer, ipxFSStorage } from "ipx";
import sharp from "sharp";

sharp.cache(false);
const args = process.argv.slice(2);
const dir = args[0];
const port = Number(args[args.indexOf("--port") + 1]);
const ipx = createIPX({ storage: ipxFSStorage({ dir }), maxAge: 0 });
const server = createServer(createIPXNodeServer(ipx));
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => {
  console.log(`ipx listening on ${port} (sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips})`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
