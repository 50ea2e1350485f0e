"""Headscale's versions: the upgrade path of the embedded one (refused before anything is declared when
a minor is skipped), the range an external one may run, the image's entrypoint keeping a copy of the
database before another release opens it, and the policy's `tests` as Headscale 0.29 can evaluate them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.project import ROOT
from timemachine.config.models import DEFAULT_HEADSCALE_VERSION, HEADSCALE_VERSIONS, StackConfig
from timemachine.headscale.config import render_headscale_config
from timemachine.headscale.versions import (
    HEADSCALE_CONTAINER,
    VERSION_LABEL,
    VersionError,
    check_supported,
    deployed_version,
    upgrade_problem,
)
from timemachine.tailnet.policy import SharePolicy, applicable_tests, render_policy, share_tags

ENTRYPOINT = ROOT / "images" / "headscale" / "entrypoint.sh"


def test_the_versions_offered_are_one_release_per_minor_oldest_first():
    minors = [tuple(int(p) for p in v.removeprefix("v").split(".")[:2]) for v in HEADSCALE_VERSIONS]
    assert minors == sorted(set(minors)) and [m[1] for m in minors] == [27, 28, 29]
    # New stacks get the newest (deployed ones keep theirs: kept_version).
    assert StackConfig(storage_root="/srv/tm").tailnet.headscale.version == DEFAULT_HEADSCALE_VERSION == "v0.29.3"


def test_a_version_the_stack_does_not_build_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"tailnet\.headscale\.version|version") as caught:
        StackConfig.model_validate({"storageRoot": "/srv/tm", "tailnet": {"headscale": {"version": "v0.30.0"}}})
    assert "v0.29.3" in str(caught.value)


@pytest.mark.parametrize(
    ("deployed", "wanted", "refused", "step"),
    [
        (None, "v0.29.3", False, None),
        ("v0.27.1", "v0.27.1", False, None),
        ("v0.27.1", "v0.28.0", False, None),
        ("v0.28.0", "v0.29.3", False, None),
        ("v0.27.1", "v0.29.3", True, "v0.28.0"),
        ("v0.29.3", "v0.28.0", True, "v0.29.3"),
        ("v0.28.0", "v0.27.1", True, "v0.28.0"),
    ],
)
def test_the_embedded_headscale_moves_one_minor_version_per_up(deployed, wanted, refused, step):
    problem = upgrade_problem(deployed, wanted)
    assert (problem is not None) is refused
    if refused:
        assert problem is not None and problem.startswith("tailnet.headscale.version:")
        assert f"tailnet.headscale.version to {step}" in problem and "docs/operations.md" in problem


def test_a_skipped_minor_names_each_step():
    problem = upgrade_problem("v0.27.1", "v0.29.3") or ""
    assert "v0.27.1 → v0.28.0 → v0.29.3" in problem


def container_state(labels: dict[str, str] | None) -> dict:
    urn = f"urn:pulumi:dev::tailscale-timemachine::{HEADSCALE_CONTAINER}::headscale-headscale"
    outputs = {"labels": [{"label": k, "value": v} for k, v in (labels or {}).items()]}
    return {urn: {"type": "docker:index/container:Container", "outputs": outputs}}


def test_the_deployed_version_is_read_from_the_state_label_and_unlabelled_is_the_old_default():
    assert deployed_version({}) is None
    assert deployed_version(container_state({VERSION_LABEL: "v0.28.0"})) == "v0.28.0"
    assert deployed_version(container_state({"timemachine.role": "headscale"})) == "v0.27.1"


@pytest.mark.parametrize("version", ["v0.27.1", "v0.28.0", "v0.29.3", "v0.29.0-beta.1"])
def test_an_external_headscale_in_the_range_is_accepted(version):
    assert check_supported(version, "Headscale at https://hs") == version


@pytest.mark.parametrize(
    ("version", "says"),
    [("v0.26.1", "upgrade it"), ("v0.30.0", "use a release in that range"), ("dev", "not a release")],
)
def test_an_external_headscale_outside_the_range_is_refused_with_what_to_do(version, says):
    with pytest.raises(VersionError) as caught:
        check_supported(version, "Headscale at https://hs")
    assert says in str(caught.value) and "v0.27.0 to v0.29.x" in str(caught.value)


def test_the_config_has_the_client_port_key_only_for_the_releases_that_take_it():
    for version, present in (("v0.27.1", True), ("v0.28.0", True), ("v0.29.3", False)):
        rendered = render_headscale_config("https://hs.example:8080", version=version)
        assert ("randomize_client_port" in rendered) is present, version


def run_entrypoint(tmp_path: Path, version: str, *command: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "HEADSCALE_VERSION": version,
        "HEADSCALE_CONFIG_DIR": str(tmp_path / "etc"),
        "HEADSCALE_STATE_DIR": str(tmp_path / "state"),
        "HEADSCALE_CONFIG_YAML": "server_url: https://hs",
    }
    return subprocess.run(["sh", str(ENTRYPOINT), *command], env=env, capture_output=True, text=True)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    state = tmp_path / "state"
    state.mkdir()
    (state / "db.sqlite").write_bytes(b"database of 0.27.1")
    (state / "db.sqlite-wal").write_bytes(b"its log")
    return tmp_path


def test_the_entrypoint_keeps_a_copy_named_by_the_old_release_before_the_next_one_serves(volume):
    state = volume / "state"
    done = run_entrypoint(volume, "v0.28.0", "sh", "-c", "echo headscale serve; cat $0", str(state / "db.sqlite"))
    assert done.returncode == 0, done.stderr
    # The command ran unchanged, after the copy.
    assert done.stdout == "headscale serve\ndatabase of 0.27.1"
    assert (state / "upgrade-backups" / "v0.27.1" / "db.sqlite").read_bytes() == b"database of 0.27.1"
    assert (state / "upgrade-backups" / "v0.27.1" / "db.sqlite-wal").read_bytes() == b"its log"
    assert (state / "headscale-version").read_text() == "v0.28.0\n"
    assert (volume / "etc" / "config.yaml").read_text() == "server_url: https://hs\n"
    # The next minor: a copy of the 0.28.0 database beside the first; the first is left alone.
    (state / "db.sqlite").write_bytes(b"database of 0.28.0")
    done = run_entrypoint(volume, "v0.29.3", "sh", "-c", "echo headscale serve")
    assert done.returncode == 0, done.stderr
    assert (state / "upgrade-backups" / "v0.28.0" / "db.sqlite").read_bytes() == b"database of 0.28.0"
    assert (state / "upgrade-backups" / "v0.27.1" / "db.sqlite").read_bytes() == b"database of 0.27.1"
    assert (state / "headscale-version").read_text() == "v0.29.3\n"


@pytest.mark.parametrize(("last", "version"), [("v0.27.1", "v0.29.3"), ("v0.29.3", "v0.28.0")])
def test_the_entrypoint_refuses_a_skipped_or_backward_step_and_touches_nothing(volume, last, version):
    state = volume / "state"
    (state / "headscale-version").write_text(last + "\n")
    done = run_entrypoint(volume, version, "sh", "-c", "echo headscale serve")
    assert done.returncode == 78 and done.stdout == ""
    assert f"refuses the database last used by {last}" in done.stderr and "tailnet.headscale.version" in done.stderr
    assert not (state / "upgrade-backups").exists()
    assert (state / "headscale-version").read_text() == last + "\n"


def test_the_entrypoint_leaves_other_commands_and_a_new_volume_alone(volume):
    state = volume / "state"
    done = run_entrypoint(volume, "v0.29.3", "echo", "policy", "check")
    assert done.returncode == 0 and done.stdout == "policy check\n"
    assert not (state / "headscale-version").exists() and not (state / "upgrade-backups").exists()
    (state / "db.sqlite").unlink()
    (state / "db.sqlite-wal").unlink()
    done = run_entrypoint(volume, "v0.29.3", "sh", "-c", "echo headscale serve")
    assert done.returncode == 0 and (state / "headscale-version").read_text() == "v0.29.3\n"
    assert not (state / "upgrade-backups").exists()


SHARES = [SharePolicy(f"tm-{n}", f"{n}@", share_tags(["tag:timemachine"], f"tm-{n}")) for n in ("alice", "bob")]


def test_the_headscale_policy_has_tests_from_0_29_each_owner_on_their_own_share_only():
    without = render_policy(SHARES, tag_owners=["admin@"], base_tags=["tag:timemachine"], self_hosted=True)
    assert "tests" not in without
    policy = render_policy(
        SHARES, tag_owners=["admin@"], base_tags=["tag:timemachine"], self_hosted=True, headscale_tests=True
    )
    assert policy["tests"] == [
        {"src": "alice@", "accept": ["tag:tm-alice:445"], "deny": ["tag:tm-bob:445"]},
        {"src": "bob@", "accept": ["tag:tm-bob:445"], "deny": ["tag:tm-alice:445"]},
    ]
    # Tag owners stay users and groups only, as Headscale requires.
    assert all(owners == ["admin@"] for owners in policy["tagOwners"].values())


def test_tests_wait_for_the_devices_headscale_resolves_them_to():
    policy = render_policy(
        SHARES, tag_owners=["admin@"], base_tags=["tag:timemachine"], self_hosted=True, headscale_tests=True
    )
    assert "tests" not in applicable_tests(policy, set(), set())
    assert "tests" not in applicable_tests(policy, {"alice@"}, set())
    only_alice = applicable_tests(policy, {"alice@"}, {"tag:tm-alice", "tag:timemachine"})
    assert only_alice["tests"] == [{"src": "alice@", "accept": ["tag:tm-alice:445"]}]
    everyone = applicable_tests(policy, {"alice@", "bob@"}, {"tag:tm-alice", "tag:tm-bob"})
    assert everyone == policy
    # Nothing else of the policy changes.
    assert {k: v for k, v in only_alice.items() if k != "tests"} == {k: v for k, v in policy.items() if k != "tests"}
    assert json.dumps(applicable_tests({"acls": []}, set(), set())) == '{"acls": []}'
