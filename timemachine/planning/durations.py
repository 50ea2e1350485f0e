"""Durations as the config and the health commands take them: seconds, or a number with s, m, h or d."""

from __future__ import annotations

import re

DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])?\s*$", re.IGNORECASE)
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from '259200', '72h' or '3d'; ValueError naming the accepted forms otherwise."""
    match = DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration (seconds, or a number with s, m, h or d, e.g. 3d)")
    number, unit = match.groups()
    return float(number) * (DURATION_UNITS[unit.lower()] if unit else 1)


def format_duration(seconds: float) -> str:
    """The largest unit that divides exactly: 259200 → '3d', 5400 → '90m', 7.5 → '7.5s'."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds}s"
