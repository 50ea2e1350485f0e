"""Disk usage and newest modification time of a directory tree, by lstat alone: nothing is opened or followed."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """What a tree holds: regular files, bytes allocated on disk (st_blocks) and apparent (st_size)."""

    files: int = 0
    allocated_bytes: int = 0
    apparent_bytes: int = 0
    newest_mtime: float | None = None

    def __add__(self, other: Usage) -> Usage:
        mtimes = [m for m in (self.newest_mtime, other.newest_mtime) if m is not None]
        return Usage(
            self.files + other.files,
            self.allocated_bytes + other.allocated_bytes,
            self.apparent_bytes + other.apparent_bytes,
            max(mtimes) if mtimes else None,
        )


def entry_usage(st: os.stat_result, seen: set[tuple[int, int]]) -> Usage:
    """One entry's share of a tree: a hard-linked file counts once, however many names it has."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return Usage()
        seen.add(key)
    allocated = st.st_blocks * 512
    if stat.S_ISREG(st.st_mode):
        return Usage(1, allocated, st.st_size, st.st_mtime)
    # Directories and symlinks take blocks too (quotas count them); they hold no backup data.
    return Usage(0, allocated, 0, None)


def tree_usage(path: str, seen: set[tuple[int, int]], problems: list[str], label: str) -> Usage:
    """Usage of everything below path (path itself excluded); unreadable parts become problems, not errors."""
    total = Usage()
    pending = [path]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except FileNotFoundError:
            # Time Machine renames and deletes while we read: a vanished directory is not a fault.
            continue
        except OSError as error:
            problems.append(f"{label}: cannot list {os.path.relpath(directory, path)} ({error.strerror or error})")
            continue
        for entry in listed:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as error:
                problems.append(f"{label}: cannot stat {entry.name} ({error.strerror or error})")
                continue
            total = total + entry_usage(st, seen)
            if stat.S_ISDIR(st.st_mode):
                pending.append(entry.path)
    return total
