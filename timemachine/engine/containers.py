"""The containers dynamic resources act on (Caddy, the embedded Headscale, short-lived helpers),
reached through engine/client.py: finding them, running a command in them, and files in and out
through the Docker archive API (which writes into a volume even under a read-only root, and reads a
stopped container's files)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from docker.errors import DockerException, NotFound

from timemachine.engine.client import EngineUnavailable, docker_client


class ContainerUnavailable(Exception):
    """The container is missing, stopped, or its engine does not answer; the message says the fix."""


def find_container(name: str, docker_host: str | None, what: str) -> Any | None:
    """The container `name` (or id) in whatever state it is; None when the engine has none.
    `what` names it for people, e.g. "the Caddy container"."""
    try:
        return docker_client(docker_host).containers.get(name)
    except NotFound:
        return None
    except EngineUnavailable as error:
        raise ContainerUnavailable(f"{what}: {error}") from None
    except DockerException as error:
        raise ContainerUnavailable(f"cannot reach the Docker engine for {what}: {error}") from None


def running_container(name: str, docker_host: str | None, what: str) -> Any:
    container = find_container(name, docker_host, what)
    if container is None:
        raise ContainerUnavailable(
            f"{what} {name!r} does not exist; run pulumi refresh, then pulumi up to create it again"
        )
    if container.status != "running":
        raise ContainerUnavailable(
            f"{what} {name!r} is {container.status}, not running; "
            f"start it (docker start {name}) and run pulumi up again"
        )
    return container


def _text(data: bytes | None) -> str:
    return (data or b"").decode(errors="replace").strip()


def exec_text(container: Any, *command: str) -> tuple[int, str]:
    """`command` run in the container: its exit status and its output (stdout and stderr), decoded."""
    code, output = container.exec_run(list(command))
    return code, _text(output)


def exec_streams(container: Any, *command: str, environment: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """`command` run in the container (with `environment` added to the container's): its exit status,
    stdout and stderr, decoded apart."""
    code, (stdout, stderr) = container.exec_run(list(command), demux=True, environment=dict(environment or {}))
    return code, _text(stdout), _text(stderr)


def tar_archive(files: Mapping[str, tuple[str | bytes, int]], dirs: Mapping[str, int] | None = None) -> bytes:
    """A tar of `dirs` (path → mode) then `files` (path → (content, mode)), owned by root; paths
    are relative to where the archive is unpacked."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, mode in (dirs or {}).items():
            info = tarfile.TarInfo(path)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for path, (content, mode) in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload(
    container: Any,
    folder: str,
    files: Mapping[str, tuple[str | bytes, int]],
    dirs: Mapping[str, int] | None = None,
) -> None:
    """`files` and `dirs` (see tar_archive) unpacked under `folder` in the container."""
    if not container.put_archive(folder, tar_archive(files, dirs)):
        raise ContainerUnavailable(
            f"the Docker engine did not write {', '.join(sorted(files))} into {container.name}:{folder}; "
            "check that the container exists and its engine has space, then run pulumi up again"
        )


def read_tree(container: Any, path: str) -> dict[str, bytes] | None:
    """The regular files at `path` in the container (a file, or a directory and what is under it),
    by their path relative to `path` ("" for `path` itself); None when nothing is there."""
    try:
        chunks, _stat = container.get_archive(path)
        data = b"".join(chunks)
    except NotFound:
        return None
    found: dict[str, bytes] = {}
    root = PurePosixPath(PurePosixPath(path).name)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                relative = PurePosixPath(member.name).relative_to(root).as_posix()
                found["" if relative == "." else relative] = extracted.read()
    return found


def read_file(container: Any, path: str) -> str | None:
    """The text of the file at `path` in the container; None when there is none."""
    tree = read_tree(container, path)
    return None if tree is None or "" not in tree else tree[""].decode(errors="replace")
