// URLs from the official Node.js client (npm @imgproxy/imgproxy-node), for
// tests/test_third_party_clients.py: reads [{url, options}] as JSON on stdin, prints the
// signed paths as JSON (endpoint "", key and salt from IMGPROXY_KEY/IMGPROXY_SALT).
const { generateImageUrl } = require("@imgproxy/imgproxy-node");

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const cases = JSON.parse(input);
  const paths = cases.map(({ url, options }) => generateImageUrl({
    endpoint: "", url, options,
    key: process.env.IMGPROXY_KEY, salt: process.env.IMGPROXY_SALT,
  }));
  process.stdout.write(JSON.stringify(paths));
});
