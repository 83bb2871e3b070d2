"""CPU per request of the per-request metrics (``Metrics.observe``), in one process and
in prometheus-client's multiprocess mode (``VIPSGATE_PROCESSES`` > 1).

    python loadtest/metrics_cost.py [--calls N]

One thread, ``time.process_time``; each mode runs in a fresh interpreter (multiprocess
mode is chosen when prometheus-client is imported). Includes one flush at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

MEASURE = """
import sys, tempfile, time
if sys.argv[1] == "multiprocess":
    from vipsgate.multiprocess import enable_multiprocess
    enable_multiprocess(tempfile.mkdtemp(prefix="metrics-cost-"))
from vipsgate.metrics import Metrics, RequestTrace
metrics, calls = Metrics(), int(sys.argv[2])
trace = RequestTrace(request_id="x", path="/a", status=200, format="jpeg", cache="hit",
                     bytes=3226)
trace.finish()
start = time.process_time()
for _ in range(calls):
    metrics.observe(trace)
metrics.publish()
print(f"{(time.process_time() - start) / calls * 1e6:.2f}")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    for mode in ("single", "multiprocess"):
        out = subprocess.run([sys.executable, "-c", MEASURE, mode, str(args.calls)],
                             check=True, capture_output=True, text=True).stdout.strip()
        print(f"{mode:13s} {out} µs of CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
