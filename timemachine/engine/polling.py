"""Waiting for something on the engine with a deadline: one loop for every wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(probe: Callable[[], T], ready: Callable[[T], bool], *, seconds: float, interval: float) -> tuple[T, bool]:
    """`probe()` every `interval` seconds until `ready` accepts its result or `seconds` have passed
    (it runs at least once); returns the last result and whether it was ready."""
    deadline = time.monotonic() + seconds
    while True:
        result = probe()
        if ready(result):
            return result, True
        if time.monotonic() > deadline:
            return result, False
        time.sleep(interval)
