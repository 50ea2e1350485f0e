"""Talking to Headscale for users and pre-auth keys: its CLI in the embedded container (through the
Docker API), or the REST API of an external Headscale with an API key. Plain functions, no Pulumi."""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from timemachine.engine.containers import (
    ContainerUnavailable,
    exec_streams,
    exec_text,
    find_container,
    read_file,
    running_container,
    upload,
)
from timemachine.engine.polling import poll

EMBEDDED = "the embedded Headscale container"


class HeadscaleError(Exception):
    """Headscale did not do what was asked; the message says what it answered and what to do."""


class UserExists(HeadscaleError):
    pass


class UserHasNodes(HeadscaleError):
    pass


class NotFound(HeadscaleError):
    """Headscale has no such user or key (any more)."""


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str
    expiration: str


@dataclass(frozen=True)
class FoundKey:
    """A pre-auth key as Headscale has it now."""

    used: bool
    expiration: str  # RFC 3339, "" for none

    @property
    def expired(self) -> bool:
        return bool(self.expiration) and _instant(self.expiration) <= datetime.now(UTC)


class Headscale(Protocol):
    def users(self) -> dict[str, str]: ...
    def create_user(self, name: str) -> str: ...
    def destroy_user(self, user_id: str) -> None: ...
    def create_key(self, user_id: str, tags: list[str], hours: int, reusable: bool) -> NewKey: ...
    def expire_key(self, user_id: str, key: str) -> None: ...
    def find_key(self, user_id: str, key_id: str) -> FoundKey | None: ...
    def nodes_of_key(self, key_id: str) -> dict[str, str]: ...
    def delete_node(self, node_id: str) -> None: ...


def _found_key(keys: list[dict], key_id: str) -> FoundKey | None:
    """Key `key_id` among Headscale's answer for a user's keys (the CLI's JSON or the REST API's)."""
    for key in keys:
        if str(key.get("id", "")) == str(key_id):
            return FoundKey(bool(key.get("used")), _timestamp(key.get("expiration")))
    return None


def _registered_with(nodes: list[dict], key_id: str) -> dict[str, str]:
    """Node id → name of the nodes that registered with pre-auth key `key_id`."""
    found = {}
    for node in nodes:
        key = node.get("pre_auth_key") or node.get("preAuthKey") or {}
        if str(key.get("id", "")) == str(key_id):
            found[str(node["id"])] = node.get("given_name") or node.get("givenName") or node.get("name", "")
    return found


def connect(access: Mapping[str, Any]) -> Headscale:
    """The Headscale a resource's `access` input names: {container, docker_host} or {url, api_key}
    (and `ca`, the PEM of a private CA its certificate chains to)."""
    if access.get("container"):
        return ContainerHeadscale(access["container"], access.get("docker_host") or None)
    return ApiHeadscale(access["url"], access["api_key"], ca=access.get("ca"))


def _expiry(hours: int) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


class ContainerHeadscale:
    """The embedded Headscale: `headscale … -o json` executed in its container."""

    # Headscale may still be starting (a replaced container): its socket answers within seconds.
    READY_SECONDS = 90

    def __init__(self, container: str, docker_host: str | None = None):
        self.container_name = container
        self.docker_host = docker_host

    def _container(self):
        try:
            return running_container(self.container_name, self.docker_host, EMBEDDED)
        except ContainerUnavailable as exc:
            raise HeadscaleError(str(exc)) from None

    def _run(self, *args: str) -> Any:
        container = self._container()

        def starting(result: tuple[int, str, str]) -> bool:
            text = (result[2] or result[1]).lower()
            return result[0] != 0 and "connect" in text and ("refused" in text or "no such file" in text)

        (code, stdout, stderr), _ready = poll(
            lambda: exec_streams(container, "headscale", *args, "--output", "json"),
            lambda result: not starting(result),
            seconds=self.READY_SECONDS,
            interval=1,
        )
        if code != 0:
            raise _refined(
                HeadscaleError(f"headscale {' '.join(args)} failed (exit {code}): {_error_text(stderr or stdout)}")
            )
        return json.loads(stdout) if stdout else None

    def run_plain(self, *args: str) -> str:
        """The Headscale CLI with its text output; its message on failure."""
        code, text = self.exec_plain("headscale", *args, check=False)
        if code != 0:
            raise HeadscaleError(f"headscale {' '.join(args)} refused it: {_error_text(text)}")
        return text

    def exec_plain(self, *command: str, check: bool = True) -> tuple[int, str]:
        code, text = exec_text(self._container(), *command)
        if check and code != 0:
            raise HeadscaleError(f"{' '.join(command)} failed in {self.container_name} (exit {code}): {text}")
        return code, text

    def write(self, path: str, content: str) -> None:
        """A file in the container (0600), through the Docker archive API."""
        folder, _, name = path.rpartition("/")
        try:
            upload(self._container(), folder, {name: (content, 0o600)})
        except ContainerUnavailable as exc:
            raise HeadscaleError(str(exc)) from None

    def read(self, path: str) -> tuple[str, str | None] | None:
        """The container's id and the text of the file at `path` in it (None: no such file), read
        even when the container is stopped; None when there is no container."""
        try:
            container = find_container(self.container_name, self.docker_host, EMBEDDED)
        except ContainerUnavailable as exc:
            raise HeadscaleError(str(exc)) from None
        return None if container is None else (container.id, read_file(container, path))

    def signal(self, name: str) -> int:
        """Send a signal to Headscale; returns the time (for logs since then)."""
        since = int(time.time()) - 1
        self._container().kill(signal=name)
        return since

    def wait_log(self, text: str, since: int, timeout: float = 30) -> None:
        """Wait for `text` in Headscale's log since `since`; an error logged with it is raised."""
        container = self._container()

        def log() -> list[str]:
            return container.logs(since=since).decode(errors="replace").splitlines()

        lines, logged = poll(log, lambda lines: any(text in line for line in lines), seconds=timeout, interval=0.5)
        if not logged:
            raise HeadscaleError(f"Headscale did not log {text!r} within {timeout:.0f}s")
        hit = max(i for i, line in enumerate(lines) if text in line)
        # What Headscale logs right after the reload: an error there means it kept the old policy.
        time.sleep(1)
        errors = [line for line in log()[hit:] if "ERR" in line and "policy" in line]
        if errors:
            raise HeadscaleError(f"Headscale did not load the policy: {errors[-1]}")

    def users(self) -> dict[str, str]:
        return {u["name"]: str(u["id"]) for u in self._run("users", "list") or []}

    def create_user(self, name: str) -> str:
        return str(self._run("users", "create", name)["id"])

    def destroy_user(self, user_id: str) -> None:
        self._run("users", "destroy", "--identifier", user_id, "--force")

    def create_key(self, user_id: str, tags: list[str], hours: int, reusable: bool) -> NewKey:
        args = ["preauthkeys", "create", "--user", user_id, "--expiration", f"{hours}h"]
        if reusable:
            args.append("--reusable")
        if tags:
            args += ["--tags", ",".join(tags)]
        made = self._run(*args)
        return NewKey(str(made["id"]), made["key"], _timestamp(made.get("expiration")))

    def expire_key(self, user_id: str, key: str) -> None:
        self._run("preauthkeys", "expire", "--user", user_id, key)

    def find_key(self, user_id: str, key_id: str) -> FoundKey | None:
        return _found_key(self._run("preauthkeys", "list", "--user", user_id) or [], key_id)

    def nodes_of_key(self, key_id: str) -> dict[str, str]:
        return _registered_with(self._run("nodes", "list") or [], key_id)

    def delete_node(self, node_id: str) -> None:
        self._run("nodes", "delete", "--identifier", node_id, "--force")


