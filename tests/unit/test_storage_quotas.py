"""The storage section of the config and the quota and capacity decisions (issue 23), as plain
functions: what is refused, with which field and fix, and what is enforced where."""

from __future__ import annotations

import pytest

from timemachine.config.loader import ConfigError, load
from timemachine.dynamic.share_quota import MIN_HEADROOM, NO_QUOTA, QuotaRefused, decide, enforced_limit
from timemachine.dynamic.share_storage import _ShareStorageProvider
from timemachine.dynamic.storage_capacity import over_committed, report
from timemachine.dynamic.storage_helper import Found
from timemachine.planning.units import human_size as human
from timemachine.samba.smbconf import format_size, render_smb_conf

GiB = 1024**3
SHARES = [{"name": "alice", "owner": "alice@example.com", "quota": "500G"}, {"name": "bob", "owner": "bob@example.com"}]


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(raw)
    return caught.value.problems


def test_storage_section_and_the_older_storage_root_both_give_the_root():
    new = load({"storage": {"root": "/srv/tm", "quotaEnforcement": "required", "reserve": "2G"}, "shares": SHARES[:1]})
    assert new.config.storage_root == "/srv/tm"
    assert (new.config.storage.quota_enforcement, new.config.storage.reserve) == ("required", 2 * GiB)
    old = load({"storageRoot": "/srv/tm", "shares": SHARES})
    assert old.config.storage_root == "/srv/tm"
    # The defaults: enforce where the filesystem can, 1 GiB kept free beyond the quotas.
    assert (old.config.storage.quota_enforcement, old.config.storage.reserve) == ("auto", GiB)
    assert old.config.total_quota == 500 * GiB
    # Both, the same: accepted.
    assert load({"storageRoot": "/srv/tm", "storage": {"root": "/srv/tm"}}).config.storage_root == "/srv/tm"


@pytest.mark.parametrize(
    ("raw", "path", "fix"),
    [
        ({}, "storage.root", "pulumi config set --path storage.root /srv/timemachine"),
        ({"storage": {"root": "srv/tm"}}, "storage.root", "relative; give an absolute path"),
        ({"storageRoot": "srv/tm"}, "storageRoot", "relative; give an absolute path"),
        ({"storageRoot": "/a", "storage": {"root": "/b"}}, "storage.root", "give the storage root once"),
        ({"storageRoot": "/a", "storage": {"quotaEnforcement": "strict"}}, "storage.quotaEnforcement", "'auto'"),
        ({"storageRoot": "/a", "storage": {"reserve": -1}}, "storage.reserve", "must not be negative"),
        ({"storageRoot": "/a", "storage": {"reserve": "lots"}}, "storage.reserve", "is not a size"),
        ({"storageRoot": "/a", "storage": {"quota": "1T"}}, "storage.quota", "unknown key"),
        (
            {"storageRoot": "/a", "storage": {"quotaEnforcement": "required"}, "shares": SHARES},
            "shares[1].quota",
            "pulumi config set --path 'shares[1].quota' 500G",
        ),
    ],
    ids=[
        "no root",
        "relative storage.root",
        "relative storageRoot",
        "two roots",
        "unknown enforcement",
        "negative reserve",
        "reserve not a size",
        "unknown storage key",
        "required without a quota",
    ],
)
def test_bad_storage_config_is_refused_naming_the_field_and_the_fix(raw, path, fix):
    found = problems(raw)
    assert any(p.startswith(f"{path}:") and fix in p for p in found), found


def test_reserved_samba_section_names_are_refused():
    for name in ("global", "homes", "printers"):
        found = problems({"storageRoot": "/a", "shares": [{"name": name, "owner": "a@example.com"}]})
        assert any(p.startswith("shares[0].name:") and "Samba reserves" in p for p in found), found


BTRFS = Found("btrfs", size=1000 * GiB, free=600 * GiB, kind="subvolume", quotas_on=True, limit=None, used=GiB)


def test_btrfs_subvolume_enforces_the_quota_as_its_limit():
    decision = decide("/srv/tm", "alice", 500 * GiB, "auto", BTRFS)
    # 1 % above what the Mac is told: 505 GiB.
    assert (decision.enforce, decision.limit, decision.warnings) == (True, str(505 * GiB), [])
    # Without a quota: the subvolume's limit is lifted, and the share is said to be unlimited.
    unlimited = decide("/srv/tm", "bob", None, "auto", BTRFS)
    assert (unlimited.enforce, unlimited.limit) == (True, "none")
    assert unlimited.warnings == [
        "share 'bob' has no quota: it can fill the 600.0 GiB free of /srv/tm (1000.0 GiB), and every share on it "
        "stops with it; give it one (shares[].quota)"
    ]


