"""CaddyConfig: loads the assembled config and the node keys into the running Caddy container,
without restarting it (a dynamic resource: key files written through the Docker API, then
`caddy reload` through the admin unix socket inside the container)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from typing import Any

import pulumi
from pulumi.dynamic import UpdateResult

from timemachine.caddy.config import ADMIN_SOCKET, CADDY_CONFIG_PATH, CADDY_DATA_PATH, KEYS_DIR, TAILSCALE_STATE_ROOT
from timemachine.caddy.health import NODE_STATE_COMMAND, unregistered
from timemachine.dynamic.in_place import InPlaceProvider
from timemachine.engine.containers import ContainerUnavailable, running_container

CANDIDATE_PATH = f"{CADDY_DATA_PATH}/caddy.next.json"
SOCKET_WAIT_SECONDS = 60
# How long `pulumi up` waits for the nodes to register with the control server (a first login
# takes a few seconds; a key the control server refuses never succeeds).
NODE_WAIT_SECONDS = 120


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


def without_nodes(config: str, nodes: set[str]) -> str:
    """The config minus `nodes` and the layer4 servers that listen on them."""
    data = json.loads(config)
    apps = data.get("apps", {})
    for node in nodes:
        apps.get("tailscale", {}).get("nodes", {}).pop(node, None)
    servers = apps.get("layer4", {}).get("servers", {})
    for name, server in list(servers.items()):
        if any(listen.startswith(f"tailscale/{node}:") for listen in server.get("listen", []) for node in nodes):
            del servers[name]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _reload(container, config: str) -> None:
    """`config` as the candidate file, then `caddy reload` of it through the admin socket."""
    candidate = CANDIDATE_PATH.removeprefix(CADDY_DATA_PATH + "/")
    if not container.put_archive(CADDY_DATA_PATH, _archive({candidate: (config, 0o600)}, {})):
        raise CaddyReloadError(f"could not write the config into {container.name}:{CADDY_DATA_PATH}")
    code, output = _exec(
        container, "caddy", "reload", "--config", CANDIDATE_PATH, "--address", f"unix/{ADMIN_SOCKET}", "--force"
    )
    if code != 0:
        raise CaddyReloadError(f"Caddy rejected the new config and keeps running the previous one: {output}")


def wait_for_nodes(container, nodes: list[str], seconds: float = NODE_WAIT_SECONDS) -> None:
    """Until each node has a tailnet identity (the health check's own test); else the error names
    the nodes that did not register and how to give one a fresh key."""
    deadline = time.monotonic() + seconds
    while True:
        _code, output = _exec(container, *NODE_STATE_COMMAND)
        missing = [node for node in unregistered(output) if node in nodes]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise CaddyReloadError(
                f"{', '.join(missing)} did not register with the tailnet within {seconds:.0f} s: its auth key "
                "was refused or already used (single-use keys register one node identity; a lost node state "
                "needs a new key). Re-key the share with its command from `pulumi stack output rekeyCommands` "
                "(authKeys: provided: set a new shares[].authKey), after removing its old device from the "
                "tailnet so the node keeps its hostname; Caddy's log says what the control server answered. "
                f"Node states: {output}"
            )
        time.sleep(2)


def _key_mark(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _rekeyed(container, keys: dict[str, str], changed: set[str]) -> set[str]:
    """The nodes whose tsnet state was made with another key than the one they now get. Each
    node's state has beside it the hash of the key it was started with (`<node>.key-sha256`), so
    a re-key that failed half-way is not repeated on an identity the new key already made; a node
    without that mark (state from before it existed) counts as re-keyed when its key changed."""
    names = " ".join(keys)
    _code, listing = _exec(
        container,
        "sh",
        "-c",
        f"cd {TAILSCALE_STATE_ROOT} 2>/dev/null || exit 0; for n in {names}; do "
        '[ -f "$n.key-sha256" ] && echo "$n $(cat "$n.key-sha256")"; done; exit 0',
    )
    marks = dict(line.split(" ", 1) for line in listing.splitlines() if " " in line)
    return {
        node
        for node, key in keys.items()
        if (node in marks and marks[node].strip() != _key_mark(key)) or (node not in marks and node in changed)
    }


def _record_keys(container, keys: dict[str, str]) -> None:
    files = {f"{node}.key-sha256": (_key_mark(key) + "\n", 0o600) for node, key in keys.items()}
    container.put_archive(
        CADDY_DATA_PATH, _archive({f"tailscale/{k}": v for k, v in files.items()}, {"tailscale": 0o700})
    )


def apply(props: dict[str, Any], rekeyed: set[str] | None = None) -> None:
    """Keys first (a node reads its key when it starts), then the config as a candidate, `caddy
    reload`; only a config Caddy accepted becomes caddy.json, and only then are stale keys removed.
    A config Caddy rejects leaves the running one in place and raises Caddy's own error.

    A node in `rekeyed` (its key changed) is first taken out of Caddy and its tsnet state removed:
    tsnet ignores an auth key while it has a node identity, and caddy-tailscale keeps a running
    node (with its old key) across a reload that still names it. Other nodes are not touched."""
    container = _container(props["container"], props.get("docker_host"))
    keys: dict[str, str] = props.get("keys") or {}
    keys_dir = KEYS_DIR.removeprefix(CADDY_DATA_PATH + "/")
    files = {f"{keys_dir}/{node}": (key, 0o600) for node, key in keys.items()}
    if not container.put_archive(CADDY_DATA_PATH, _archive(files, {keys_dir: 0o700})):
        raise CaddyReloadError(f"could not write the keys into {props['container']}:{CADDY_DATA_PATH}")
    deadline = time.monotonic() + SOCKET_WAIT_SECONDS
    while _exec(container, "test", "-S", ADMIN_SOCKET)[0] != 0:
        if time.monotonic() > deadline:
            raise CaddyReloadError(f"Caddy's admin socket {ADMIN_SOCKET} did not appear: {container.logs(tail=20)!r}")
        time.sleep(0.5)
    rekeyed = _rekeyed(container, keys, rekeyed or set())
    if rekeyed:
        _reload(container, without_nodes(props["config"], rekeyed))
        _exec(container, "rm", "-rf", *(f"{TAILSCALE_STATE_ROOT}/{node}" for node in sorted(rekeyed)))
    _record_keys(container, keys)
    _reload(container, props["config"])
    _exec(container, "mv", CANDIDATE_PATH, CADDY_CONFIG_PATH)
    stale = [f"{KEYS_DIR}/{name}" for name in _exec(container, "ls", KEYS_DIR)[1].split() if name not in keys]
    if stale:
        _exec(container, "rm", "-f", *stale)
    if props.get("wait_nodes"):
        wait_for_nodes(container, sorted(keys))


class _CaddyConfigProvider(InPlaceProvider):
    fields = ("container", "container_id", "config", "keys", "docker_host", "wait_nodes")

    def apply(self, props: dict[str, Any]) -> None:
        apply(props)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        old_keys, new_keys = olds.get("keys") or {}, news.get("keys") or {}
        rekeyed = {node for node, key in new_keys.items() if node in old_keys and old_keys[node] != key}
        try:
            apply(news, rekeyed)
        except Exception as error:  # noqa: BLE001 - the engine shows one message per failed step
            raise Exception(str(error)) from None
        return UpdateResult(outs=news)


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
        wait_nodes: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "container": container,
            # A new container (image change) starts empty: the changed id makes this resource load it.
            "container_id": container_id,
            "config": config,
            "keys": keys,
            "docker_host": docker_host,
            # `pulumi up` waits until every node has registered, and fails naming those that did not.
            "wait_nodes": wait_nodes,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["keys"])
        super().__init__(_CaddyConfigProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))
