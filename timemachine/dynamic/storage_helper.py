"""What the storage steps share (share_storage.py, share_quota.py, storage_capacity.py): the marker
that says a disk is the backup disk, a short-lived helper container of the Samba image with the
storage root bound, and what it reads of the filesystem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker.errors import ContainerError, DockerException
from docker.types import Mount

from timemachine.engine.client import docker_client

# The file the maintainer puts on the backup disk, once: `touch <storageRoot>/.timemachine-storage`.
MARKER_NAME = ".timemachine-storage"
# Where the Samba container sees it (a read-only bind of that one file) and where `prepare` sees
# the storage root.
STORAGE_PATH = "/storage"
MARKER_PATH = f"{STORAGE_PATH}/{MARKER_NAME}"


def marker_path(storage_root: str) -> str:
    return f"{storage_root}/{MARKER_NAME}"


# A helper script's exit status when the storage root lacks the marker (the disk is not there).
NO_MARKER = 3


class StorageError(Exception):
    pass


class MissingRoot(StorageError):
    pass


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
