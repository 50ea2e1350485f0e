"""A share serves only from the intended backup disk, and never with backups another uid owns
(issue 15, items 1 and 4). Its own one-share stack, with a namePrefix of its own.

The backup disk is the temp directory `disk` with the marker; "unmounted" is what the host then
shows at the mount point: an empty directory on the root filesystem (the disk moved aside)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import docker
import pytest

from tests.support.containers import wait_healthy
from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet
from tests.support.proxy_path import proxy_path
from tests.support.smb import GuestClient, read_file, write_file
from timemachine.dynamic.storage_helper import MARKER_NAME
from timemachine.planning import names

pytestmark = pytest.mark.engine

SHARE = "alice"
NAME_PREFIX = "tm-storage"
CONTAINER = names.samba_container(NAME_PREFIX, SHARE)
OLD_UID, NEW_UID = 1234, 4321


@pytest.fixture(scope="module")
def disk(pulumi_env, docker_client, goproxy, tmp_path_factory):
    work = tmp_path_factory.mktemp("storage-guard")
    root = work / "disk"
    config = stack_config(
        root,
        f"{NAME_PREFIX}-{uuid.uuid4().hex[:6]}",
        unique_subnet(docker_client),
        goproxy.build_args(),
        [{"name": SHARE, "owner": "alice@example.com"}],
        name_prefix=NAME_PREFIX,
    )
    try:
        with deployed_stack(docker_client, pulumi_env, work / "stack", "storageguard", config) as deployment:
            yield {"stack": deployment.stack, "config": config, "root": root, "client": docker_client}
    finally:
        # What a test left beside the disk (the moved-aside disk of `unmounted`).
        for path in work.glob("disk*"):
            subprocess.run(["rm", "-rf", str(path)], check=False)


def samba(disk):
    return disk["client"].containers.get(CONTAINER)


def smb(disk, action, *args):
    with proxy_path(disk["client"], [SHARE], name_prefix=NAME_PREFIX) as paths:
        host, port = paths[SHARE]
        return action(host, SHARE, *args, port=port)


class unmounted:
    """The disk away from the mount point: an empty directory on the root filesystem in its place."""

    def __init__(self, root: Path, *, stale_share_dir: bool = False):
        self.root, self.away, self.stale = root, root.with_name("disk.unmounted"), stale_share_dir

    def __enter__(self) -> Path:
        self.root.rename(self.away)
        self.root.mkdir()
        if self.stale:
            # What main's `volumes` left behind on the root filesystem at a boot without the disk.
            (self.root / SHARE).mkdir()
        return self.root

    def __exit__(self, *_exc) -> None:
        subprocess.run(["rm", "-rf", str(self.root)], check=True)
        self.away.rename(self.root)


def test_reproduction_docker_creates_a_missing_volumes_host_path(disk, tmp_path):
    """The failure this guards against, as main declared the share (`volumes` host path = a Docker
    bind in HostConfig.Binds): with the disk not mounted, Docker makes the directory on the root
    filesystem and the backup lands there."""
    image = samba(disk).image.id
    missing = tmp_path / "not-mounted" / SHARE
    disk["client"].containers.run(
        image,
        ["-c", "echo band > /data/band"],
        entrypoint=["/bin/sh"],
        volumes={str(missing): {"bind": "/data", "mode": "rw"}},
        remove=True,
    )
    assert (missing / "band").read_text() == "band\n"
    # The stack now declares binds (HostConfig.Mounts), which Docker never creates.
    samba(disk).reload()
    host_config = samba(disk).attrs["HostConfig"]
    assert not host_config.get("Binds"), host_config.get("Binds")
    binds = {m["Target"]: m for m in host_config["Mounts"] if m["Type"] == "bind"}
    assert binds["/data"]["Source"] == str(disk["root"] / SHARE)
    assert binds[f"/storage/{MARKER_NAME}"]["Source"] == str(disk["root"] / MARKER_NAME)
    assert binds[f"/storage/{MARKER_NAME}"]["ReadOnly"] is True


def test_the_share_sees_its_own_directory_and_the_marker_only(disk):
    (disk["root"] / "bob").mkdir(mode=0o700, exist_ok=True)
    (disk["root"] / "bob" / "secret").write_text("bob's")
    code, out = samba(disk).exec_run(["ls", "-A", "/storage"])
    assert code == 0 and out.decode().split() == [MARKER_NAME], out
    assert samba(disk).exec_run(["ls", "/storage/bob"])[0] != 0
    smb(disk, write_file, "before.bin", b"written before the disk went away")


def test_a_crash_with_the_disk_unmounted_stops_the_share_and_writes_nothing(disk):
    container = samba(disk)
    container_id = container.id
    with unmounted(disk["root"]) as mount_point:
        # smbd dies (as at a reboot): the restart policy starts the container again, without the disk.
        os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "exited" and container.attrs["State"]["Error"]:
                break
            time.sleep(0.5)
        state = container.attrs["State"]
        assert container.status == "exited", state
        # Docker's own reason, in `docker inspect`: the bind source is gone.
        assert f'error mounting "{disk["root"] / SHARE}"' in state["Error"], state["Error"]
        assert "no such file or directory" in state["Error"], state["Error"]
        # The restart policy does not try again (measured: it gives up after the failed start).
        time.sleep(5)
        container.reload()
        assert container.status == "exited" and container.attrs["RestartCount"] <= 1, container.attrs["State"]
        # A manual start is refused the same way.
        with pytest.raises(docker.errors.APIError, match="bind source path does not exist"):
            container.start()
        assert list(mount_point.iterdir()) == [], "nothing may be written on the root filesystem"
    # The disk is back. A plain `pulumi up` would not notice the stopped container (nothing planned);
    # `pulumi up --refresh` sees it and starts it (the same one).
    assert samba(disk).status == "exited"
    disk["stack"].run("preview", "--expect-no-changes", *disk["stack"].stack_args())
    disk["stack"].up("--refresh")
    container = samba(disk)
    assert container.id == container_id
    wait_healthy(container)
    assert smb(disk, read_file, "before.bin") == b"written before the disk went away"


def test_a_root_without_the_marker_is_refused_even_with_a_share_directory_on_it(disk):
    container = samba(disk)
    container.stop()
    with unmounted(disk["root"], stale_share_dir=True) as mount_point:
        # The data bind would succeed here (main's Docker made <root>/alice); the marker's does not.
        with pytest.raises(
            docker.errors.APIError, match=f"bind source path does not exist: {mount_point / MARKER_NAME}"
        ):
            container.start()
        assert [p.name for p in mount_point.iterdir()] == [SHARE] and not list((mount_point / SHARE).iterdir())
    container.start()
    wait_healthy(container)


def test_the_image_refuses_to_serve_without_the_marker(disk):
    """The entrypoint's own check, for a container made without the marker's bind."""
    container = samba(disk)
    run = disk["client"].containers.run(
        container.image.id,
        detach=True,
        environment=[
            "DATA_UID=1234",
            "SMB_CONF=[global]",
            f"TM_STORAGE_ROOT={disk['root']}",
            f"TM_SHARE={SHARE}",
            f"TM_CONTAINER={CONTAINER}",
        ],
        mounts=[docker.types.Mount("/data", str(disk["root"] / SHARE), type="bind")],
    )
    try:
        assert run.wait(timeout=60)["StatusCode"] == 1
        log = run.logs().decode()
    finally:
        run.remove(force=True)
    assert f"refusing to serve {disk['root']}/{SHARE}: /storage/{MARKER_NAME} is missing" in log, log
    assert f"Mount it at {disk['root']}" in log and f"docker restart {CONTAINER}" in log, log
    assert "smbd" not in log.lower(), log


def test_up_on_a_root_that_is_not_the_disk_fails_and_makes_nothing(disk, tmp_path):
    stack, config = disk["stack"], disk["config"]
    container_id = samba(disk).id
    absent, unmarked = tmp_path / "absent", tmp_path / "unmarked"
    unmarked.mkdir()
    try:
        for root, reason in (
            (absent, f"the storage root {absent} does not exist on the Docker host"),
            (unmarked, f"{unmarked} has no {MARKER_NAME}: it is not the backup disk"),
        ):
            stack.write_config({**config, "storageRoot": str(root)})
            failed = stack.up(check=False)
            assert failed.code != 0 and reason in failed.output, failed.output[-3000:]
            assert f"touch {root}/{MARKER_NAME}" in failed.output, failed.output[-3000:]
        assert not absent.exists() and list(unmarked.iterdir()) == []
        # The running share was not touched.
        assert samba(disk).id == container_id and samba(disk).status == "running"
    finally:
        stack.write_config(config)
    stack.run("preview", "--expect-no-changes", *stack.stack_args())


# Item 4: samba.dataUid changed under existing backups.


def test_a_changed_data_uid_is_refused_with_the_migration_then_migrated(disk):
    stack, config, root = disk["stack"], disk["config"], disk["root"]

    def backup(host, share, port):
        client = GuestClient(host, port)
        try:
            import smbclient

            smbclient.makedirs(client.path(share, "mac.sparsebundle", "bands"), exist_ok=True, **client.kw())
            with smbclient.open_file(
                client.path(share, "mac.sparsebundle", "bands", "0"), mode="wb", **client.kw()
            ) as f:
                f.write(b"band zero")
        finally:
            client.close()

    smb(disk, backup)
    owners = {p.relative_to(root).as_posix(): p.stat().st_uid for p in (root / SHARE).rglob("*")}
    assert set(owners.values()) == {OLD_UID}, owners

    changed = {**config, "samba": {**config["samba"], "dataUid": NEW_UID}}
    stack.write_config(changed)
    failed = stack.up(check=False)
    assert failed.code != 0 and f"{SHARE}-samba" in failed.output, failed.output[-3000:]
    # The readiness step names the share, its container and the entrypoint's refusal.
    refused = [line for line in failed.output.splitlines() if "not serving its share" in line]
    assert refused and f"{SHARE} ({CONTAINER}): not running" in refused[0], failed.output[-3000:]
    assert "refusing to serve" in refused[0], refused
    container = samba(disk)
    log = container.logs().decode()
    assert (
        f"refusing to serve {root}/{SHARE}: the directory is owned by uid {OLD_UID}, but samba.dataUid is {NEW_UID}"
        in log
    ), log
    assert "smbd version" not in log, log
    # Nothing was handed over behind the user's back.
    assert {p.stat().st_uid for p in [root / SHARE, *(root / SHARE).rglob("*")]} == {OLD_UID}

    # The command the message names, run exactly as printed.
    command = re.search(r"once: (docker run .*)$", log, re.MULTILINE).group(1)  # type: ignore[union-attr]
    image = container.attrs["Config"]["Image"]
    assert f"source={root}/{SHARE},target=/data {image} migrate-owner {OLD_UID} {NEW_UID}" in command
    assert command.endswith(f"&& docker restart {CONTAINER}"), command
    done = subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DOCKER_HOST": stack.env["DOCKER_HOST"]},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"from uid {OLD_UID} to uid {NEW_UID}" in done.stdout, done.stdout
    wait_healthy(samba(disk))
    # The stack converges: the failed update's container is kept (or replaced) and healthy.
    stack.up()
    stack.run("preview", "--expect-no-changes", *stack.stack_args())

    assert smb(disk, read_file, "mac.sparsebundle/bands/0") == b"band zero"
    smb(disk, write_file, "mac.sparsebundle/bands/1", b"band one")
    assert smb(disk, read_file, "before.bin") == b"written before the disk went away"
    tree = [root / SHARE, *(root / SHARE).rglob("*")]
    assert {p.stat().st_uid for p in tree} == {NEW_UID}, [(p, p.stat().st_uid) for p in tree]
    assert (root / SHARE / "mac.sparsebundle" / "bands" / "1").read_bytes() == b"band one"


def test_migrate_owner_rejects_bad_arguments(disk):
    image = samba(disk).image.id
    with pytest.raises(docker.errors.ContainerError, match="usage: migrate-owner"):
        disk["client"].containers.run(image, ["migrate-owner", "alice", "1"], remove=True)
