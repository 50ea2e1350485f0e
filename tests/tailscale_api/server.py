"""Tailscale's API at the HTTP boundary, as the tailscale provider (terraform-provider-tailscale
v0.29.2 over tailscale-client-go v2.9.0) speaks it: create, read and delete auth keys
(`/api/v2/tailnet/{tailnet}/keys[/{id}]`) and the OAuth client-credentials exchange
(`/api/v2/oauth/token`). Every request is recorded; every key is minted by a `Minter` (the test's
Headscale), so a node given it really joins.

What it refuses, and how (status and a JSON `message`, the shape the API documents):
- no or an unknown credential: 401; an OAuth token without the scope the call needs: 403
  ("calling actor does not have enough permissions to perform this function", the API's text);
- tags the caller may not apply under the tailnet policy's `tagOwners`: 400 ("requested tags
  [tag:x] are invalid or not permitted", the API's text) — a user's token applies tags owned by
  that login or, for an admin, by autogroup:admin; an OAuth client applies its own tags and the
  tags they own, and must give tags at all;
- an expiry outside 1 s..90 days, a description longer than 50 characters or not alphanumeric,
  hyphens, underscores and spaces, a body without `capabilities.devices`: 400.
Messages not quoted above are this stand-in's own wording; the status codes are the API's.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

MAX_EXPIRY_SECONDS = 90 * 86400
DESCRIPTION = re.compile(r"[A-Za-z0-9 _-]{0,50}")
NO_PERMISSION = "calling actor does not have enough permissions to perform this function"
# Scopes that allow reading and writing auth keys (`all` is every scope).
WRITE_KEYS = {"auth_keys", "all"}
READ_KEYS = WRITE_KEYS | {"auth_keys:read", "all:read"}
TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class ApiUser:
    """The owner of an API access token: keys made with it are owned by this user."""

    login: str
    user_id: str
    admin: bool = True


@dataclass(frozen=True)
class OAuthClient:
    """An OAuth client: its secret, the scopes it was created with and its tags."""

    secret: str
    scopes: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Minted:
    """A key as the control server knows it."""

    id: str
    key: str


class Minter(Protocol):
    def mint(self, tags: list[str], reusable: bool, ephemeral: bool, expiry_seconds: int) -> Minted: ...
    def used(self, minted: Minted) -> bool: ...
    def revoke(self, minted: Minted) -> None: ...


@dataclass
class Recorded:
    """One request as the stand-in received it, and its answer."""

    method: str
    path: str
    # Who asked: "api-key:<login>", "oauth:<client id>", "token-exchange:<client id>" or "none".
    caller: str
    headers: dict[str, str]
    body: Any
    status: int
    answer: Any


@dataclass
class _Key:
    id: str
    minted: Minted
    owner: str  # "user:<login>" or "tailnet" (made through an OAuth client)
    user_id: str
    capabilities: dict
    expiry_seconds: int
    description: str
    created: datetime
    revoked: datetime | None = None

    @property
    def expires(self) -> datetime:
        return self.created + timedelta(seconds=self.expiry_seconds)


@dataclass
class _Token:
    client_id: str
    scopes: frozenset[str]
    expires: datetime


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
        # Who asked, once known (a refusal after the credential was accepted).
        self.caller = ""


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class TailscaleApi:
    """The stand-in; `start()` serves it on `host` (loopback by default), `url` is its base URL."""

    minter: Minter
    # The tailnet policy's tagOwners (tag → owners), as loaded in the tailnet the API stands for.
    tag_owners: Mapping[str, Sequence[str]]
    api_keys: Mapping[str, ApiUser] = field(default_factory=dict)
    oauth_clients: Mapping[str, OAuthClient] = field(default_factory=dict)
    tailnet: str = "example.com"
    host: str = "127.0.0.1"
    recorded: list[Recorded] = field(default_factory=list)
    keys: dict[str, _Key] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- serving -------------------------------------------------------------------------------

    def start(self) -> TailscaleApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                api._handle(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve  # noqa: N815 - http.server names

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="tailscale-api", daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self.host}:{self._server.server_address[1]}"

    # --- what the tests read -------------------------------------------------------------------

    def requests(self, method: str | None = None, path: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.recorded if (method is None or r.method == method) and r.path.startswith(path)]

    def changes(self) -> list[Recorded]:
        """The requests that change something: every method but GET."""
        return [r for r in self.requests() if r.method != "GET"]

    def clear(self) -> None:
        with self._lock:
            self.recorded.clear()

    def key_material(self) -> dict[str, str]:
        """Key id → the key itself, of every key minted."""
        with self._lock:
            return {k.id: k.minted.key for k in self.keys.values()}

    # --- the endpoints -------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(request.path).path
        headers = dict(request.headers.items())
        body: Any = None
        caller = "none"
        try:
            if path == "/api/v2/oauth/token" and request.command == "POST":
                body = dict(urllib.parse.parse_qsl(raw.decode()))
                caller, status, answer = self._token(headers, body)
            else:
                body = json.loads(raw) if raw.strip() else None
                caller, status, answer = self._api(request.command, path, headers, body)
        except ApiError as error:
            caller, status, answer = error.caller or caller, error.status, {"message": error.message}
        except json.JSONDecodeError as error:
            status, answer = 400, {"message": f"invalid JSON body: {error.msg}"}
        with self._lock:
            self.recorded.append(Recorded(request.command, path, caller, headers, body, status, answer))
        data = b"" if answer is None else json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _token(self, headers: dict[str, str], form: dict[str, str]) -> tuple[str, int, Any]:
        """The OAuth client-credentials exchange: the client in Basic auth or in the form."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, secret = urllib.parse.unquote(user), urllib.parse.unquote(password)
        caller = f"token-exchange:{client_id}"
        try:
            return caller, *self._grant(client_id, secret, form)
        except ApiError as error:
            error.caller = caller
            raise

    def _grant(self, client_id: str, secret: str, form: dict[str, str]) -> tuple[int, Any]:
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "grant_type must be client_credentials")
        client = self.oauth_clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            raise ApiError(401, "invalid client credentials")
        asked = set(form.get("scope", "").split())
        if asked - set(client.scopes):
            raise ApiError(400, f"scopes {sorted(asked - set(client.scopes))} are not granted to this client")
        token = "tskey-api-" + secrets.token_hex(16)
        scopes = frozenset(asked or client.scopes)
        with self._lock:
            self.tokens[token] = _Token(client_id, scopes, datetime.now(UTC) + timedelta(seconds=TOKEN_SECONDS))
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "scope": " ".join(sorted(scopes)),
        }
        return 200, answer

    def _caller(self, headers: dict[str, str]) -> tuple[str, ApiUser | None, _Token | None]:
        """Who the credential belongs to: an API key (Basic auth, the key as user name) or an
        OAuth access token (Bearer); 401 for none or an unknown one."""
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            key = base64.b64decode(auth[6:]).decode().partition(":")[0]
            if key in self.api_keys:
                return f"api-key:{self.api_keys[key].login}", self.api_keys[key], None
        elif auth.startswith("Bearer "):
            token = self.tokens.get(auth[7:])
            if token is not None and token.expires > datetime.now(UTC):
                return f"oauth:{token.client_id}", None, token
        raise ApiError(401, "API token invalid")

    def _api(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[str, int, Any]:
        match = re.fullmatch(r"/api/v2/tailnet/([^/]+)/keys(?:/([^/]+))?", path)
        if match is None:
            raise ApiError(404, f"the stand-in does not serve {method} {path}")
        caller, user, token = self._caller(headers)
        try:
            return caller, *self._keys(method, path, match, user, token, body)
        except ApiError as error:
            error.caller = caller
            raise

    def _keys(
        self, method: str, path: str, match: re.Match, user: ApiUser | None, token: _Token | None, body: Any
    ) -> tuple[int, Any]:
        tailnet, key_id = urllib.parse.unquote(match[1]), match[2]
        if tailnet not in ("-", self.tailnet):
            raise ApiError(404, f"tailnet {tailnet!r} not found")
        if method == "POST" and key_id is None:
            self._need(token, WRITE_KEYS)
            return 200, self._create(user, token, body)
        if method == "GET" and key_id is not None:
            self._need(token, READ_KEYS)
            return 200, self._describe(self._owned(user, key_id))
        if method == "DELETE" and key_id is not None:
            self._need(token, WRITE_KEYS)
            key = self._owned(user, key_id)
            if key.revoked is None:
                self.minter.revoke(key.minted)
                key.revoked = datetime.now(UTC)
            return 200, None
        raise ApiError(404, f"the stand-in does not serve {method} {path}")

    @staticmethod
    def _need(token: _Token | None, scopes: set[str]) -> None:
        # A user's API access token has that user's permissions (an admin's here); an OAuth token
        # only its scopes.
        if token is not None and not token.scopes & scopes:
            raise ApiError(403, NO_PERMISSION)

    def _owned(self, user: ApiUser | None, key_id: str) -> _Key:
        """A user's token sees that user's keys; an OAuth token the tailnet's."""
        key = self.keys.get(key_id)
        owner = f"user:{user.login}" if user else "tailnet"
        if key is None or key.owner != owner:
            raise ApiError(404, "key not found")
        return key

    def _create(self, user: ApiUser | None, token: _Token | None, body: Any) -> dict:
        if not isinstance(body, dict) or not isinstance((body.get("capabilities") or {}).get("devices"), dict):
            raise ApiError(400, "capabilities.devices is required")
        if body.get("keyType", "auth") != "auth":
            raise ApiError(400, f"the stand-in makes auth keys only, not {body['keyType']!r}")
        create = body["capabilities"]["devices"].get("create") or {}
        tags = sorted(create.get("tags") or [])
        expiry = int(body.get("expirySeconds") or 0) or MAX_EXPIRY_SECONDS
        description = body.get("description") or ""
        if not 0 < expiry <= MAX_EXPIRY_SECONDS:
            raise ApiError(400, f"expirySeconds {expiry} is out of range: 1 to {MAX_EXPIRY_SECONDS} (90 days)")
        if not DESCRIPTION.fullmatch(description):
            raise ApiError(400, "description: at most 50 alphanumeric characters, hyphens, underscores or spaces")
        if token is not None and not tags:
            raise ApiError(400, "auth keys made by an OAuth client must have tags")
        refused = [tag for tag in tags if not self._may_apply(user, token, tag)]
        if refused:
            raise ApiError(400, f"requested tags [{' '.join(refused)}] are invalid or not permitted")
        reusable, ephemeral = bool(create.get("reusable")), bool(create.get("ephemeral"))
        minted = self.minter.mint(tags, reusable, ephemeral, expiry)
        key = _Key(
            id="k" + secrets.token_hex(6) + "CNTRL",
            minted=minted,
            owner=f"user:{user.login}" if user else "tailnet",
            user_id=user.user_id if user else "",
            capabilities={
                "devices": {
                    "create": {
                        "reusable": reusable,
                        "ephemeral": ephemeral,
                        "preauthorized": bool(create.get("preauthorized")),
                        "tags": tags,
                    }
                }
            },
            expiry_seconds=expiry,
            description=description,
            created=datetime.now(UTC).replace(microsecond=0),
        )
        with self._lock:
            self.keys[key.id] = key
        return {**self._describe(key), "key": minted.key}

    def _may_apply(self, user: ApiUser | None, token: _Token | None, tag: str) -> bool:
        owners = self.tag_owners.get(tag)
        if owners is None:
            return False
        if user is not None:
            return user.login in owners or (user.admin and "autogroup:admin" in owners)
        assert token is not None
        client_tags = self.oauth_clients[token.client_id].tags
        return tag in client_tags or any(own in owners for own in client_tags)

    def _describe(self, key: _Key) -> dict:
        """A key as GET returns it: no key material; `invalid` once revoked, expired or, single-use,
        used (what the control server says)."""
        reusable = key.capabilities["devices"]["create"]["reusable"]
        invalid = (
            key.revoked is not None
            or key.expires <= datetime.now(UTC)
            or (not reusable and self.minter.used(key.minted))
        )
        out = {
            "id": key.id,
            "keyType": "auth",
            "description": key.description,
            "expirySeconds": key.expiry_seconds,
            "created": _time(key.created),
            "expires": _time(key.expires),
            "invalid": invalid,
            "capabilities": key.capabilities,
            "userId": key.user_id,
        }
        if key.revoked is not None:
            out["revoked"] = _time(key.revoked)
        return out
