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
from timemachine.headscale.versions import SUPPORTED_TEXT, VersionError, check_supported, keys_by_id

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
    def expire_key(self, user_id: str, key_id: str, key: str) -> None: ...
    def find_key(self, user_id: str, key_id: str) -> FoundKey | None: ...
    def nodes_of_key(self, key_id: str) -> dict[str, str]: ...
    def delete_node(self, node_id: str) -> None: ...


class FormatError(HeadscaleError):
    """Headscale answered in a form this client does not know (a field missing or renamed)."""


# Absent means empty: the CLI's JSON (Go's encoding/json over the API's messages, `omitempty`) leaves
# out false, zero and unset fields; the REST API (grpc-gateway) gives every field, unset as null.
MISSING = object()


def field(item: Any, names: tuple[str, ...], what: str, default: Any = MISSING) -> Any:
    """The first of `names` (one field in its CLI and REST spellings) in Headscale's answer for
    `what`. Missing, and no `default` (the CLI's omitted empty value): a FormatError naming the field,
    what it found instead, and the fix."""
    if not isinstance(item, Mapping):
        raise FormatError(f"Headscale's answer for {what} is {type(item).__name__}, not an object: {str(item)[:200]}")
    for name in names:
        if name in item:
            return item[name]
    if default is not MISSING:
        return default
    raise FormatError(
        f"Headscale's answer for {what} has no field {' / '.join(repr(n) for n in names)} (it has "
        f"{', '.join(sorted(map(str, item))) or 'none'}): this Headscale answers in a form this stack does not "
        f"know; run a supported release ({SUPPORTED_TEXT})"
    )


def listed(answer: Any, names: tuple[str, ...], what: str) -> list:
    """The list under `names` in an answer (the CLI gives the list itself, `null` when empty)."""
    if answer is None:
        return []
    if isinstance(answer, list):
        return answer
    items = field(answer, names, what)
    if items is None:
        return []
    if not isinstance(items, list):
        raise FormatError(f"Headscale's answer for {what}: {names[0]!r} is {type(items).__name__}, not a list")
    return items


def _found_key(keys: list[dict], key_id: str, strict: bool) -> FoundKey | None:
    """Key `key_id` among Headscale's answer for keys (the CLI's JSON or, `strict`, the REST API's,
    which gives every field)."""
    optional = MISSING if strict else None
    for key in keys:
        if str(field(key, ("id",), "a pre-auth key")) == str(key_id):
            used = field(key, ("used",), f"pre-auth key {key_id}", default=MISSING if strict else False)
            expiration = field(key, ("expiration",), f"pre-auth key {key_id}", default=optional)
            return FoundKey(bool(used), _timestamp(expiration))
    return None


KEY_OF_NODE = ("pre_auth_key", "preAuthKey")


def _registered_with(nodes: list[dict], key_id: str, strict: bool = False) -> dict[str, str]:
    """Node id → name of the nodes that registered with pre-auth key `key_id` (`strict`: the REST
    API's answer, which gives every field)."""
    # The CLI leaves the key out of a node that registered without one, but every node of this stack
    # registers with a key: nodes none of which has it are an answer in another form.
    if not strict and nodes and not any(name in node for node in nodes for name in KEY_OF_NODE):
        field(nodes[0], KEY_OF_NODE, f"node {nodes[0].get('id')} (no node has it)")
    found = {}
    for node in nodes:
        node_id = str(field(node, ("id",), "a node"))
        key = field(node, KEY_OF_NODE, f"node {node_id}", default=MISSING if strict else None)
        if key is None:
            continue
        if str(field(key, ("id",), f"the pre-auth key of node {node_id}")) == str(key_id):
            found[node_id] = field(node, ("given_name", "givenName"), f"node {node_id}")
    return found


def _user_ids(users: list[dict]) -> dict[str, str]:
    return {field(u, ("name",), "a user"): str(field(u, ("id",), "a user")) for u in users}


