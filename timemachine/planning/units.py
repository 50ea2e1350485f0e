"""Sizes for people, the one form every message, table and page uses."""

from __future__ import annotations


def human_size(n: int) -> str:
    """Bytes for people: 1.5 GiB, 300.0 MiB, 512 B."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        # 1023.96 MiB would print as "1024.0 MiB": move up a unit before rounding does.
        if abs(value) < 1023.95 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
