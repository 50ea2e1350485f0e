"""smb.conf (checked by the real testparm), Caddy JSON (golden files) and the tailnet policy."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from timemachine.caddy.config import ADMIN_SOCKET, assemble, auth_key_file, render, route_fragment
from timemachine.samba.smbconf import format_size, render_smb_conf
from timemachine.tailnet.policy import SharePolicy, render_policy, share_tags

GOLDEN = Path(__file__).parent / "golden"


def run_testparm(conf: str, tmp_path: Path, verbose: bool = False) -> dict:
    """Run the real testparm on a config; return its parsed sections (lower-cased keys); `verbose`
    includes every parameter's effective value, defaults too."""
    if not shutil.which("testparm"):
        pytest.fail("testparm is missing: apt-get install samba-common-bin (.ci/run installs it)")
    path = tmp_path / "smb.conf"
    path.write_text(conf)
    done = subprocess.run(["testparm", "-s", *(["-v"] if verbose else []), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Unknown parameter" not in done.stderr and "Ignoring unknown" not in done.stderr, done.stderr
    sections, current = {}, None
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and current is not None:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key.lower()] = value
    return sections


@pytest.mark.parametrize(
    "share,quota,model",
    [
        ("alice", 1024**4, "TimeCapsule8,119"),
        ("bob", 500 * 1024**3, "MacPro7,1@ECOLOR=226,226,224"),
        ("carol-2", None, "TimeCapsule8,119"),
        ("d", 1536 * 1024**2, "Xserve"),
    ],
)
def test_testparm_accepts_rendered_conf_with_expected_values(share, quota, model, tmp_path):
    parsed = run_testparm(render_smb_conf(share, quota, model, allow_from="172.24.0.254"), tmp_path)
    g, s = parsed["global"], parsed[share]
    assert g["server role"] == "standalone server"
    assert g["server min protocol"] == "SMB2"
    assert g["disable netbios"] == "Yes" and g["load printers"] == "No"
    assert g["map to guest"] == "Bad User" and g["guest account"] == "timemachine"
    assert g["fruit:aapl"] == "yes" and g["fruit:model"] == model
    # The AAPL server caps smbtorture's vfs.fruit expects: NFS_ACE and OSX_COPYFILE (tests/conformance).
    assert g["fruit:nfs_aces"] == "yes" and g["fruit:copyfile"] == "yes"
    assert g["fruit:metadata"] == "stream" and s["fruit:resource"] == "file"
    assert s["create mask"] == "0700" and s["directory mask"] == "0700"
    assert s["vfs objects"].split()[-2:] == ["fruit", "streams_xattr"]
    assert s["fruit:time machine"] == "yes"
    assert s["guest ok"] == "Yes" and s["read only"] == "No" and s["path"] == "/data"
    if quota is None:
        assert "fruit:time machine max size" not in s
    else:
        assert s["fruit:time machine max size"] == format_size(quota)
    assert list(parsed) == ["global", share]


def test_durability_settings_are_in_effect_on_the_share(tmp_path):
    """What durable handles need (smb.conf(5)) and what fruit:time machine enforces, as testparm
    reads them, so no default of another Samba version can change them."""
    parsed = run_testparm(
        render_smb_conf("alice", 1024**4, "TimeCapsule8,119", allow_from="172.24.0.254"), tmp_path, verbose=True
    )
    # A share lists only what differs from [global], whose -v listing has every default.
    g, s = parsed["global"], {**parsed["global"], **parsed["alice"]}
    assert g["smb2 leases"] == "Yes"
    assert s["durable handles"] == "Yes" and s["oplocks"] == "Yes"
    assert s["kernel oplocks"] == "No" and s["kernel share modes"] == "No" and s["posix locking"] == "No"
    assert s["strict sync"] == "Yes" and s["sync always"] == "No"


def test_negative_control_turns_time_machine_off(tmp_path):
    parsed = run_testparm(
        render_smb_conf("x", None, "TimeCapsule8,119", allow_from="172.24.0.254", time_machine=False), tmp_path
    )
    assert parsed["x"]["fruit:time machine"] == "no"


def test_rendering_is_deterministic():
    assert render_smb_conf("a", 1024, "m", allow_from="10.0.0.1") == render_smb_conf(
        "a", 1024, "m", allow_from="10.0.0.1"
    )


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
