"""Talking to Headscale for users and pre-auth keys: its CLI in the embedded container (through the
Docker API), or the REST API of an external Headscale with an API key. Plain functions, no Pulumi."""

from __future__ import annotations

import io
import json
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from timemachine.engine.containers import ContainerUnavailable, running_container


class HeadscaleError(Exception):
    """Headscale did not do what was asked; the message says what it answered and what to do."""


class UserExists(HeadscaleError):
    pass


class UserHasNodes(HeadscaleError):
    pass


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str
    expiration: str


class Headscale(Protocol):
    def users(self) -> dict[str, str]: ...
    def create_user(self, name: str) -> str: ...
    def destroy_user(self, user_id: str) -> None: ...
    def create_key(self, user_id: str, tags: list[str], days: int, reusable: bool) -> NewKey: ...
    def expire_key(self, user_id: str, key: str) -> None: ...
    def nodes_of_key(self, key_id: str) -> dict[str, str]: ...
    def delete_node(self, node_id: str) -> None: ...


def _registered_with(nodes: list[dict], key_id: str) -> dict[str, str]:
    """Node id → name of the nodes that registered with pre-auth key `key_id`."""
    found = {}
    for node in nodes:
        key = node.get("pre_auth_key") or node.get("preAuthKey") or {}
        if str(key.get("id", "")) == str(key_id):
            found[str(node["id"])] = node.get("given_name") or node.get("givenName") or node.get("name", "")
    return found


def connect(access: Mapping[str, Any]) -> Headscale:
    """The Headscale a resource's `access` input names: {container, docker_host} or {url, api_key}."""
    if access.get("container"):
        return ContainerHeadscale(access["container"], access.get("docker_host") or None)
    return ApiHeadscale(access["url"], access["api_key"])


