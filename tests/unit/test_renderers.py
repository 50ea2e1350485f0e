"""smb.conf (as rendered; tests/conformance runs the image's testparm), Caddy JSON (golden files) and the
tailnet policy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.project import ROOT
from timemachine.caddy.config import ADMIN_SOCKET, assemble, auth_key_file, render, route_fragment
from timemachine.samba.smbconf import format_size, render_smb_conf
from timemachine.tailnet.policy import SharePolicy, render_policy, share_tags

GOLDEN = Path(__file__).parent / "golden"


def sections(conf: str) -> dict[str, dict[str, str]]:
    """The rendered smb.conf's sections and their options, as written. What Samba makes of them is
    checked by the image's own testparm (tests/conformance/test_smb_conf.py: the host's testparm
    is another Samba release)."""
    parsed: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in conf.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = parsed.setdefault(line[1:-1], {})
        elif " = " in line:
            key, value = line.split(" = ", 1)
            assert key not in current, f"{key} set twice"
            current[key] = value
    return parsed


@pytest.mark.parametrize(
    "share,quota,model",
    [
        ("alice", 1024**4, "TimeCapsule8,119"),
        ("bob", 500 * 1024**3, "MacPro7,1@ECOLOR=226,226,224"),
        ("carol-2", None, "TimeCapsule8,119"),
        ("d", 1536 * 1024**2, "Xserve"),
    ],
)
def test_rendered_conf_has_the_expected_values(share, quota, model):
    parsed = sections(render_smb_conf(share, quota, model, allow_from="172.24.0.254"))
    g, s = parsed["global"], parsed[share]
    assert g["server role"] == "standalone server"
    assert g["server min protocol"] == "SMB2"
    assert g["disable netbios"] == "yes" and g["load printers"] == "no"
    assert g["map to guest"] == "Bad User" and g["guest account"] == "timemachine"
    assert g["fruit:aapl"] == "yes" and g["fruit:model"] == model
    # The AAPL server caps smbtorture's vfs.fruit expects: NFS_ACE and OSX_COPYFILE (tests/conformance).
    assert g["fruit:nfs_aces"] == "yes" and g["fruit:copyfile"] == "yes"
    assert g["fruit:metadata"] == "stream" and s["fruit:resource"] == "file"
    # Removed in Samba 4.22.0 (testparm would take it silently); fruit:posix_opens stands in its place.
    assert "fruit:posix_rename" not in g and g["fruit:posix_opens"] == "yes"
    assert s["create mask"] == "0700" and s["directory mask"] == "0700"
    assert s["vfs objects"].split()[-2:] == ["fruit", "streams_xattr"]
    assert s["fruit:time machine"] == "yes"
    assert s["guest ok"] == "yes" and s["read only"] == "no" and s["path"] == "/data"
    # What durable handles need (smb.conf(5)) and what fruit:time machine enforces, set explicitly
    # so no default of another Samba release can change them.
    assert g["smb2 leases"] == "yes"
    assert s["durable handles"] == "yes" and s["oplocks"] == "yes"
    assert s["kernel oplocks"] == "no" and s["kernel share modes"] == "no" and s["posix locking"] == "no"
    assert s["strict sync"] == "yes" and s["sync always"] == "no"
    if quota is None:
        assert "fruit:time machine max size" not in s
    else:
        assert s["fruit:time machine max size"] == format_size(quota)
    assert list(parsed) == ["global", share]


def test_every_setting_says_why():
    """smbconf.py keeps a reason beside each setting: every option line of the two sections follows
    a comment line or another option of its group."""
    source = (ROOT / "timemachine" / "samba" / "smbconf.py").read_text()
    rendered = sections(render_smb_conf("alice", 1024, "m", allow_from="10.0.0.1"))
    for key in {**rendered["global"], **rendered["alice"]}:
        if key in ("path", "comment", "fruit:time machine max size"):
            continue
        at = source.index(f'"{key}":')
        before = source[:at].rstrip().splitlines()[-1].strip()
        assert before.startswith("#") or before.endswith(",") or before.endswith("{"), key


def test_negative_control_turns_time_machine_off():
    parsed = sections(render_smb_conf("x", None, "TimeCapsule8,119", allow_from="172.24.0.254", time_machine=False))
    assert parsed["x"]["fruit:time machine"] == "no"


def test_rendering_does_not_depend_on_the_interpreter_run():
    """The same smb.conf from fresh interpreters with other hash seeds (set and dict order of str),
    so a config that did not change never shows as a change in a preview."""
    script = (
        "from timemachine.samba.smbconf import render_smb_conf as r; print(r('a', 1024, 'm', allow_from='10.0.0.1'))"
    )
    rendered = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert rendered == {render_smb_conf("a", 1024, "m", allow_from="10.0.0.1") + "\n"}


def test_format_size_picks_the_largest_exact_unit():
    assert [format_size(n) for n in (1024**4, 500 * 1024**3, 1536 * 1024**2, 1024, 1000)] == [
        "1T",
        "500G",
        "1536M",
        "1K",
        "1000",
    ]


def dev_fragments(port=False):
    return [
        route_fragment(
            "alice",
            "tm-alice",
            "172.24.0.241",
            tags=share_tags(["tag:timemachine"], "tm-alice"),
            port=41882 if port else None,
        ),
        route_fragment(
            "bob",
            "tm-bob",
            "172.24.0.20",
            tags=share_tags(["tag:timemachine"], "tm-bob"),
            control_url="https://headscale.example.com",
            port=41661 if port else None,
        ),
    ]


@pytest.mark.parametrize("mode", ["host", "bridge"])
def test_caddy_config_matches_golden(mode):
    text = render(assemble(dev_fragments(port=mode == "bridge")))
    assert text == (GOLDEN / f"caddy-{mode}.json").read_text()


def test_admin_endpoint_is_only_a_unix_socket_and_configs_are_autosaved():
    admin = assemble(dev_fragments())["admin"]
    assert admin == {"listen": f"unix/{ADMIN_SOCKET}", "config": {"persist": True}}
    assert ADMIN_SOCKET.startswith("/") and "disabled" not in admin


def test_assembly_is_order_independent_and_rejects_duplicates():
    a, b = dev_fragments()
    assert render(assemble([a, b])) == render(assemble([b, a]))
    with pytest.raises(ValueError, match="twice"):
        assemble([a, a])


def test_fragment_carries_only_a_placeholder_for_the_key():
    fragment = route_fragment("alice", "tm-alice", "172.24.0.9", tags=["tag:a"])
    node = fragment["tailscale"]["nodes"]["tm-alice"]
    assert node["auth_key"] == "{file./data/keys/tm-alice}" == f"{{file.{auth_key_file('tm-alice')}}}"
    assert fragment["layer4"]["servers"]["alice"]["listen"] == ["tailscale/tm-alice:445"]
    assert fragment["layer4"]["servers"]["alice"]["routes"][0]["handle"][0] == {
        "handler": "proxy",
        "upstreams": [{"dial": ["172.24.0.9:445"]}],
    }


def test_empty_stack_config_is_valid_json():
    assert json.loads(render(assemble([])))["apps"] == {"layer4": {"servers": {}}, "tailscale": {"nodes": {}}}


BASE = ["tag:timemachine"]


def shares_policy(*owners: tuple[str, str]) -> list[SharePolicy]:
    return [SharePolicy(f"tm-{name}", owner, share_tags(BASE, f"tm-{name}")) for name, owner in owners]


def test_tailscale_policy_lets_each_owner_reach_only_their_share_and_tests_it():
    policy = render_policy(
        shares_policy(("bob", "bob@example.com"), ("alice", "alice@example.com")),
        tag_owners=["autogroup:admin"],
        base_tags=BASE,
        self_hosted=False,
    )
    # Per-share tags are also owned by the base tag: an OAuth client tagged tag:timemachine may mint them.
    assert policy["tagOwners"] == {
        "tag:timemachine": ["autogroup:admin"],
        "tag:tm-alice": ["autogroup:admin", "tag:timemachine"],
        "tag:tm-bob": ["autogroup:admin", "tag:timemachine"],
    }
    assert policy["acls"] == [
        {"action": "accept", "src": ["alice@example.com"], "dst": ["tag:tm-alice:445"]},
        {"action": "accept", "src": ["bob@example.com"], "dst": ["tag:tm-bob:445"]},
    ]
    assert policy["tests"] == [
        {"src": "alice@example.com", "accept": ["tag:tm-alice:445"], "deny": ["tag:tm-bob:445"]},
        {"src": "bob@example.com", "accept": ["tag:tm-bob:445"], "deny": ["tag:tm-alice:445"]},
    ]
    assert "grants" not in policy, "Headscale 0.27 refuses grants"


def test_policy_tests_skip_group_owners_but_deny_their_shares_to_others():
    policy = render_policy(
        shares_policy(("alice", "alice@example.com"), ("alice2", "alice@example.com"), ("family", "group:family")),
        tag_owners=["autogroup:admin"],
        base_tags=BASE,
        self_hosted=False,
    )
    assert policy["tests"] == [
        {"src": "alice@example.com", "accept": ["tag:tm-alice:445"], "deny": ["tag:tm-family:445"]},
        {"src": "alice@example.com", "accept": ["tag:tm-alice2:445"], "deny": ["tag:tm-family:445"]},
    ]


def test_headscale_policy_has_user_tag_owners_and_no_tests():
    policy = render_policy(
        shares_policy(("alice", "alice@"), ("bob", "bob@")), tag_owners=["admin@"], base_tags=BASE, self_hosted=True
    )
    assert policy["tagOwners"] == {t: ["admin@"] for t in ("tag:timemachine", "tag:tm-alice", "tag:tm-bob")}
    assert policy["acls"] == [
        {"action": "accept", "src": ["alice@"], "dst": ["tag:tm-alice:445"]},
        {"action": "accept", "src": ["bob@"], "dst": ["tag:tm-bob:445"]},
    ]
    assert "tests" not in policy
