"""Quotas the backup disk enforces (issue 23): a loop-mounted btrfs storage root, a stack of three
shares deployed by the real engine. alice and bob are new (subvolumes with qgroup limits); carol's
directory was there before quotas (a plain directory with a backup in it), so `up` warns that her
quota is only advisory, and the migration in docs/operations.md moves it into a subvolume."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import smbclient
from smbprotocol.exceptions import SMBOSError, SMBResponseException

from tests.support.btrfs import loop_btrfs, qgroup
from tests.support.deploy import DATA_UID, deployed_stack, stack_config
from tests.support.network import unique_subnet
from tests.support.proxy_path import proxy_path
from tests.support.smb import GuestClient, MiB, read_file, write_file
from timemachine.dynamic.share_quota import enforced_limit
from timemachine.planning import names

pytestmark = pytest.mark.engine

NAME_PREFIX = "tm-quota"
QUOTA = 64 * MiB
# The qgroup limit: the quota the Mac is told and the headroom above it (share_quota.enforced_limit).
LIMIT = enforced_limit(QUOTA)
DISK = 768 * MiB
ROOT = Path(__file__).resolve().parents[2]
MIGRATE = ROOT / "scripts" / "migrate_share_to_subvolume.sh"
# NT_STATUS_DISK_FULL, and NT_STATUS_QUOTA_EXCEEDED, which smbd may map EDQUOT to instead.
FULL = {0xC000007F, 0xC0000044}


@pytest.fixture(scope="module")
def btrfs_root(tmp_path_factory):
    """A 768 MiB btrfs filesystem in a file, loop-mounted: the backup disk."""
    with loop_btrfs(tmp_path_factory.mktemp("btrfs"), DISK) as mount:
        yield mount


def plain_backup(root: Path, share: str) -> dict[str, str]:
    """A share directory as a stack before quotas made it (mkdir 0700, the data owner's), with files
    and an extended attribute in it, as a Mac's backup has: name → sha256."""
    directory = root / share
    (directory / "Mac.sparsebundle" / "bands").mkdir(parents=True)
    sums = {}
    for index in range(3):
        data = os.urandom(4 * MiB)
        band = directory / "Mac.sparsebundle" / "bands" / str(index)
        band.write_bytes(data)
        sums[f"Mac.sparsebundle/bands/{index}"] = hashlib.sha256(data).hexdigest()
    os.setxattr(directory / "Mac.sparsebundle" / "bands" / "0", "user.DosStream.test:$DATA", b"stream")
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, DATA_UID, DATA_UID)
        path.chmod(0o700 if path.is_dir() else 0o600)
    return sums


