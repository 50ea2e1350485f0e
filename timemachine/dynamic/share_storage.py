"""ShareStorage: makes a share's data directory, only on the intended backup disk (the storage root
carrying the marker file), from a short-lived container of the Samba image on the engine the docker
provider uses: the program may not run on the Docker host. On btrfs, unless quotas are advisory, the
directory is a subvolume of its own, so that a qgroup limit can hold its quota (share_quota.py).
Also what the storage steps share: running the helper container and reading the filesystem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from docker.errors import ContainerError, DockerException
from docker.types import Mount

from timemachine.dynamic.base import Provider, Resource
from timemachine.engine.client import docker_client

# The file the maintainer puts on the backup disk, once: `touch <storageRoot>/.timemachine-storage`.
MARKER_NAME = ".timemachine-storage"
# Where the Samba container sees it (a read-only bind of that one file) and where `prepare` sees
# the storage root.
STORAGE_PATH = "/storage"
MARKER_PATH = f"{STORAGE_PATH}/{MARKER_NAME}"


def marker_path(storage_root: str) -> str:
    return f"{storage_root}/{MARKER_NAME}"


class StorageError(Exception):
    pass


class MissingRoot(StorageError):
    pass


# Run with /bin/sh in the Samba image (it has btrfs-progs). Exit 3: no marker. SUBVOLUME=1: on
# btrfs a new share is a subvolume (its quota's unit); an existing directory is left as it is.
PREPARE_SCRIPT = f"""set -eu
[ -f {MARKER_PATH} ] || exit 3
if [ ! -d "{STORAGE_PATH}/$SHARE" ]; then
  if [ "$SUBVOLUME" = 1 ] && [ "$(stat -f -c %T {STORAGE_PATH})" = btrfs ]; then
    btrfs subvolume create "{STORAGE_PATH}/$SHARE" >/dev/null
    chmod 0700 "{STORAGE_PATH}/$SHARE"
  else
    mkdir -m 0700 "{STORAGE_PATH}/$SHARE"
  fi
  chown "$DATA_UID:$DATA_UID" "{STORAGE_PATH}/$SHARE"
  echo made
fi
"""
# What `read` asks: exit 3, no marker (the disk is not there); 4, no directory; 0, both there.
LOOK_SCRIPT = f"""[ -f {MARKER_PATH} ] || exit 3
[ -d "{STORAGE_PATH}/$SHARE" ] || exit 4
"""
NO_MARKER, NO_DIRECTORY = 3, 4


def no_marker_message(root: str) -> str:
    return (
        f"{root} has no {MARKER_NAME}: it is not the backup disk, or the disk is not mounted there. Mount the"
        f" backup disk at {root}; if it is the right disk (a new one, or from before this check), mark it"
        f" once: touch {marker_path(root)}"
    )


def missing_root_message(root: str) -> str:
    return (
        f"the storage root {root} does not exist on the Docker host: mount the backup disk there"
        f" (it carries {MARKER_NAME}; a new disk: mkdir -p {root}, mount it, touch {marker_path(root)})"
    )


def run_helper(
    props: dict[str, Any], script: str, environment: dict[str, str], *, admin: bool = False
) -> tuple[int, str, str]:
    """`script` in a short-lived container of the Samba image (props["image"]) with the storage root
    bound at STORAGE_PATH (no network); its exit status, output and error output. `admin`: with
    CAP_SYS_ADMIN, which btrfs needs to read and set quotas (nothing else the scripts do needs it).
    A missing storage root is MissingRoot."""
    root, share = props["storage_root"], str(props.get("share") or "")
    try:
        out = docker_client(props.get("docker_host")).containers.run(
            props["image"],
            ["-c", script],
            entrypoint=["/bin/sh"],
            environment=environment,
            # A bind, not a volume: Docker refuses a missing source instead of creating it.
            mounts=[Mount(STORAGE_PATH, root, type="bind")],
            network_mode="none",
            cap_add=["SYS_ADMIN"] if admin else None,
            labels={"timemachine.share": share, "timemachine.role": "storage"},
            remove=True,
        )
    except ContainerError as error:
        stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else str(error)
        return error.exit_status, "", stderr.strip() or str(error)
    except DockerException as error:
        if "bind source path does not exist" in str(error):
            raise MissingRoot(missing_root_message(root)) from None
        raise StorageError(f"cannot run the Samba image with {root} bound: {error}") from None
    return 0, out.decode(errors="replace") if isinstance(out, bytes) else str(out), ""


def _run(props: dict[str, Any], script: str) -> tuple[int, str]:
    environment = {
        "DATA_UID": str(int(props["data_uid"])),
        "SHARE": props["share"],
        # Absent in stacks stored before quotas: a plain directory, as then.
        "SUBVOLUME": "1" if props.get("quota_enforcement", "advisory") != "advisory" else "0",
    }
    status, _out, error = run_helper(props, script, environment)
    return status, error


# What the quota and capacity steps read (exit 3: no marker): the filesystem's type (stat -f's
# name: btrfs, xfs, ext2/ext3 for ext4 …), size and free space in bytes, what the share's path is
# (missing, a subvolume, a plain directory, something else) and, on btrfs with quotas on, its
# qgroup line (id, referenced, exclusive, limit). Quotas off: "quotas=off".
INSPECT_SCRIPT = f"""set -u
[ -f {MARKER_PATH} ] || exit 3
fs=$(stat -f -c %T {STORAGE_PATH})
echo "filesystem=$fs"
echo "size=$(( $(stat -f -c %S {STORAGE_PATH}) * $(stat -f -c %b {STORAGE_PATH}) ))"
echo "free=$(( $(stat -f -c %S {STORAGE_PATH}) * $(stat -f -c %a {STORAGE_PATH}) ))"
[ -n "$SHARE" ] || exit 0
d="{STORAGE_PATH}/$SHARE"
if [ ! -e "$d" ]; then echo kind=missing
elif [ ! -d "$d" ]; then echo kind=other
elif [ "$fs" = btrfs ] && [ "$(stat -c %i "$d")" = 256 ]; then echo kind=subvolume
else echo kind=directory
fi
if [ "$fs" = btrfs ] && [ "$ADMIN" = 1 ] && [ -d "$d" ]; then
  if line=$(btrfs qgroup show --raw -r -f "$d" 2>&1); then
    echo "$line" | sed -n 's,^\\(0/[0-9]*\\)  *\\([0-9]*\\)  *\\([0-9]*\\)  *\\([0-9a-z]*\\).*,qgroup=\\1 \\2 \\3 \\4,p'
  else
    case "$line" in *"not enabled"*) echo quotas=off ;; *) echo "qgroup-error=$line" ;; esac
  fi
