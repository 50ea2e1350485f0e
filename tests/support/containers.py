"""Containers a test runs by hand on the engine: files put in, health awaited, one-off commands."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path, PurePosixPath


def wait_healthy(container, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        health = container.attrs["State"].get("Health", {}).get("Status")
        if health == "healthy":
            return
        if container.status == "exited":
            raise AssertionError(f"{container.name} exited: {container.logs(tail=30).decode()}")
        time.sleep(1)
    raise AssertionError(f"{container.name} not healthy after {timeout}s: {container.logs(tail=30).decode()}")


def samba_volumes(data: Path) -> dict:
    """Docker SDK `volumes` for running the Samba image by hand as the stack runs it: the share's
    directory at /data and the marker of the storage root beside it (made here), read-only."""
    from timemachine.dynamic.storage_helper import MARKER_NAME, MARKER_PATH
    from timemachine.samba.smbconf import DATA_PATH

    marker = data.parent / MARKER_NAME
    marker.touch()
    return {str(data): {"bind": DATA_PATH, "mode": "rw"}, str(marker): {"bind": MARKER_PATH, "mode": "ro"}}


def upload(container, path: str, content: str, mode: int = 0o644) -> None:
    """Put one file into a (created, not yet started) container, as the provider's `uploads` do."""
    data = content.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(PurePosixPath(path).name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(str(PurePosixPath(path).parent), buffer.getvalue())


def run_once(client, image: str, command: list[str], files: dict[str, str]) -> tuple[int, str]:
    """Run `command` once in a throwaway container of `image` (no network) with `files` uploaded;
    returns its exit status and output."""
    container = client.containers.create(image, command=command, network_mode="none")
    try:
        for path, content in files.items():
            upload(container, path, content)
        container.start()
        status = container.wait(timeout=120)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True, v=True)


def remove_containers(made: list) -> None:
    """Remove (forced, with their anonymous volumes) the containers in `made`, emptying it."""
    while made:
        made.pop().remove(force=True, v=True)
