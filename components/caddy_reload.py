"""CaddyConfig: loads the assembled config and the node keys into the running Caddy container,
without restarting it (a dynamic resource: key files written through the Docker API, then
`caddy reload` through the admin unix socket inside the container)."""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

import pulumi

from components.caddy_config import ADMIN_SOCKET, CADDY_CONFIG_PATH, CADDY_DATA_PATH, KEYS_DIR
from components.in_place import InPlaceProvider
from components.running import ContainerUnavailable, running_container

CANDIDATE_PATH = f"{CADDY_DATA_PATH}/caddy.next.json"
SOCKET_WAIT_SECONDS = 60


class CaddyReloadError(Exception):
    pass


def _archive(files: dict[str, tuple[str, int]], dirs: dict[str, int]) -> bytes:
    """A tar of `files` (path → (content, mode)) and `dirs` (path → mode), paths relative to /data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, mode in dirs.items():
            info = tarfile.TarInfo(path)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for path, (content, mode) in files.items():
            data = content.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _container(name: str, docker_host: str | None):
    try:
        return running_container(name, docker_host, "the Caddy container")
    except ContainerUnavailable as exc:
        raise CaddyReloadError(str(exc)) from None


def _exec(container, *command: str) -> tuple[int, str]:
    code, output = container.exec_run(list(command))
    return code, (output or b"").decode(errors="replace").strip()


def apply(props: dict[str, Any]) -> None:
    """Keys first (a node reads its key when it starts), then the config as a candidate, `caddy
    reload`; only a config Caddy accepted becomes caddy.json, and only then are stale keys removed.
    A config Caddy rejects leaves the running one in place and raises Caddy's own error."""
    container = _container(props["container"], props.get("docker_host"))
    keys: dict[str, str] = props.get("keys") or {}
    keys_dir = KEYS_DIR.removeprefix(CADDY_DATA_PATH + "/")
    files = {f"{keys_dir}/{node}": (key, 0o600) for node, key in keys.items()}
    files[CANDIDATE_PATH.removeprefix(CADDY_DATA_PATH + "/")] = (props["config"], 0o600)
    if not container.put_archive(CADDY_DATA_PATH, _archive(files, {keys_dir: 0o700})):
        raise CaddyReloadError(f"could not write the config and keys into {props['container']}:{CADDY_DATA_PATH}")
    deadline = time.monotonic() + SOCKET_WAIT_SECONDS
    while _exec(container, "test", "-S", ADMIN_SOCKET)[0] != 0:
        if time.monotonic() > deadline:
            raise CaddyReloadError(f"Caddy's admin socket {ADMIN_SOCKET} did not appear: {container.logs(tail=20)!r}")
        time.sleep(0.5)
    code, output = _exec(
        container, "caddy", "reload", "--config", CANDIDATE_PATH, "--address", f"unix/{ADMIN_SOCKET}", "--force"
    )
    if code != 0:
        raise CaddyReloadError(f"Caddy rejected the new config and keeps running the previous one: {output}")
    _exec(container, "mv", CANDIDATE_PATH, CADDY_CONFIG_PATH)
    stale = [f"{KEYS_DIR}/{name}" for name in _exec(container, "ls", KEYS_DIR)[1].split() if name not in keys]
    if stale:
        _exec(container, "rm", "-f", *stale)


class _CaddyConfigProvider(InPlaceProvider):
    fields = ("container", "container_id", "config", "keys", "docker_host")

    def apply(self, props: dict[str, Any]) -> None:
        apply(props)


class CaddyConfig(pulumi.dynamic.Resource):
    def __init__(
        self,
        name: str,
        *,
        container: str,
        container_id: pulumi.Input[str],
        config: str,
        keys: pulumi.Input[dict[str, str]],
        docker_host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "container": container,
            # A new container (image change) starts empty: the changed id makes this resource load it.
            "container_id": container_id,
            "config": config,
            "keys": keys,
            "docker_host": docker_host,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["keys"])
        super().__init__(_CaddyConfigProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))
