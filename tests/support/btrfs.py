"""A btrfs filesystem in a file, loop-mounted: a backup disk for the quota tests (btrfs-progs on the
host, as root)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sh(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@contextmanager
def loop_btrfs(work: Path, size: int) -> Iterator[Path]:
    """A `size`-byte btrfs filesystem in a file under `work`, mounted at `work`/disk; unmounted and
    detached whatever happens."""
    image, mount = work / "disk.img", work / "disk"
    with open(image, "wb") as f:
        f.truncate(size)
    loop = sh("losetup", "--find", "--show", str(image)).strip()
    try:
        sh("mkfs.btrfs", "-q", loop)
        mount.mkdir()
        sh("mount", loop, str(mount))
        try:
            yield mount
        finally:
            subprocess.run(["umount", "--lazy", str(mount)], check=False)
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)
        image.unlink(missing_ok=True)


def qgroup(path: Path) -> tuple[int, str]:
    """The subvolume's referenced bytes and limit, as btrfs reports them on the host."""
    line = sh("btrfs", "qgroup", "show", "--raw", "-r", "-f", str(path)).splitlines()[-1].split()
    return int(line[1]), line[3]
