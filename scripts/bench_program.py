#!/usr/bin/env python3
"""Evaluation time of the real __main__.py under Pulumi's mocks for 1, 10, 100 and 500 shares.

Prints a table (median of a few runs each) and, last, `500 shares: <seconds> s`. Target: linear
growth, well under 5 s at 500 shares. A measurement, not a test.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pulumi_runner import run_program  # noqa: E402
from tests.stack_configs import generated  # noqa: E402

SIZES = (1, 10, 100, 500)
REPEATS = 3


def main() -> None:
    configs = {n: generated(n) for n in SIZES}
    run_program(configs[1])  # warm imports
    rows = []
    for n in SIZES:
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            run = run_program(configs[n])
            times.append(time.perf_counter() - start)
            assert len(run.outputs["shares"]) == n
        rows.append((n, statistics.median(times), len(run.resources)))
    print(f"{'shares':>7} {'resources':>10} {'seconds':>9} {'ms/share':>9}")
    for n, seconds, resources in rows:
        print(f"{n:>7} {resources:>10} {seconds:>9.3f} {1000 * seconds / n:>9.2f}")
    print(f"500 shares: {rows[-1][1]:.2f} s")


if __name__ == "__main__":
    main()