fi
"""


@dataclass(frozen=True)
class Found:
    """What INSPECT_SCRIPT saw."""

    filesystem: str
    size: int
    free: int
    # missing | subvolume | directory | other ("" when no share was asked about)
    kind: str = ""
    # btrfs with quotas on: the share's qgroup limit (None: none) and what it references now.
    quotas_on: bool = False
    limit: int | None = None
    used: int | None = None


def inspect(props: dict[str, Any], share: str = "", *, admin: bool = False) -> Found:
    """The filesystem of the storage root (and `share`'s path on it); a missing root is MissingRoot,
    one without the marker StorageError with the fix."""
    status, out, error = run_helper(
        props, INSPECT_SCRIPT, {"SHARE": share, "ADMIN": "1" if admin else "0"}, admin=admin
    )
    if status == NO_MARKER:
        raise StorageError(no_marker_message(props["storage_root"]))
    if status != 0:
        raise StorageError(f"cannot look at {props['storage_root']}: {error}")
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if "qgroup-error" in values:
        raise StorageError(f"cannot read the quota of {props['storage_root']}/{share}: {values['qgroup-error']}")
    limit = used = None
    quotas_on = "qgroup" in values
    if quotas_on:
        _id, referenced, _exclusive, maximum = values["qgroup"].split()
        used = int(referenced)
        limit = None if maximum == "none" else int(maximum)
    return Found(
        filesystem=values["filesystem"],
        size=int(values["size"]),
        free=int(values["free"]),
        kind=values.get("kind", ""),
        quotas_on=quotas_on,
        limit=limit,
        used=used,
    )


def prepare(props: dict[str, Any]) -> None:
    """`<storage_root>/<share>` exists afterwards, made 0700 and owned by data_uid if it was new (on
    btrfs, unless quotas are advisory, as a subvolume); a storage root that is missing or lacks the
    marker stops here and nothing is written."""
    status, error = _run(props, PREPARE_SCRIPT)
    if status == NO_MARKER:
        raise StorageError(no_marker_message(props["storage_root"]))
    if status != 0:
        raise StorageError(f"cannot make {props['storage_root']}/{props['share']}: {error}")


class _ShareStorageProvider(Provider):
    """Where the directory is replaces it (a new one is made; the old one stays with its backups);
    the image, data_uid and quota_enforcement only say how a new one is made (an existing plain
    directory becomes a subvolume only by the migration in docs/operations.md). Backups are never deleted: deleting the
    resource leaves the directory on the disk. Read: gone when the directory is not there — or the
    storage root is missing or unmarked (the disk not mounted) — so that the next `pulumi up` makes
    it again on the marked disk, or stops with the reason and the fix."""

    replace_props = ("storage_root", "share", "docker_host")
    excluded_props = ("image", "data_uid", "quota_enforcement")

    def subject(self, props) -> str:
        return f"the storage of share {props.get('share')!r}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        prepare(props)
        return f"{props['storage_root']}/{props['share']}", props

    def change(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        # Only how a new directory would be made changed (the rest replaces): nothing to do.
        return news

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        try:
            status, error = _run(props, LOOK_SCRIPT)
        except MissingRoot:
            return None
        if status not in (0, NO_MARKER, NO_DIRECTORY):
            raise StorageError(f"cannot look at {props['storage_root']}/{props['share']}: {error}")
        return dict(props) if status == 0 else None


class ShareStorage(Resource, type_name="ShareStorage"):
    def __init__(
        self,
        name: str,
        *,
        storage_root: str,
        share: str,
        data_uid: int,
        image: pulumi.Input[str],
        docker_host: str | None = None,
        quota_enforcement: str = "auto",
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "storage_root": storage_root,
            "share": share,
            "data_uid": data_uid,
            "image": image,
            # storage.quotaEnforcement: anything but advisory makes a new share a subvolume on btrfs.
            "quota_enforcement": quota_enforcement,
            # The engine the docker provider uses ("": DOCKER_HOST), as stored since this resource began.
            "docker_host": docker_host or "",
        }
        super().__init__(_ShareStorageProvider(), name, props, opts)
