"""The status page's pure parts: its Caddy route, its policy rule and tests, smbd admitting the status
container, the status image's context, and reading a tsnet node's identity."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from timemachine.caddy.config import assemble, route_fragment, status_route_fragment
from timemachine.components.images import context_digest, local_image_name
from timemachine.components.status import STATUS_SOURCES, credentials_file, shares_json
from timemachine.planning.node_state import registered_node_id
from timemachine.samba.smbconf import CREDENTIALS_PATH, render_smb_conf
from timemachine.tailnet.policy import SharePolicy, StatusPolicy, render_policy

ROOT = Path(__file__).resolve().parents[2]


def test_the_status_route_is_an_http_server_on_the_node_proxying_to_the_container():
    fragment = status_route_fragment("tm-status", "172.24.0.252", 9110, tags=["tag:tm-status", "tag:timemachine"])
    node = fragment["tailscale"]["nodes"]["tm-status"]
    assert node["auth_key"] == "{file./data/keys/tm-status}" and node["state_dir"] == "/data/tailscale/tm-status"
    assert node["tags"] == ["tag:timemachine", "tag:tm-status"]
    server = fragment["http"]["servers"]["status"]
    assert server["listen"] == ["tailscale/tm-status:80"]
    assert server["automatic_https"] == {"disable": True}
    get, refuse = server["routes"]
    assert get["match"] == [{"method": ["GET", "HEAD"]}]
    assert get["handle"] == [{"handler": "reverse_proxy", "upstreams": [{"dial": "172.24.0.252:9110"}]}]
    assert refuse["handle"] == [{"handler": "static_response", "status_code": 405}]


def test_assemble_adds_the_http_app_only_with_a_page():
    share = route_fragment("alice", "tm-alice", "172.24.0.10", tags=["tag:tm-alice"])
    without = assemble([share])
    assert set(without["apps"]) == {"layer4", "tailscale"}
    page = status_route_fragment("tm-status", "172.24.0.252", 9110, tags=["tag:tm-status"], port=41893)
    with_page = assemble([share, page])
    assert set(with_page["apps"]) == {"layer4", "tailscale", "http"}
    assert set(with_page["apps"]["tailscale"]["nodes"]) == {"tm-alice", "tm-status"}
    assert with_page["apps"]["tailscale"]["nodes"]["tm-status"]["port"] == 41893
    assert with_page["apps"]["layer4"] == without["apps"]["layer4"]
    with pytest.raises(ValueError, match="'status' twice"):
        assemble([page, status_route_fragment("tm-other", "172.24.0.9", 9110, tags=[])])


def test_the_policy_lets_only_the_admins_reach_the_page_and_says_so_in_its_tests():
    shares = [
        SharePolicy("tm-alice", "alice@example.com", ["tag:timemachine", "tag:tm-alice"]),
        SharePolicy("tm-admin", "admin@example.com", ["tag:timemachine", "tag:tm-admin"]),
        SharePolicy("tm-kids", "group:kids", ["tag:timemachine", "tag:tm-kids"]),
    ]
    status = StatusPolicy("tm-status", ["admin@example.com", "group:it"], ["tag:timemachine", "tag:tm-status"])
    policy = render_policy(
        shares, tag_owners=["autogroup:admin"], base_tags=["tag:timemachine"], self_hosted=False, status=status
    )
    assert policy["acls"][-1] == {
        "action": "accept",
        "src": ["admin@example.com", "group:it"],
        "dst": ["tag:tm-status:80"],
    }
    assert policy["tagOwners"]["tag:tm-status"] == ["autogroup:admin", "tag:timemachine"]
    page_tests = [t for t in policy["tests"] if "tag:tm-status:80" in t.get("accept", []) + t.get("deny", [])]
    assert page_tests == [
        {"src": "admin@example.com", "accept": ["tag:tm-status:80"]},
        {"src": "alice@example.com", "deny": ["tag:tm-status:80"]},
    ]
    # No page: the policy is exactly the one without it.
    assert render_policy(shares, tag_owners=["autogroup:admin"], base_tags=["tag:timemachine"], self_hosted=False) == {
        **policy,
        "acls": policy["acls"][:-1],
        "tests": [t for t in policy["tests"] if t not in page_tests],
        "tagOwners": {k: v for k, v in policy["tagOwners"].items() if k != "tag:tm-status"},
    }
    hosted = render_policy(
        shares, tag_owners=["admin@"], base_tags=["tag:timemachine"], self_hosted=True, status=status
    )
    assert "tests" not in hosted and hosted["tagOwners"]["tag:tm-status"] == ["admin@"]


@pytest.mark.skipif(shutil.which("testparm") is None, reason="testparm (samba-common-bin) is not installed")
def test_smbd_admits_the_status_container_and_testparm_reads_it(tmp_path):
    conf = render_smb_conf("alice", None, "TimeCapsule8,119", allow_from="172.24.0.254", also_allow=["172.24.0.252"])
    (tmp_path / "smb.conf").write_text(conf)
    done = subprocess.run(
        [
            "testparm",
            "--suppress-prompt",
            "--parameter-name=hosts allow",
            "--section-name=global",
            str(tmp_path / "smb.conf"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["172.24.0.254", "172.24.0.252", "127.0.0.1"]
    assert "hosts allow = 172.24.0.254 172.24.0.252 127.0.0.1" in conf


def test_the_status_image_context_lets_through_exactly_the_sources_it_hashes():
    ignore = (ROOT / "images/status/Dockerfile.dockerignore").read_text()
    allowed = {line[1:] for line in ignore.splitlines() if line.startswith("!")}
    assert allowed == set(STATUS_SOURCES)
    assert "*" in ignore.splitlines() and "**/__pycache__" in ignore.splitlines()
    dockerfile = (ROOT / "images/status/Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) /opt/timemachine/", dockerfile, re.M))
    assert copied == set(STATUS_SOURCES)


def test_a_changed_health_source_gives_the_status_image_a_new_tag(tmp_path, monkeypatch):
    import timemachine.components.images as images

    package = tmp_path / "timemachine"
    for source in STATUS_SOURCES:
        target = package / source
        if (ROOT / "timemachine" / source).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("x")
        else:
            (target / "__pycache__").mkdir(parents=True)
            (target / "mod.py").write_text("a = 1\n")
            (target / "__pycache__" / "mod.pyc").write_bytes(b"junk")
    monkeypatch.setattr(images, "PACKAGE_DIR", package)
    before = context_digest(ROOT / "images/status", None, STATUS_SOURCES)
    (package / "health" / "__pycache__" / "mod.pyc").write_bytes(b"other junk")
    assert context_digest(ROOT / "images/status", None, STATUS_SOURCES) == before, "bytecode is not source"
    (package / "health" / "mod.py").write_text("a = 2\n")
    assert context_digest(ROOT / "images/status", None, STATUS_SOURCES) != before
    # Without sources the digest is the folder's alone, as for the other images.
    assert local_image_name("samba") == f"tailscale-timemachine/samba:{context_digest(ROOT / 'images/samba')}"


def test_password_shares_are_probed_with_the_credentials_the_samba_container_uses():
    assert credentials_file("alice") == "/samba/alice/private/timemachine.credentials"
    assert CREDENTIALS_PATH == "/var/lib/samba/private/timemachine.credentials"
    healthcheck = (ROOT / "images/samba/healthcheck.sh").read_text()
    assert f"--authentication-file={CREDENTIALS_PATH}" in healthcheck
    parsed = json.loads(shares_json([]))
    assert parsed == {"caddyStateDir": "/caddy/tailscale", "shares": []}


def state(profiles: object) -> bytes:
    encoded = base64.b64encode(json.dumps(profiles).encode()).decode()
    return json.dumps({"_machinekey": "bWFjaGluZQ==", "_profiles": encoded}).encode()


def test_a_node_is_registered_when_a_login_profile_has_a_node_id():
    assert (
        registered_node_id(state({"a1b2": {"ID": "a1b2", "NodeID": "nA1b2CNTRL", "Name": "tm-alice"}})) == "nA1b2CNTRL"
    )
    assert registered_node_id(state({})) is None
    assert registered_node_id(state({"a1b2": {"ID": "a1b2", "NodeID": ""}})) is None
    assert registered_node_id(json.dumps({"_machinekey": "eA=="}).encode()) is None
    assert registered_node_id(b"not json") is None
    assert registered_node_id(json.dumps({"_profiles": "%%%"}).encode()) is None
    assert registered_node_id(state(["not", "a", "map"])) is None
