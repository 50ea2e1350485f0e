"""CaddyConfig: loads the assembled config and the node keys into the running Caddy container,
without restarting it (a dynamic resource: key files written through the Docker API, then
`caddy reload` through the admin unix socket inside the container)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi

from timemachine.caddy.config import ADMIN_SOCKET, CADDY_CONFIG_PATH, CADDY_DATA_PATH, KEYS_DIR, TAILSCALE_STATE_ROOT
from timemachine.caddy.health import NODE_STATE_COMMAND, unregistered
from timemachine.dynamic.base import Provider, Resource
from timemachine.engine.containers import exec_text, find_container, read_file, read_tree, running_container, upload
from timemachine.engine.polling import poll

CANDIDATE_PATH = f"{CADDY_DATA_PATH}/caddy.next.json"
# What Caddy runs, and resumes after a restart: its autosave of each config it accepted
# (XDG_CONFIG_HOME=/data/config in the Caddy image; the config's admin.config.persist).
AUTOSAVE_PATH = f"{CADDY_DATA_PATH}/config/caddy/autosave.json"
SOCKET_WAIT_SECONDS = 60
# How long `pulumi up` waits for the nodes to register with the control server (a first login
# takes a few seconds; a key the control server refuses never succeeds).
NODE_WAIT_SECONDS = 120
WHAT = "the Caddy container"


class CaddyReloadError(Exception):
    pass


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


def _in_data(path: str) -> str:
    return path.removeprefix(CADDY_DATA_PATH + "/")


def _reload(container, config: str) -> None:
    """`config` as the candidate file, then `caddy reload` of it through the admin socket."""
    upload(container, CADDY_DATA_PATH, {_in_data(CANDIDATE_PATH): (config, 0o600)})
    code, output = exec_text(
        container, "caddy", "reload", "--config", CANDIDATE_PATH, "--address", f"unix/{ADMIN_SOCKET}", "--force"
    )
    if code != 0:
        raise CaddyReloadError(f"Caddy rejected the new config and keeps running the previous one: {output}")


def wait_for_nodes(container, nodes: list[str], seconds: float = NODE_WAIT_SECONDS) -> None:
    """Until each node has a tailnet identity (the health check's own test); else the error names
    the nodes that did not register and how to give one a fresh key."""
    output, registered = poll(
        lambda: exec_text(container, *NODE_STATE_COMMAND)[1],
        lambda states: not [node for node in unregistered(states) if node in nodes],
        seconds=seconds,
        interval=2,
    )
    if not registered:
        missing = [node for node in unregistered(output) if node in nodes]
        raise CaddyReloadError(
            f"{', '.join(missing)} did not register with the tailnet within {seconds:.0f} s: its auth key "
            "was refused or already used (single-use keys register one node identity; a lost node state "
            "needs a new key). Re-key the share with its command from `pulumi stack output rekeyCommands` "
            "(authKeys: provided: set a new shares[].authKey), after removing its old device from the "
            "tailnet so the node keeps its hostname; Caddy's log says what the control server answered. "
            f"Node states: {output}"
        )


def _key_mark(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _rekeyed(container, keys: dict[str, str], changed: set[str]) -> set[str]:
    """The nodes whose tsnet state was made with another key than the one they now get. Each
    node's state has beside it the hash of the key it was started with (`<node>.key-sha256`), so
    a re-key that failed half-way is not repeated on an identity the new key already made; a node
    without that mark (state from before it existed) counts as re-keyed when its key changed."""
    names = " ".join(keys)
    _code, listing = exec_text(
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
    files = {
        f"{_in_data(TAILSCALE_STATE_ROOT)}/{node}.key-sha256": (_key_mark(key) + "\n", 0o600)
        for node, key in keys.items()
    }
    upload(container, CADDY_DATA_PATH, files, {_in_data(TAILSCALE_STATE_ROOT): 0o700})


def apply(props: dict[str, Any], rekeyed: set[str] | None = None) -> None:
    """Keys first (a node reads its key when it starts), then the config as a candidate, `caddy
    reload`; only a config Caddy accepted becomes caddy.json, and only then are stale keys removed.
    A config Caddy rejects leaves the running one in place and raises Caddy's own error.

    A node in `rekeyed` (its key changed) is first taken out of Caddy and its tsnet state removed:
    tsnet ignores an auth key while it has a node identity, and caddy-tailscale keeps a running
    node (with its old key) across a reload that still names it. Other nodes are not touched."""
    container = running_container(props["container"], props.get("docker_host"), WHAT)
    keys: dict[str, str] = props.get("keys") or {}
    keys_dir = _in_data(KEYS_DIR)
    upload(
        container,
        CADDY_DATA_PATH,
        {f"{keys_dir}/{node}": (key, 0o600) for node, key in keys.items()},
        {keys_dir: 0o700},
    )
    _code, socket = poll(
        lambda: exec_text(container, "test", "-S", ADMIN_SOCKET)[0],
        lambda code: code == 0,
        seconds=SOCKET_WAIT_SECONDS,
        interval=0.5,
    )
    if not socket:
        raise CaddyReloadError(
            f"Caddy's admin socket {ADMIN_SOCKET} did not appear within {SOCKET_WAIT_SECONDS} s; Caddy's log: "
            f"{container.logs(tail=20)!r}"
        )
    rekeyed = _rekeyed(container, keys, rekeyed or set())
    if rekeyed:
        _reload(container, without_nodes(props["config"], rekeyed))
        exec_text(container, "rm", "-rf", *(f"{TAILSCALE_STATE_ROOT}/{node}" for node in sorted(rekeyed)))
    _record_keys(container, keys)
    _reload(container, props["config"])
    exec_text(container, "mv", CANDIDATE_PATH, CADDY_CONFIG_PATH)
    stale = [f"{KEYS_DIR}/{name}" for name in exec_text(container, "ls", KEYS_DIR)[1].split() if name not in keys]
    if stale:
        exec_text(container, "rm", "-f", *stale)
    if props.get("wait_nodes"):
        wait_for_nodes(container, sorted(keys))


def _running_config(autosave: str | None, loaded: str) -> str:
    """`loaded` when Caddy's autosave is the same config (Caddy writes it compact, keys sorted),
    else the autosave as found ("" when Caddy has none: it runs no config)."""
    if autosave is None:
        return ""
    try:
        same = json.loads(autosave) == json.loads(loaded)
    except ValueError:
        same = False
    return loaded if same else autosave


class _CaddyConfigProvider(Provider):
    """Updated in place, never replaced: the Caddy container is never restarted for it. Read: the
    config Caddy runs (its autosave) and the key files on its volume, as found."""

    def subject(self, props) -> str:
        return f"the Caddy config and keys in {props.get('container')!r}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        apply(props)
        return props["container"], props

    def change(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        old_keys, new_keys = olds.get("keys") or {}, news.get("keys") or {}
        apply(news, {node for node, key in new_keys.items() if node in old_keys and old_keys[node] != key})
        return news

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        # A stopped container's volume is read as well; a missing one holds nothing of it.
        container = find_container(props["container"], props.get("docker_host"), WHAT)
        if container is None:
            return {**props, "container_id": "", "config": "", "keys": {}}
        key_files = read_tree(container, KEYS_DIR) or {}
        return {
            **props,
            "container_id": container.id,
            "config": _running_config(read_file(container, AUTOSAVE_PATH), props["config"]),
            "keys": {node: key.decode(errors="replace") for node, key in key_files.items() if "/" not in node},
        }


class CaddyConfig(Resource, type_name="CaddyConfig"):
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
        super().__init__(_CaddyConfigProvider(), name, props, opts, secret_outputs=["keys"])
