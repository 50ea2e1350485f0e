"""Garbage-collector settings for one evaluation of the program."""

import gc

# The Pulumi SDK allocates several Outputs, futures and tasks per resource input, most of them in
# reference cycles; with Python's default thresholds (700, 10, 10) the cyclic collector walks that
# growing heap so often that at 500 shares it took more than half the evaluation time, and made it
# grow faster than linearly. Fewer, larger young-generation passes keep it linear. The program is
# evaluated once per process, so this affects nothing else.
PROGRAM_GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    gc.set_threshold(*PROGRAM_GC_THRESHOLDS)