@pytest.fixture(scope="module")
def quota_stack(pulumi_env, docker_client, goproxy, btrfs_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("quota-stack")
    shares = [
        {"name": name, "owner": f"{name}@example.com", "quota": f"{QUOTA // MiB}M"}
        for name in ("alice", "bob", "carol")
    ]
    config = stack_config(
        btrfs_root,
        None,
        unique_subnet(docker_client),
        goproxy.build_args(),
        shares,
        name_prefix=NAME_PREFIX,
    )
    config["storage"] = {"quotaEnforcement": "auto", "reserve": "64M"}
    carol = plain_backup(btrfs_root, "carol")
    with deployed_stack(docker_client, pulumi_env, work, "quotas", config, up=False) as deployment:
        first = deployment.stack.up()
        yield {"deployment": deployment, "root": btrfs_root, "client": docker_client, "up": first, "carol": carol}


def quota_outputs(stack, share: str) -> dict:
    """The outputs of the share's storage step (its quota), as the stack's state holds them."""
    [found] = [r for r in stack.resources() if r["urn"].endswith(f"::{share}-storage")]
    return found["outputs"]


def backups(share: Path) -> dict[str, int]:
    """Each file of a share with its size; not the health checks' short-lived probe files."""
    return {p.name: p.stat().st_size for p in share.iterdir() if not p.name.startswith(".timemachine")}


def is_subvolume(path: Path) -> bool:
    return path.stat().st_ino == 256


def write_until_refused(client: GuestClient, share: str, name: str, limit: int) -> tuple[int, int]:
    """Write 1 MiB chunks to `name` until the server refuses one (or `limit` bytes): bytes written,
    and the NT status of the refusal (0: none)."""
    written = 0
    chunk = os.urandom(MiB)
    try:
        with smbclient.open_file(client.path(share, name), mode="wb", **client.kw()) as f:
            while written < limit:
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except SMBResponseException as error:
        return written, error.status
    except SMBOSError as error:
        return written, error.ntstatus
    return written, 0


def test_new_shares_are_subvolumes_limited_just_above_the_size_the_mac_is_told(quota_stack):
    root, client = quota_stack["root"], quota_stack["client"]
    assert LIMIT == 128 * MiB
    for share in ("alice", "bob"):
        assert is_subvolume(root / share), share
        assert qgroup(root / share)[1] == str(LIMIT), share
        envs = client.containers.get(names.samba_container(NAME_PREFIX, share)).attrs["Config"]["Env"]
        conf = next(e for e in envs if e.startswith("SMB_CONF="))
        assert f"fruit:time machine max size = {QUOTA // MiB}M" in conf
    # The capacity step reported the disk: its type, size and free space.
    out = quota_stack["up"].output
    assert f"storage {root}: btrfs, 768.0 MiB" in out and "free; quotas 192.0 MiB + reserve 64.0 MiB" in out, out


def test_a_share_at_its_quota_gets_disk_full_while_the_others_keep_writing(quota_stack):
    root, client = quota_stack["root"], quota_stack["client"]
    alice = client.containers.get(names.samba_container(NAME_PREFIX, "alice"))
    started = alice.attrs["State"]["StartedAt"]
    bob_before = backups(root / "bob")
    with proxy_path(client, ["alice", "bob"], name_prefix=NAME_PREFIX) as paths:
        (host, alice_port), (bob_host, bob_port) = paths["alice"], paths["bob"]
        smb = GuestClient(host, alice_port)
        try:
            written, status = write_until_refused(smb, "alice", "band.bin", 2 * LIMIT)
        finally:
            smb.close()
        # Refused with the disk-full status at the limit (past the size the Mac is told, not past the limit).
        assert status in FULL, hex(status)
        assert QUOTA < written <= LIMIT, written
        used, _limit = qgroup(root / "alice")
        assert used <= LIMIT
        # The other share takes a backup meanwhile, read back equal.
        data = os.urandom(16 * MiB)
        write_file(bob_host, "bob", "after-alice-full.bin", data, port=bob_port)
        assert read_file(bob_host, "bob", "after-alice-full.bin", port=bob_port) == data
        # alice's smbd is the same process, still serving her: a new session reads her share.
        alice.reload()
        assert alice.attrs["State"]["Running"] and alice.attrs["State"]["StartedAt"] == started
        assert alice.attrs["RestartCount"] == 0
        # Nothing of bob's changed but the new file.
        assert backups(root / "bob") == {**bob_before, "after-alice-full.bin": 16 * MiB}
        # Deleting over SMB at the limit removes the file, though smbd may answer it with the
        # disk-full status (a metadata step of the delete is refused at the limit); either way the
        # space is free again and the share takes a new write.
        smb = GuestClient(host, alice_port)
        try:
            smbclient.remove(smb.path("alice", "band.bin"), **smb.kw())
        except SMBOSError as error:
            assert error.ntstatus in FULL, hex(error.ntstatus)
        finally:
            smb.close()
        assert not (root / "alice" / "band.bin").exists()
        subprocess.run(["btrfs", "filesystem", "sync", str(root)], check=True)
        assert qgroup(root / "alice")[0] < MiB
        data = os.urandom(16 * MiB)
        write_file(host, "alice", "after-delete.bin", data, port=alice_port)
        assert read_file(host, "alice", "after-delete.bin", port=alice_port) == data


def test_quotas_over_the_disk_stop_up_with_the_numbers(quota_stack):
    stack, config = quota_stack["deployment"].stack, quota_stack["deployment"].config
    client = quota_stack["client"]
    ids = {c.name: c.id for c in client.containers.list(all=True, filters={"name": NAME_PREFIX})}
    over = {**config, "shares": [{**s, "quota": "700M"} if s["name"] == "bob" else s for s in config["shares"]]}
    stack.write_config(over)
    try:
        failed = stack.up(check=False)
        assert failed.code != 0
        # 64 + 700 + 64 MiB of quotas and the 64 MiB reserve: over the 768 MiB disk.
        assert (
            "the shares' quotas add up to 828.0 MiB (868220928 bytes) and storage.reserve is 64.0 MiB: 892.0 MiB, "
            "more than the 768.0 MiB (805306368 bytes) of the btrfs filesystem" in failed.output
        ), failed.output
        # bob's limit and every container as they were.
        assert qgroup(quota_stack["root"] / "bob")[1] == str(LIMIT)
        assert {c.name: c.id for c in client.containers.list(all=True, filters={"name": NAME_PREFIX})} == ids
    finally:
        stack.write_config(config)


def test_a_plain_directory_from_before_quotas_warns_and_migrates_to_a_subvolume(quota_stack):
    root, client, stack = quota_stack["root"], quota_stack["client"], quota_stack["deployment"].stack
    # The first `up` served carol's existing directory and said her quota is not enforced, and how to fix it.
    out = quota_stack["up"].output
    assert "is a plain directory from before quotas" in out and f"migrate_share_to_subvolume.sh {root} carol" in out
    assert not is_subvolume(root / "carol")
    stream = "user.DosStream.test:$DATA"
    assert os.getxattr(root / "carol/Mac.sparsebundle/bands/0", stream) == b"stream"

    migrated = subprocess.run(
        ["sh", str(MIGRATE), str(root), "carol", names.samba_container(NAME_PREFIX, "carol")],
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert is_subvolume(root / "carol")
    assert qgroup(root / "carol")[1] == str(LIMIT)
    # Nothing lost: every band over SMB with its checksum, its stream, modes and owner.
    assert os.getxattr(root / "carol/Mac.sparsebundle/bands/0", stream) == b"stream"
    band = root / "carol/Mac.sparsebundle/bands/1"
    assert (band.stat().st_uid, band.stat().st_mode & 0o777) == (DATA_UID, 0o600)
    with proxy_path(client, ["carol"], name_prefix=NAME_PREFIX) as paths:
        host, port = paths["carol"]
        for name, digest in quota_stack["carol"].items():
            assert hashlib.sha256(read_file(host, "carol", name.replace("/", "\\"), port=port)).hexdigest() == digest
        smb = GuestClient(host, port)
        try:
            _written, status = write_until_refused(smb, "carol", "more.bin", 2 * LIMIT)
        finally:
            smb.close()
        assert status in FULL, hex(status)
    # The stack read carol's quota as not enforced at first; after the migration and a refresh, as
    # enforced at its quota.
    assert quota_outputs(stack, "carol")["enforced"] is False and quota_outputs(stack, "carol")["warnings"]
    stack.up("--refresh")
    carol = quota_outputs(stack, "carol")
    assert {k: carol[k] for k in ("enforced", "limit")} == {"enforced": True, "limit": LIMIT}
    # No more "plain directory": only that carol, written up to her limit above, holds more than her quota.
    [warning] = carol["warnings"]
    assert "already holds" in warning and "over its quota of 64.0 MiB" in warning, warning
    stack.run("preview", "--expect-no-changes", *stack.stack_args())
    assert (root / ".carol.before-subvolume" / "Mac.sparsebundle").is_dir()