def _expiry(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


class ContainerHeadscale:
    """The embedded Headscale: `headscale … -o json` executed in its container."""

    # Headscale may still be starting (a replaced container): its socket answers within seconds.
    READY_SECONDS = 90

    def __init__(self, container: str, docker_host: str | None = None):
        self.container_name = container
        self.docker_host = docker_host

    def _container(self):
        try:
            return running_container(self.container_name, self.docker_host, "the embedded Headscale container")
        except ContainerUnavailable as exc:
            raise HeadscaleError(str(exc)) from None

    def _run(self, *args: str) -> Any:
        container = self._container()
        deadline = time.monotonic() + self.READY_SECONDS
        while True:
            code, output = container.exec_run(["headscale", *args, "--output", "json"], demux=True)
            stdout, stderr = ((part or b"").decode(errors="replace").strip() for part in output)
            if code == 0:
                return json.loads(stdout) if stdout else None
            text = stderr or stdout
            starting = "connect" in text.lower() and ("refused" in text or "no such file" in text)
            if not starting or time.monotonic() > deadline:
                raise HeadscaleError(f"headscale {' '.join(args)} failed (exit {code}): {_error_text(text)}")
            time.sleep(1)

    def run_plain(self, *args: str) -> str:
        """The Headscale CLI with its text output; its message on failure."""
        code, text = self.exec_plain("headscale", *args, check=False)
        if code != 0:
            raise HeadscaleError(f"headscale {' '.join(args)} refused it: {_error_text(text)}")
        return text

    def exec_plain(self, *command: str, check: bool = True) -> tuple[int, str]:
        code, output = self._container().exec_run(list(command))
        text = (output or b"").decode(errors="replace").strip()
        if check and code != 0:
            raise HeadscaleError(f"{' '.join(command)} failed in {self.container_name} (exit {code}): {text}")
        return code, text

    def write(self, path: str, content: str) -> None:
        """A file in the container (0600), through the Docker archive API."""
        folder, _, name = path.rpartition("/")
        data = content.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
        if not self._container().put_archive(folder, buffer.getvalue()):
            raise HeadscaleError(f"could not write {path} into {self.container_name}")

    def signal(self, name: str) -> int:
        """Send a signal to Headscale; returns the time (for logs since then)."""
        since = int(time.time()) - 1
        self._container().kill(signal=name)
        return since

    def wait_log(self, text: str, since: int, timeout: float = 30) -> None:
        """Wait for `text` in Headscale's log since `since`; an error logged with it is raised."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self._container().logs(since=since).decode(errors="replace").splitlines()
            hits = [i for i, line in enumerate(lines) if text in line]
            if hits:
                time.sleep(1)
                after = self._container().logs(since=since).decode(errors="replace").splitlines()[hits[-1] :]
                errors = [line for line in after if "ERR" in line and "policy" in line]
                if errors:
                    raise HeadscaleError(f"Headscale did not load the policy: {errors[-1]}")
                return
            time.sleep(0.5)
        raise HeadscaleError(f"Headscale did not log {text!r} within {timeout:.0f}s")

    def users(self) -> dict[str, str]:
        return {u["name"]: str(u["id"]) for u in self._run("users", "list") or []}

    def create_user(self, name: str) -> str:
        try:
            return str(self._run("users", "create", name)["id"])
        except HeadscaleError as exc:
            raise _refined(exc) from None

    def destroy_user(self, user_id: str) -> None:
        try:
            self._run("users", "destroy", "--identifier", user_id, "--force")
        except HeadscaleError as exc:
            raise _refined(exc) from None

    def create_key(self, user_id: str, tags: list[str], days: int, reusable: bool) -> NewKey:
        args = ["preauthkeys", "create", "--user", user_id, "--expiration", f"{days}d"]
        if reusable:
            args.append("--reusable")
        if tags:
            args += ["--tags", ",".join(tags)]
        made = self._run(*args)
        return NewKey(str(made["id"]), made["key"], _timestamp(made.get("expiration")))

    def expire_key(self, user_id: str, key: str) -> None:
        self._run("preauthkeys", "expire", "--user", user_id, key)

    def nodes_of_key(self, key_id: str) -> dict[str, str]:
        return _registered_with(self._run("nodes", "list") or [], key_id)

    def delete_node(self, node_id: str) -> None:
        self._run("nodes", "delete", "--identifier", node_id, "--force")


class ApiHeadscale:
    """An external Headscale's REST API (/api/v1), authenticated by an API key."""

    def __init__(self, url: str, api_key: str, timeout: float = 30):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/api/v1/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            answer = _error_text(exc.read().decode(errors="replace"))
            if exc.code == 401:
                raise HeadscaleError(
                    f"Headscale at {self.url} refused the API key (401 Unauthorized): make a key with "
                    "`headscale apikeys create` and set it with pulumi config set --secret --path "
                    "tailnet.headscaleApiKey <key>"
                ) from None
            raise HeadscaleError(
                f"Headscale at {self.url}: {method} /api/v1/{path} answered {exc.code}: {answer}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HeadscaleError(
                f"Headscale at {self.url} does not answer ({reason}); check tailnet.controlUrl and that it runs"
            ) from None
        return json.loads(text) if text else {}

    def users(self) -> dict[str, str]:
        return {u["name"]: str(u["id"]) for u in self._call("GET", "user").get("users", [])}

    def create_user(self, name: str) -> str:
        try:
            return str(self._call("POST", "user", {"name": name})["user"]["id"])
        except HeadscaleError as exc:
            raise _refined(exc) from None

    def destroy_user(self, user_id: str) -> None:
        try:
            self._call("DELETE", f"user/{user_id}")
        except HeadscaleError as exc:
            raise _refined(exc) from None

    def create_key(self, user_id: str, tags: list[str], days: int, reusable: bool) -> NewKey:
        body = {
            "user": user_id,
            "reusable": reusable,
            "ephemeral": False,
            "expiration": _expiry(days).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aclTags": tags,
        }
        made = self._call("POST", "preauthkey", body)["preAuthKey"]
        return NewKey(str(made["id"]), made["key"], _timestamp(made.get("expiration")))

    def expire_key(self, user_id: str, key: str) -> None:
        self._call("POST", "preauthkey/expire", {"user": user_id, "key": key})

    def nodes_of_key(self, key_id: str) -> dict[str, str]:
        return _registered_with(self._call("GET", "node").get("nodes", []), key_id)

    def delete_node(self, node_id: str) -> None:
        self._call("DELETE", f"node/{node_id}")


def _refined(error: HeadscaleError) -> HeadscaleError:
    """The answers the providers act on: a user that exists already, or still has devices."""
    text = str(error)
    if "already exists" in text or "UNIQUE constraint" in text:
        return UserExists(text)
    if "not empty" in text:
        return UserHasNodes(text)
    return error


def _error_text(text: str) -> str:
    """Headscale's error message from its JSON answer ({"message": …} or {"Error": …}), else the text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[-500:]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("Error") or data.get("error") or data)
    return str(data)


def _timestamp(value: Any) -> str:
    """Expiration as RFC 3339: protojson gives a string; the CLI's JSON a {seconds, nanos} object."""
    if isinstance(value, dict) and "seconds" in value:
        return datetime.fromtimestamp(int(value["seconds"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "")
