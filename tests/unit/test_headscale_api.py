"""The REST client of an external Headscale (timemachine/headscale/api.py) against a real HTTP server on
loopback answering as Headscale's grpc-gateway does (every field, camelCase, ids as strings): the
version probe picks how keys are listed and expired, a version outside the range is refused before any
change, a missing or renamed field is an error naming it, and "not found" on expiring a key or deleting
a node counts as done."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from timemachine.headscale.api import (
    ApiHeadscale,
    FormatError,
    HeadscaleError,
    NotFound,
    _registered_with,
)


@dataclass
class Answer:
    status: int
    body: Any


@dataclass
class Server:
    """Canned answers by (method, path with query); every request recorded with its body."""

    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.answers[(method, path)] = Answer(status, body)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((self.command, self.path, body))
            found = state.answers.get((self.command, self.path), Answer(404, {"code": 5, "message": "Not Found"}))
            text = json.dumps(found.body).encode()
            self.send_response(found.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *_args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def version(release: str) -> dict:
    return {"version": release, "commit": "unknown", "buildTime": "unknown", "go": {}, "dirty": False}


def rest_key(key_id: str, used: bool, user: dict | None = None) -> dict:
    return {
        "user": user,
        "id": key_id,
        "key": f"hskey-auth-{key_id}-***",
        "reusable": False,
        "ephemeral": False,
        "used": used,
        "expiration": "2099-01-01T00:00:00Z",
        "createdAt": "2026-11-30T10:00:00Z",
        "aclTags": ["tag:tm-alice"],
    }


def rest_node(node_id: str, name: str, key: dict | None) -> dict:
    return {"id": node_id, "name": name, "givenName": name, "user": None, "preAuthKey": key, "tags": [], "online": True}


def without(item: dict, name: str) -> dict:
    return {k: v for k, v in item.items() if k != name}


def client(server: Server) -> ApiHeadscale:
    return ApiHeadscale(server.url, "hskey-api-x", timeout=5)


def test_0_29_lists_and_expires_keys_by_id(server):
    server.answer("GET", "/version", version("v0.29.3"))
    server.answer("GET", "/api/v1/preauthkey", {"preAuthKeys": [rest_key("4", False), rest_key("5", True)]})
    server.answer("POST", "/api/v1/preauthkey/expire", {})
    headscale = client(server)
    found = headscale.find_key("7", "5")
    assert found is not None and found.used and found.expiration == "2099-01-01T00:00:00Z"
    assert headscale.find_key("7", "6") is None
    headscale.expire_key("7", "5", "hskey-auth-5-secret")
    assert ("POST", "/api/v1/preauthkey/expire", {"id": "5"}) in server.requests
    # The probe once, with no credential needed (its public endpoint).
    assert [r for r in server.requests if r[1] == "/version"] == [("GET", "/version", None)]


def test_0_27_lists_keys_by_user_and_expires_by_user_and_key(server):
    server.answer("GET", "/version", version("v0.27.1"))
    server.answer("GET", "/api/v1/preauthkey?user=7", {"preAuthKeys": [rest_key("5", False)]})
    server.answer("POST", "/api/v1/preauthkey/expire", {})
    headscale = client(server)
    assert headscale.find_key("7", "5") is not None
    headscale.expire_key("7", "5", "the-key")
    assert ("POST", "/api/v1/preauthkey/expire", {"user": "7", "key": "the-key"}) in server.requests


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (version("v0.26.0"), "upgrade it"),
        (version("v0.30.1"), "use a release in that range"),
        (version("dev"), "not a release"),
        ({"release": "v0.29.3"}, "'version'"),
    ],
)
def test_a_headscale_outside_the_range_is_refused_before_any_change(server, answer, says):
    server.answer("GET", "/version", answer)
    for change in (lambda h: h.create_user("alice"), lambda h: h.expire_key("7", "5", "k")):
        with pytest.raises(HeadscaleError) as caught:
            change(client(server))
        assert says in str(caught.value)
    assert {r[1] for r in server.requests} == {"/version"}, "nothing asked of its API"


def test_no_version_endpoint_is_refused_naming_the_url(server):
    with pytest.raises(HeadscaleError, match="has no /version endpoint"):
        client(server).users()
    assert [r[1] for r in server.requests] == ["/version"]


def test_not_found_on_expiring_a_key_or_deleting_a_node_counts_as_done(server):
    server.answer("GET", "/version", version("v0.29.3"))
    server.answer("POST", "/api/v1/preauthkey/expire", {"code": 5, "message": "AuthKey not found"}, status=404)
    server.answer("DELETE", "/api/v1/node/9", {"code": 5, "message": "node not found"}, status=404)
    headscale = client(server)
    headscale.expire_key("7", "5", "k")
    headscale.delete_node("9")
    assert ("DELETE", "/api/v1/node/9", None) in server.requests


def test_other_failures_on_deleting_a_node_are_errors(server):
    server.answer("GET", "/version", version("v0.29.3"))
    server.answer("DELETE", "/api/v1/node/9", {"code": 13, "message": "database is locked"}, status=500)
    with pytest.raises(HeadscaleError, match="database is locked") as caught:
        client(server).delete_node("9")
    assert not isinstance(caught.value, NotFound)


@pytest.mark.parametrize(
    ("path", "answer", "call", "missing"),
    [
        ("/api/v1/user", {"users": [{"id": "1", "username": "alice"}]}, lambda h: h.users(), "'name'"),
        ("/api/v1/user", {"items": []}, lambda h: h.users(), "'users'"),
        ("/api/v1/user", {"user": {"name": "alice"}}, lambda h: h.create_user("alice"), "'id'"),
        (
            "/api/v1/preauthkey",
            {"preAuthKey": {"id": "3", "secret": "x", "expiration": None}},
            lambda h: h.create_key("1", [], 1, False),
            "'key'",
        ),
        (
            "/api/v1/node",
            {
                "nodes": [
                    {k: v for k, v in rest_node("3", "tm-alice", rest_key("9", True)).items() if k != "preAuthKey"}
                ]
            },
            lambda h: h.nodes_of_key("9"),
            "'pre_auth_key' / 'preAuthKey'",
        ),
    ],
)
def test_a_missing_or_renamed_field_is_an_error_naming_it(server, path, answer, call, missing):
    server.answer("GET", "/version", version("v0.29.3"))
    for method in ("GET", "POST"):
        server.answer(method, path, answer)
    with pytest.raises(FormatError) as caught:
        call(client(server))
    assert missing in str(caught.value) and "v0.27.0 to v0.29.x" in str(caught.value)


def test_a_renamed_used_flag_in_the_rest_answer_is_an_error(server):
    server.answer("GET", "/version", version("v0.29.3"))
    renamed = without(rest_key("5", True), "used") | {"isUsed": True}
    server.answer("GET", "/api/v1/preauthkey", {"preAuthKeys": [renamed]})
    with pytest.raises(FormatError, match="'used'"):
        client(server).find_key("7", "5")


def test_the_nodes_of_a_key_in_the_rest_answer(server):
    server.answer("GET", "/version", version("v0.29.3"))
    nodes = [rest_node("3", "tm-alice", rest_key("9", True)), rest_node("4", "alice-mac", None)]
    server.answer("GET", "/api/v1/node", {"nodes": nodes})
    assert client(server).nodes_of_key("9") == {"3": "tm-alice"}
    assert client(server).nodes_of_key("10") == {}


def test_a_cli_answer_where_no_node_carries_its_key_is_an_error():
    # The CLI leaves out a node's unset key; every node of the stack registers with one.
    renamed = [{"id": 3, "given_name": "tm-alice", "auth_key": {"id": 9}}]
    with pytest.raises(FormatError, match="'pre_auth_key'"):
        _registered_with(renamed, "9")
    assert _registered_with([], "9") == {}


def test_every_cli_call_of_the_embedded_headscale_carries_the_programs_deadline(monkeypatch):
    """The CLI's own 5 s deadline is too short for a busy server (one key create missed it at 100
    shares): each call runs with HEADSCALE_CLI_TIMEOUT (the real CLI honours it:
    tests/tailnet/test_embedded.py)."""
    from timemachine.headscale import api

    calls: list[tuple[list[str], dict]] = []

    class Container:
        def exec_run(self, command, demux, environment):
            calls.append((command, environment))
            return 0, (json.dumps([{"id": 1, "name": "alice"}]).encode(), b"")

    monkeypatch.setattr(api, "running_container", lambda *_args: Container())
    assert api.ContainerHeadscale("tm-headscale").users() == {"alice": "1"}
    assert calls == [(["headscale", "users", "list", "--output", "json"], {"HEADSCALE_CLI_TIMEOUT": "60s"})]
