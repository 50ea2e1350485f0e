"""Reading a bundle's property lists read-only, turning every way they can be absent or damaged into a problem."""

from __future__ import annotations

import datetime
import os
import plistlib
from dataclasses import dataclass
from typing import Any

# Time Machine's plists are kilobytes; a cap keeps a corrupt or hostile file from exhausting memory.
MAX_PLIST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PlistRead:
    """A plist's top-level dictionary, or why there is none (exactly one of the two is set)."""

    value: dict[str, Any] | None
    problem: str | None


def read_plist(path: str) -> PlistRead:
    """Parse an XML or binary plist whose top level must be a dictionary; never raises."""
    name = os.path.basename(path)
    try:
        # O_NOFOLLOW: a bundle is the Mac's data, and a symlink in it is not where its plist lives.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return PlistRead(None, f"{name}: missing")
    except OSError as error:
        return PlistRead(None, f"{name}: unreadable ({error.strerror or error})")
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_PLIST_BYTES + 1)
    except OSError as error:
        return PlistRead(None, f"{name}: unreadable ({error.strerror or error})")
    if len(data) > MAX_PLIST_BYTES:
        return PlistRead(None, f"{name}: damaged (larger than {MAX_PLIST_BYTES} bytes)")
    try:
        value = plistlib.loads(data)
    # plistlib raises InvalidFileException, ExpatError, ValueError, OverflowError, IndexError, KeyError…
    # depending on where a file is broken; every one of them means the same thing here.
    except Exception as error:
        return PlistRead(None, f"{name}: damaged ({type(error).__name__})")
    if not isinstance(value, dict):
        return PlistRead(None, f"{name}: damaged (top level is {type(value).__name__}, not a dictionary)")
    return PlistRead(value, None)


def timestamp(value: object) -> float | None:
    """Seconds since the epoch of a plist date (plistlib gives naive datetimes in UTC), None for anything else."""
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    try:
        return value.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
