"""ipx 3 (sharp on libvips, Node.js) as a peer for ``bench.py --peers ipx``.

``make bench`` installs it with npm into ``loadtest/ipx/node_modules`` (pinned by
``loadtest/ipx/package-lock.json``); without node or that install the bench skips ipx
and says why. ``loadtest/ipx/server.mjs`` serves the generated sources from a directory
on 127.0.0.1 in one Node process with ipx's defaults, except that sharp's libvips
operation cache is off. ipx keeps no results and reads the file for every request, so
every request is a full render; ``cb_<n>`` names no ipx modifier and only makes each
URL distinct.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from loadtest.common import Server
from loadtest.mix import MIXES, ipx_path
from loadtest.peers import PeerUnavailable

IPX_DIR = Path(__file__).resolve().parent / "ipx"

# W1-W4 in ipx's grammar. s_WxH is one resize to the box (w_ and h_ are two resizes of
# which only the last counts); fit_inside keeps the aspect ratio, fit_cover (sharp's
# default) crops from the centre.
IPX_URLS = {
    "W1": "/s_300x200&fit_inside&f_jpeg&q_80&cb_{n}/photo_1080.jpg",
    "W2": "/s_300x200&fit_inside&f_webp&q_80&cb_{n}/photo_1080.jpg",
    "W3": "/s_800x600&fit_cover&f_jpeg&q_80&cb_{n}/photo_12mp.jpg",
    "W4": "/s_300x300&fit_inside&f_webp&q_80&cb_{n}/alpha.png",
}


def ipx_url(name: str, n: int) -> str:
    """Request ``n`` of workload ``name`` (W1-W4 or a mix) in ipx's grammar."""
    if name in IPX_URLS:
        return IPX_URLS[name].format(n=n)
    mix = next(m for m in MIXES if m.name == name)
    return ipx_path(mix.request(n), n)


def _installed_version() -> str:
    node = shutil.which("node")
    manifest = IPX_DIR / "node_modules" / "ipx" / "package.json"
    if node is None:
        raise PeerUnavailable("node is not installed (Debian: apt-get install nodejs npm); "
                              "skipping ipx")
    if not manifest.exists():
        raise PeerUnavailable("ipx is not installed: `make bench` installs it, or run "
                              "`npm ci --prefix loadtest/ipx`; skipping ipx")
    return str(json.loads(manifest.read_text())["version"])


def ipx_server(root: Path, workdir: Path) -> tuple[Server, dict[str, str]]:
    """A ready-to-start ipx server on ``root`` and the versions known before it starts."""
    version = _installed_version()
    node = shutil.which("node") or "node"
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
    server = Server([node, str(IPX_DIR / "server.mjs"), str(root)], {},
                    workdir / "ipx.log", b"ipx listening on")
    return server, {"ipx": version, "node": node_version}


def started_versions(log: Path) -> dict[str, str]:
    """sharp's and its libvips' versions, from the line server.mjs prints when ready."""
    found = re.search(rb"\(sharp ([\w.\-]+), libvips ([\w.\-]+)\)", log.read_bytes())
    return {"sharp": found[1].decode(), "sharp_libvips": found[2].decode()} if found else {}
