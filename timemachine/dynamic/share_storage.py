"""ShareStorage: makes a share's data directory, only on the intended backup disk (the storage root
carrying the marker file), from a short-lived container of the Samba image on the engine the docker
provider uses: the program may not run on the Docker host."""

from __future__ import annotations

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


# Run with /bin/sh in the Samba image (any image with a shell would do). Exit 3: no marker.
PREPARE_SCRIPT = f"""set -eu
[ -f {MARKER_PATH} ] || exit 3
if [ ! -d "{STORAGE_PATH}/$SHARE" ]; then
  mkdir -m 0700 "{STORAGE_PATH}/$SHARE"
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


def _run(props: dict[str, Any], script: str) -> tuple[int, str]:
    """`script` in a short-lived container of the Samba image with the storage root bound at
    STORAGE_PATH (no network); its exit status and error output. A missing storage root is
    MissingRoot."""
    root, share = props["storage_root"], props["share"]
    try:
        docker_client(props.get("docker_host")).containers.run(
            props["image"],
            ["-c", script],
            entrypoint=["/bin/sh"],
            environment={"DATA_UID": str(int(props["data_uid"])), "SHARE": share},
            # A bind, not a volume: Docker refuses a missing source instead of creating it.
            mounts=[Mount(STORAGE_PATH, root, type="bind")],
            network_mode="none",
            labels={"timemachine.share": share, "timemachine.role": "storage"},
            remove=True,
        )
    except ContainerError as error:
        return error.exit_status, str(error)
    except DockerException as error:
        if "bind source path does not exist" in str(error):
            raise MissingRoot(missing_root_message(root)) from None
        raise StorageError(f"cannot run the Samba image with {root} bound for {share}: {error}") from None
    return 0, ""


def prepare(props: dict[str, Any]) -> None:
    """`<storage_root>/<share>` exists afterwards, made 0700 and owned by data_uid if it was new; a
    storage root that is missing or lacks the marker stops here and nothing is written."""
    status, error = _run(props, PREPARE_SCRIPT)
    if status == NO_MARKER:
        raise StorageError(no_marker_message(props["storage_root"]))
    if status != 0:
        raise StorageError(f"cannot make {props['storage_root']}/{props['share']}: {error}")


class _ShareStorageProvider(Provider):
    """Where the directory is replaces it (a new one is made; the old one stays with its backups);
    the image and data_uid only say how a new one is made. Backups are never deleted: deleting the
    resource leaves the directory on the disk. Read: gone when the directory is not there — or the
    storage root is missing or unmarked (the disk not mounted) — so that the next `pulumi up` makes
    it again on the marked disk, or stops with the reason and the fix."""

    replace_props = ("storage_root", "share", "docker_host")
    excluded_props = ("image", "data_uid")

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
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "storage_root": storage_root,
            "share": share,
            "data_uid": data_uid,
            "image": image,
            # The engine the docker provider uses ("": DOCKER_HOST), as stored since this resource began.
            "docker_host": docker_host or "",
        }
        super().__init__(_ShareStorageProvider(), name, props, opts)