def test_a_share_already_over_a_new_lower_quota_is_said():
    decision = decide("/srv/tm", "alice", GiB // 2, "required", BTRFS)
    assert decision.enforce and "already holds 1.0 GiB, over its quota of 512.0 MiB" in decision.warnings[0]


@pytest.mark.parametrize(
    ("filesystem", "why"),
    [("xfs", "XFS: its project quotas are not supported"), ("ext2/ext3", "is ext2/ext3, where this project cannot")],
)
def test_where_the_filesystem_cannot_enforce_auto_warns_and_required_refuses(filesystem, why):
    found = Found(filesystem, size=1000 * GiB, free=600 * GiB, kind="directory")
    auto = decide("/srv/tm", "alice", 500 * GiB, "auto", found)
    assert not auto.enforce
    [warning] = auto.warnings
    assert warning.startswith(
        "share 'alice': its quota of 500.0 GiB is only what the Mac is told, not enforced: /srv/tm"
    )
    assert why in warning
    with pytest.raises(QuotaRefused) as refused:
        decide("/srv/tm", "alice", 500 * GiB, "required", found)
    assert "storage.quotaEnforcement is required" in str(refused.value) and why in str(refused.value)
    assert "set storage.quotaEnforcement: auto" in str(refused.value)


def test_a_plain_directory_on_btrfs_names_the_migration():
    found = Found("btrfs", size=1000 * GiB, free=600 * GiB, kind="directory")
    auto = decide("/srv/tm", "carol", 500 * GiB, "auto", found)
    assert not auto.enforce
    assert "sudo scripts/migrate_share_to_subvolume.sh /srv/tm carol" in auto.warnings[0]
    with pytest.raises(QuotaRefused, match="migrate_share_to_subvolume.sh /srv/tm carol"):
        decide("/srv/tm", "carol", 500 * GiB, "required", found)


def test_advisory_changes_nothing_on_the_disk_and_says_so():
    decision = decide("/srv/tm", "alice", 500 * GiB, "advisory", BTRFS)
    assert not decision.enforce and decision.limit is None
    assert "nothing on the disk stops a write past it" in decision.warnings[0]


def test_quotas_and_reserve_over_the_size_is_an_error_naming_the_numbers():
    disk = Found("btrfs", size=1000 * GiB, free=900 * GiB)
    assert over_committed("/srv/tm", 999 * GiB, GiB, disk) is None
    error = over_committed("/srv/tm", 999 * GiB, 2 * GiB, disk)
    assert error == (
        f"the shares' quotas add up to 999.0 GiB ({999 * GiB} bytes) and storage.reserve is 2.0 GiB: 1001.0 GiB, "
        f"more than the 1000.0 GiB ({1000 * GiB} bytes) of the btrfs filesystem at /srv/tm. Lower the quotas "
        "(shares[].quota) or storage.reserve, or give the storage root a larger disk"
    )
    assert report("/srv/tm", 999 * GiB, GiB, disk) == (
        "storage /srv/tm: btrfs, 1000.0 GiB, 900.0 GiB free; quotas 999.0 GiB + reserve 1.0 GiB"
    )


def test_human_sizes():
    assert [human(n) for n in (512, 1536 * 1024, 3 * GiB // 2, 5 * 1024 * GiB)] == [
        "512 B",
        "1.5 MiB",
        "1.5 GiB",
        "5.0 TiB",
    ]


def test_the_mac_is_told_the_quota_and_the_limit_lies_just_above_it():
    """At the qgroup limit btrfs refuses the xattr removal smbd makes before a delete: the Mac, told
    the quota, thins its backups before the limit is reached."""
    quota = 500 * GiB
    conf = render_smb_conf("alice", quota, "TimeCapsule8,119", allow_from="172.24.0.1")
    assert f"fruit:time machine max size = {format_size(quota)}" in conf
    assert decide("/srv/tm", "alice", quota, "auto", BTRFS).limit == str(enforced_limit(quota))
    assert enforced_limit(quota) == quota + quota // 100
    # Small quotas get at least MIN_HEADROOM (64 MiB) of room.
    assert enforced_limit(32 * 1024**2) == 32 * 1024**2 + MIN_HEADROOM == 96 * 1024**2


def test_a_storage_step_stored_before_it_held_the_quota_is_updated_once():
    """A share's storage step from before the quota moved into it (no `quota` in its state) is
    updated, so its quota is decided and set there — for a share without one too; once it holds one,
    the same inputs are no change; a refresh (its state against itself) sees none."""
    provider = _ShareStorageProvider()
    inputs = {
        "storage_root": "/srv/tm",
        "share": "alice",
        "data_uid": 1000,
        "image": "samba@sha256:1",
        "quota": NO_QUOTA,
        "quota_enforcement": "auto",
        "docker_host": "",
        "filesystem": None,
        "enforced": None,
        "limit": None,
        "warnings": None,
    }
    # As stored since quotas (the quota then a ShareQuota of its own): the directory's inputs only.
    stored_before = {
        k: inputs[k] for k in ("storage_root", "share", "data_uid", "image", "quota_enforcement", "docker_host")
    }
    before = provider.diff("/srv/tm/alice", stored_before, inputs)
    assert before.changes is True and not before.replaces and "quota" not in (before.stables or [])
    assert provider.diff("/srv/tm/alice", stored_before, stored_before).changes is False
    stored_now = {**inputs, "filesystem": "btrfs", "enforced": False, "limit": None, "warnings": ["no quota"]}
    assert provider.diff("/srv/tm/alice", stored_now, inputs).changes is False
    # A new quota updates in place; a new place replaces.
    assert provider.diff("/srv/tm/alice", stored_now, {**inputs, "quota": 2**30}).changes is True
    assert provider.diff("/srv/tm/alice", stored_now, {**inputs, "share": "bob"}).replaces == ["share"]