def _new_key(made: Any) -> NewKey:
    return NewKey(
        str(field(made, ("id",), "the new pre-auth key")),
        field(made, ("key",), "the new pre-auth key"),
        _timestamp(field(made, ("expiration",), "the new pre-auth key", default=None)),
    )


def connect(access: Mapping[str, Any]) -> Headscale:
    """The Headscale a resource's `access` input names: {container, docker_host} or {url, api_key}
    (and `ca`, the PEM of a private CA its certificate chains to)."""
    if access.get("container"):
        return ContainerHeadscale(access["container"], access.get("docker_host") or None)
    return ApiHeadscale(access["url"], access["api_key"], ca=access.get("ca"))


def _expiry(hours: int) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


# The CLI's deadline for one call to the server (Headscale's cli.timeout, 5 s unless set). Creating
# the keys of 100 shares from an empty state, beside 100 Samba containers starting on 2 cores, one
# `preauthkeys create` missed 5 s (DeadlineExceeded; scripts/bench_scale.py): the call may have
# been done by then, and a create is not repeated blindly, so the CLI waits longer instead. Given
# to each call that reaches the server (`version` and `policy check` do not), not in the config: a
# change there would replace the running Headscale container.
CLI_ENVIRONMENT = {"HEADSCALE_CLI_TIMEOUT": "60s"}


