#!/usr/bin/env python3
"""Evaluation time of the real __main__.py under Pulumi's mocks for 1, 10, 100 and 500 shares.

Each size is timed with the program as shipped (its GC tuning on) and, in the same run, with
Python's default GC thresholds (the tuning switched off), median of a few runs each. Prints a
table and, last, `500 shares: <seconds> s` for the program as shipped. Target: linear growth,
well under 5 s at 500 shares. A measurement, not a test.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import timemachine.gc_tuning as gc_tuning
from tests.support.pulumi_runner import run_program
from tests.support.stack_configs import generated

SIZES = (1, 10, 100, 500)
REPEATS = 3
DEFAULT_THRESHOLDS = gc.get_threshold()
SHIPPED_THRESHOLDS = gc_tuning.PROGRAM_GC_THRESHOLDS


def timed(config: dict, n: int, tuned: bool) -> tuple[float, int]:
    gc.set_threshold(*DEFAULT_THRESHOLDS)
    # __main__.py applies whatever this holds: the shipped setting, or Python's default.
    gc_tuning.PROGRAM_GC_THRESHOLDS = SHIPPED_THRESHOLDS if tuned else DEFAULT_THRESHOLDS
    gc.collect()
    start = time.perf_counter()
    run = run_program(config)
    elapsed = time.perf_counter() - start
    assert len(run.outputs["shares"]) == n
    return elapsed, len(run.resources)


def main() -> None:
    configs = {n: generated(n) for n in SIZES}
    run_program(configs[1])  # warm imports
    rows = []
    for n in SIZES:
        shipped, default = [], []
        for _ in range(REPEATS):  # alternate, so drift hits both columns alike
            seconds, resources = timed(configs[n], n, tuned=True)
            shipped.append(seconds)
            default.append(timed(configs[n], n, tuned=False)[0])
        rows.append((n, resources, statistics.median(shipped), statistics.median(default)))
    print(f"GC thresholds: shipped {SHIPPED_THRESHOLDS}, default {DEFAULT_THRESHOLDS}")
    print(f"{'shares':>7} {'resources':>10} {'shipped s':>10} {'ms/share':>9} {'default-gc s':>13} {'ms/share':>9}")
    for n, resources, shipped_s, default_s in rows:
        print(
            f"{n:>7} {resources:>10} {shipped_s:>10.3f} {1000 * shipped_s / n:>9.2f} "
            f"{default_s:>13.3f} {1000 * default_s / n:>9.2f}"
        )
    print(f"500 shares: {rows[-1][2]:.2f} s")


if __name__ == "__main__":
    main()
