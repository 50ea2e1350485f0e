"""StorageCapacity: the backup disk's size and free space, and the check that the shares' quotas
(plus storage.reserve) fit on it — run whenever the quotas, the reserve or the storage root change."""

from __future__ import annotations

from typing import Any

import pulumi

from timemachine.dynamic.base import Provider, Resource
from timemachine.dynamic.storage_helper import Found, StorageError, inspect
from timemachine.planning.units import human_size as human


class OverCommitted(StorageError):
    """The quotas and the reserve add up to more than the filesystem holds."""


def over_committed(root: str, total_quota: int, reserve: int, found: Found) -> str | None:
    """The error when the quotas plus the reserve exceed the filesystem's size; None when they fit."""
    wanted = total_quota + reserve
    if wanted <= found.size:
        return None
    return (
        f"the shares' quotas add up to {human(total_quota)} ({total_quota} bytes) and storage.reserve is "
        f"{human(reserve)}: {human(wanted)}, more than the {human(found.size)} ({found.size} bytes) of the "
        f"{found.filesystem} filesystem at {root}. Lower the quotas (shares[].quota) or storage.reserve, or "
        "give the storage root a larger disk"
    )


def report(root: str, total_quota: int, reserve: int, found: Found) -> str:
    """One line for `pulumi up`: the filesystem, its size and free space, what the quotas take."""
    return (
        f"storage {root}: {found.filesystem}, {human(found.size)}, {human(found.free)} free; quotas "
        f"{human(total_quota)} + reserve {human(reserve)}"
    )


class _StorageCapacityProvider(Provider):
    """Create and update read the filesystem (a helper container with the storage root bound) and
    fail with the numbers when the quotas and the reserve exceed its size. Outputs: `filesystem`,
    `size`, `free` and `report` (the line `pulumi up` logs). Read keeps what the last check found: the
    free space changes with every backup, and is no drift."""

    replace_props = ("docker_host",)
    excluded_props = ("image", "filesystem", "size", "free", "report")

    def subject(self, props) -> str:
        return f"the capacity of {props.get('storage_root')}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return str(props["storage_root"]), self._check(props)

    def change(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        return self._check(news)

    def _check(self, props: dict[str, Any]) -> dict[str, Any]:
        root, total, reserve = props["storage_root"], int(props["total_quota"]), int(props["reserve"])
        found = inspect(props)
        error = over_committed(root, total, reserve, found)
        if error:
            raise OverCommitted(error)
        return {
            **props,
            "filesystem": found.filesystem,
            "size": found.size,
            "free": found.free,
            "report": report(root, total, reserve, found),
        }


class StorageCapacity(Resource, type_name="StorageCapacity"):
    report: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        storage_root: str,
        total_quota: int,
        reserve: int,
        image: pulumi.Input[str],
        docker_host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "storage_root": storage_root,
            "total_quota": total_quota,
            "reserve": reserve,
            "image": image,
            "docker_host": docker_host or "",
            "filesystem": None,
            "size": None,
            "free": None,
            "report": None,
        }
        super().__init__(_StorageCapacityProvider(), name, props, opts)