class ContainerHeadscale:
    """The embedded Headscale: `headscale … -o json` executed in its container."""

    # Headscale may still be starting (a replaced container): its socket answers within seconds.
    READY_SECONDS = 90

    def __init__(self, container: str, docker_host: str | None = None):
        self.container_name = container
        self.docker_host = docker_host
        self._version: str | None = None

    @property
    def version(self) -> str:
        """The release the container runs (`headscale version`), which decides the CLI's form."""
        if self._version is None:
            text = self.exec_plain("headscale", "version")[1]
            first = text.strip().splitlines()[0] if text.strip() else ""
            try:
                self._version = check_supported(first.removeprefix("headscale version").strip(), EMBEDDED)
            except VersionError as exc:
                raise HeadscaleError(str(exc)) from None
        return self._version

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
            lambda: exec_streams(container, "headscale", *args, "--output", "json", environment=CLI_ENVIRONMENT),
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
        return _user_ids(listed(self._run("users", "list"), ("users",), "the users"))

    def create_user(self, name: str) -> str:
        return str(field(self._run("users", "create", name), ("id",), f"the new user {name!r}"))

    def destroy_user(self, user_id: str) -> None:
        self._run("users", "destroy", "--identifier", user_id, "--force")

    def create_key(self, user_id: str, tags: list[str], hours: int, reusable: bool) -> NewKey:
        args = ["preauthkeys", "create", "--user", user_id, "--expiration", f"{hours}h"]
        if reusable:
            args.append("--reusable")
        if tags:
            args += ["--tags", ",".join(tags)]
        return _new_key(self._run(*args))

    def expire_key(self, user_id: str, key_id: str, key: str) -> None:
        """Expire a key; one Headscale no longer has counts as expired."""
        by_id = keys_by_id(self.version)
        args = ["--id", key_id] if by_id else ["--user", user_id, key]
        try:
            self._run("preauthkeys", "expire", *args)
        except NotFound:
            return

    def keys(self, user_id: str) -> list[dict]:
        """The pre-auth keys (from 0.28 every user's: they are listed by id, not by user)."""
        by_user = [] if keys_by_id(self.version) else ["--user", user_id]
        return listed(self._run("preauthkeys", "list", *by_user), ("pre_auth_keys",), "the pre-auth keys")

    def find_key(self, user_id: str, key_id: str) -> FoundKey | None:
        return _found_key(self.keys(user_id), key_id, strict=False)

    def nodes(self) -> list[dict]:
        return listed(self._run("nodes", "list"), ("nodes",), "the nodes")

    def nodes_of_key(self, key_id: str) -> dict[str, str]:
        return _registered_with(self.nodes(), key_id)

    def delete_node(self, node_id: str) -> None:
        """Delete a node; one Headscale no longer has counts as deleted."""
        try:
            self._run("nodes", "delete", "--identifier", node_id, "--force")
        except NotFound:
            return


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
        self._version: str | None = None

    @property
    def version(self) -> str:
        """Its release, from its public `/version` endpoint (0.27 and later), checked against the
        range this client speaks; it decides how keys are listed and expired."""
        if self._version is None:
            answer = self._call("GET", "/version", api=False)
            found = field(answer, ("version",), f"GET {self.url}/version")
            try:
                self._version = check_supported(str(found), f"Headscale at {self.url}")
            except VersionError as exc:
                raise HeadscaleError(str(exc)) from None
        return self._version

    def _call(self, method: str, path: str, body: dict | None = None, api: bool = True) -> Any:
        if api and self._version is None:
            # Its release first: one outside the range this client speaks is refused before any change.
            _ = self.version
        url = f"{self.url}/api/v1/{path}" if api else f"{self.url}{path}"
        request = urllib.request.Request(
            url,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.tls) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            answer = _error_text(exc.read().decode(errors="replace"))
            if exc.code == 404 and not api:
                raise HeadscaleError(
                    f"Headscale at {self.url} has no {path} endpoint (404): it is not a Headscale, or older "
                    f"than this stack works with ({SUPPORTED_TEXT}); check tailnet.controlUrl"
                ) from None
            if exc.code == 401:
                raise HeadscaleError(
                    f"Headscale at {self.url} refused the API key (401 Unauthorized): make a key with "
                    "`headscale apikeys create` and set it with pulumi config set --secret --path "
                    "tailnet.headscaleApiKey <key>"
                ) from None
            error = _refined(HeadscaleError(f"Headscale at {self.url}: {method} {url} answered {exc.code}: {answer}"))
            raise (NotFound(str(error)) if exc.code == 404 else error) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HeadscaleError(
                f"Headscale at {self.url} does not answer ({reason}); check tailnet.controlUrl and that it runs"
            ) from None
        try:
            return json.loads(text) if text else {}
        except ValueError:
            raise FormatError(
                f"Headscale at {self.url}: {method} {url} answered with no JSON ({text[:200]!r}); check "
                "tailnet.controlUrl names the Headscale server itself"
            ) from None

    def users(self) -> dict[str, str]:
        return _user_ids(listed(self._call("GET", "user"), ("users",), "the users"))

    def create_user(self, name: str) -> str:
        made = field(self._call("POST", "user", {"name": name}), ("user",), f"the new user {name!r}")
        return str(field(made, ("id",), f"the new user {name!r}"))

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
        return _new_key(field(self._call("POST", "preauthkey", body), ("preAuthKey",), "the new pre-auth key"))

    def expire_key(self, user_id: str, key_id: str, key: str) -> None:
        """Expire a key; one Headscale no longer has counts as expired."""
        body = {"id": key_id} if keys_by_id(self.version) else {"user": user_id, "key": key}
        try:
            self._call("POST", "preauthkey/expire", body)
        except NotFound:
            return

    def find_key(self, user_id: str, key_id: str) -> FoundKey | None:
        path = "preauthkey" if keys_by_id(self.version) else f"preauthkey?user={user_id}"
        return _found_key(listed(self._call("GET", path), ("preAuthKeys",), "the pre-auth keys"), key_id, strict=True)

    def nodes_of_key(self, key_id: str) -> dict[str, str]:
        return _registered_with(listed(self._call("GET", "node"), ("nodes",), "the nodes"), key_id, strict=True)

    def delete_node(self, node_id: str) -> None:
        """Delete a node; one Headscale no longer has counts as deleted."""
        try:
            self._call("DELETE", f"node/{node_id}")
        except NotFound:
            return


# Headscale's answers for what it does not have (0.27: "user not found", "AuthKey not found",
# "node not found"; 0.28: "auth-key not found"); a missing command or file says otherwise.
NOT_FOUND = re.compile(r"\b(user|auth-?key|pre-?auth ?key|node|record) not found", re.IGNORECASE)


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
