"""ShareStorage: makes a share's data directory, only on the intended backup disk (the storage root
carrying the marker file), from a short-lived container of the Samba image on the engine the docker
provider uses: the program may not run on the Docker host."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

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


# Run with /bin/sh in the Samba image (any image with a shell would do). Exit 3: no marker.
PREPARE_SCRIPT = f"""set -eu
[ -f {MARKER_PATH} ] || exit 3
if [ ! -d "{STORAGE_PATH}/$SHARE" ]; then
  mkdir -m 0700 "{STORAGE_PATH}/$SHARE"
  chown "$DATA_UID:$DATA_UID" "{STORAGE_PATH}/$SHARE"
  echo made
fi
"""


def no_marker_message(root: str) -> str:
    return (
        f"{root} has no {MARKER_NAME}: it is not the backup disk, or the disk is not mounted there. Mount the"
        f" backup disk at {root}; if it is the right disk (a new one, or from before this check), mark it"
        f" once: touch {marker_path(root)}"
    )


def prepare(props: dict[str, Any]) -> None:
    """`<storage_root>/<share>` exists afterwards, made 0700 and owned by data_uid if it was new; a
    storage root that is missing or lacks the marker stops here and nothing is written."""
    import docker  # the Docker SDK, only at deploy time
    from docker.errors import ContainerError, DockerException
    from docker.types import Mount

    root, share = props["storage_root"], props["share"]
    try:
        host = props.get("docker_host")
        client = docker.DockerClient(base_url=host) if host else docker.from_env()
        client.containers.run(
            props["image"],
            ["-c", PREPARE_SCRIPT],
            entrypoint=["/bin/sh"],
            environment={"DATA_UID": str(int(props["data_uid"])), "SHARE": share},
            # A bind, not a volume: Docker refuses a missing source instead of creating it.
            mounts=[Mount(STORAGE_PATH, root, type="bind")],
            network_mode="none",
            labels={"timemachine.share": share, "timemachine.role": "storage"},
            remove=True,
        )
    except ContainerError as error:
        if error.exit_status == 3:
            raise StorageError(no_marker_message(root)) from None
        raise StorageError(f"cannot make {root}/{share}: {error}") from None
    except DockerException as error:
        if "bind source path does not exist" in str(error):
            raise StorageError(
                f"the storage root {root} does not exist on the Docker host: mount the backup disk there"
                f" (it carries {MARKER_NAME}; a new disk: mkdir -p {root}, mount it, touch {marker_path(root)})"
            ) from None
        raise StorageError(f"cannot make {root}/{share}: {error}") from None


class _ShareStorageProvider(ResourceProvider):
    # Where the directory is; the image and data_uid only say how a new one is made.
    fields = ("storage_root", "share", "docker_host")

    def create(self, props: dict[str, Any]) -> CreateResult:
        try:
            prepare(props)
        except StorageError as error:
            # The engine shows one message per failed step.
            raise Exception(str(error)) from None
        return CreateResult(id_=f"{props['storage_root']}/{props['share']}", outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [name for name in self.fields if olds.get(name) != news.get(name)]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Backups are never deleted: the directory stays on the disk.
        return


class ShareStorage(pulumi.dynamic.Resource):
    def __init__(
        self,
        name: str,
        *,
        storage_root: str,
        share: str,
        data_uid: int,
        image: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "storage_root": storage_root,
            "share": share,
            "data_uid": data_uid,
            "image": image,
            # The engine the docker provider uses (docker:host, else DOCKER_HOST).
            "docker_host": pulumi.Config("docker").get("host") or "",
        }
        super().__init__(_ShareStorageProvider(), name, props, opts)
