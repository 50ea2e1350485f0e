"""ShareStorage: a share's storage in one step — its data directory, made only on the intended backup
disk (the storage root carrying the marker file), its quota as the filesystem enforces it (on
btrfs the directory is a subvolume of its own with a qgroup limit; elsewhere the quota is advisory,
with the reason: share_quota.py), and the Docker volume of Samba's own state (its tdb files). The
directory and quota are made from a short-lived container of the Samba image on the engine the
docker provider uses (storage_helper.py): the program may not run on the Docker host.

One resource, not three: each resource costs every share a step in every preview, and the preview's
time grows with steps times resources (docs/benchmarks.md). Stacks deployed before kept the quota
as a ShareQuota resource of its own, and the state volume as a docker Volume (`<share>-samba-state`,
kept on delete); their next `up` updates this one, which takes the volume over as it is, and drops
those from the state, which leaves the limit, the volume and the data (share_quota._ShareQuotaProvider,
docs/operations.md, Upgrades)."""

from __future__ import annotations

from typing import Any

import pulumi
from docker.errors import NotFound

from timemachine.dynamic.base import Provider, Resource
from timemachine.dynamic.share_quota import NO_QUOTA, apply_quota, observe_quota
from timemachine.dynamic.storage_helper import (
    MARKER_PATH,
    NO_MARKER,
    STORAGE_PATH,
    MissingRoot,
    StorageError,
    inspect,
    no_marker_message,
    run_helper,
)
from timemachine.engine.client import docker_client

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


def prepare(props: dict[str, Any]) -> None:
    """`<storage_root>/<share>` exists afterwards, made 0700 and owned by data_uid if it was new (on
    btrfs, unless quotas are advisory, as a subvolume); a storage root that is missing or lacks the
    marker stops here and nothing is written."""
    environment = {
        "DATA_UID": str(int(props["data_uid"])),
        "SHARE": props["share"],
        # Absent in stacks stored before quotas: a plain directory, as then.
        "SUBVOLUME": "1" if props.get("quota_enforcement", "advisory") != "advisory" else "0",
    }
    status, _out, error = run_helper(props, PREPARE_SCRIPT, environment)
    if status == NO_MARKER:
        raise StorageError(no_marker_message(props["storage_root"]))
    if status != 0:
        raise StorageError(f"cannot make {props['storage_root']}/{props['share']}: {error}")


def has_state_volume(client, props: dict[str, Any]) -> bool:
    """The engine has Samba's state volume (props["state_volume"])."""
    try:
        client.volumes.get(props["state_volume"])
    except NotFound:
        return False
    return True


def make_state_volume(props: dict[str, Any]) -> None:
    """Samba's state volume exists afterwards: made with its labels if it was not there, taken as it
    is if it was (the volume of a stack deployed before, or of a share added back)."""
    client = docker_client(props.get("docker_host"))
    if not has_state_volume(client, props):
        client.volumes.create(name=props["state_volume"], labels=props.get("state_labels") or {})


def state_volume_gone(props: dict[str, Any]) -> bool:
    """Stored with a state volume (not before this step made it) that the engine no longer has."""
    return bool(props.get("state_volume")) and not has_state_volume(docker_client(props.get("docker_host")), props)


class _ShareStorageProvider(Provider):
    """Create: make the directory (prepare), then decide and set its quota (share_quota.apply_quota).
    Where the directory is replaces it (a new one is made; the old one stays with its backups); a
    changed quota or quotaEnforcement updates the limit in place; the image and data_uid only say how
    a new directory is made (an existing plain directory becomes a subvolume only by the migration in
    docs/operations.md). A new state volume name (a new namePrefix) makes that volume; the old one
    stays. Backups are never deleted: deleting the resource leaves the directory, its data and its
    limit on the disk, and Samba's state volume on the engine.

    Outputs beside the inputs: `filesystem`, `enforced`, `limit` (the enforced bytes, or None) and
    `warnings`, which the share component logs. Read: gone when the directory or the state volume is
    not there — or the storage root is missing or unmarked (the disk not mounted) — so that the next
    `pulumi up` makes them again on the marked disk, or stops with the reason and the fix; else the
    limit found on the share's subvolume (share_quota.observe_quota), so that `pulumi refresh` sees a
    limit changed by hand and the next `up` sets it back.

    One stored before it held the quota (the quota a ShareQuota of its own, or none) has no `quota`
    input, which differs from every share's, "none" included (NO_QUOTA): its next `up` updates it
    once, so that its quota is decided and set here and its warnings are said. A refresh reads it
    as it is (no drift)."""

    replace_props = ("storage_root", "share", "docker_host")
    excluded_props = ("image", "data_uid", "state_labels", "filesystem", "enforced", "limit", "warnings")

    def subject(self, props) -> str:
        return f"the storage of share {props.get('share')!r}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        prepare(props)
        make_state_volume(props)
        return f"{props['storage_root']}/{props['share']}", apply_quota(props)

    def change(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        # The directory stays where it is (a new place replaces); the state volume is there (one
        # stored before this step made it is taken over); the quota follows the new inputs.
        make_state_volume(news)
        return apply_quota(news)

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = inspect(props, props["share"], admin=props.get("quota_enforcement") != "advisory")
        except MissingRoot:
            return None
        except StorageError as error:
            if "has no" in str(error):  # the marker: the disk is not there
                return None
            raise
        if found.kind in ("missing", "other") or state_volume_gone(props):
            return None
        return observe_quota(props, found)


class ShareStorage(Resource, type_name="ShareStorage"):
    filesystem: pulumi.Output[str]
    enforced: pulumi.Output[bool]
    limit: pulumi.Output[int | None]
    warnings: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        *,
        storage_root: str,
        share: str,
        data_uid: int,
        image: pulumi.Input[str],
        quota: int | None,
        docker_host: str | None = None,
        quota_enforcement: str = "auto",
        state_volume: str,
        state_labels: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "storage_root": storage_root,
            "share": share,
            "data_uid": data_uid,
            "image": image,
            # The quota in bytes (NO_QUOTA: none), and storage.quotaEnforcement: anything but advisory
            # makes a new share a subvolume on btrfs and enforces the quota there.
            "quota": quota if quota is not None else NO_QUOTA,
            "quota_enforcement": quota_enforcement,
            # The engine the docker provider uses ("": DOCKER_HOST), as stored since this resource began.
            "docker_host": docker_host or "",
            # Samba's state volume, and the labels a new one is made with (a volume's labels cannot
            # change: not diffed).
            "state_volume": state_volume,
            "state_labels": state_labels,
            # Outputs (excluded from the diff).
            "filesystem": None,
            "enforced": None,
            "limit": None,
            "warnings": None,
        }
        super().__init__(_ShareStorageProvider(), name, props, opts)
