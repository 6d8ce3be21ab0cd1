"""``make bench``: every benchmark in turn, each printing its own figures (see bench/RESULTS.md)."""

from __future__ import annotations

import subprocess
import sys

BENCHES = (
    ["bench.aqi_bench"],
    ["bench.water_bench"],
    ["bench.annual_bench"],
    ["bench.hj212_bench"],
    ["bench.store_bench"],
    ["bench.processor_bench", "--hours", "6"],
    ["bench.gateway_bench", "--connections", "1000", "--seconds", "20"],
    ["bench.collector_bench", "--readings", "100000"],
    ["bench.pipeline_bench"],
)


def main() -> int:
    failed = []
    for module, *args in BENCHES:
        print(f"\n=== python -m {module} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, "-m", module, *args]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