class ApiHeadscale:
    """An external Headscale's REST API (/api/v1), authenticated by an API key."""

    def __init__(self, url: str, api_key: str, timeout: float = 30, ca: str | None = None):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        # The system's CAs, and the control server's own where it has a private one.
        self.tls = ssl.create_default_context()
        if ca:
            self.tls.load_verify_locations(cadata=ca)

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/api/v1/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.tls) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            answer = _error_text(exc.read().decode(errors="replace"))
            if exc.code == 401:
                raise HeadscaleError(
                    f"Headscale at {self.url} refused the API key (401 Unauthorized): make a key with "
                    "`headscale apikeys create` and set it with pulumi config set --secret --path "
                    "tailnet.headscaleApiKey <key>"
                ) from None
            raise _refined(
                HeadscaleError(f"Headscale at {self.url}: {method} /api/v1/{path} answered {exc.code}: {answer}")
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
        return str(self._call("POST", "user", {"name": name})["user"]["id"])

    def destroy_user(self, user_id: str) -> None:
        self._call("DELETE", f"user/{user_id}")

    def create_key(self, user_id: str, tags: list[str], hours: int, reusable: bool) -> NewKey:
        body = {
            "user": user_id,
            "reusable": reusable,
            "ephemeral": False,
            "expiration": _expiry(hours).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aclTags": tags,
        }
        made = self._call("POST", "preauthkey", body)["preAuthKey"]
        return NewKey(str(made["id"]), made["key"], _timestamp(made.get("expiration")))

    def expire_key(self, user_id: str, key: str) -> None:
        self._call("POST", "preauthkey/expire", {"user": user_id, "key": key})

    def find_key(self, user_id: str, key_id: str) -> FoundKey | None:
        return _found_key(self._call("GET", f"preauthkey?user={user_id}").get("preAuthKeys", []), key_id)

    def nodes_of_key(self, key_id: str) -> dict[str, str]:
        return _registered_with(self._call("GET", "node").get("nodes", []), key_id)

    def delete_node(self, node_id: str) -> None:
        self._call("DELETE", f"node/{node_id}")


# Headscale's answers for what it does not have (0.27: "user not found", "AuthKey not found",
# "node not found"); a missing command or file says otherwise.
NOT_FOUND = re.compile(r"\b(user|authkey|pre-?auth ?key|node|record) not found", re.IGNORECASE)


def _refined(error: HeadscaleError) -> HeadscaleError:
    """The answers the providers act on: a user that exists already, or still has devices, or
    a user or key Headscale does not have."""
    text = str(error)
    if "already exists" in text or "UNIQUE constraint" in text:
        return UserExists(text)
    if "not empty" in text:
        return UserHasNodes(text)
    if NOT_FOUND.search(text):
        return NotFound(text)
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


def _instant(timestamp: str) -> datetime:
    """An RFC 3339 time (the seconds; Headscale's answers may carry nanoseconds)."""
    return datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def same_instant(one: str, other: str) -> bool:
    """Two RFC 3339 times, to the second (one from the CLI's JSON, the other from the REST API)."""
    try:
        return _instant(one) == _instant(other)
    except ValueError:
        return one == other


def _timestamp(value: Any) -> str:
    """Expiration as RFC 3339: protojson gives a string; the CLI's JSON a {seconds, nanos} object."""
    if isinstance(value, dict) and "seconds" in value:
        return datetime.fromtimestamp(int(value["seconds"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "")
