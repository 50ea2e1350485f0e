"""A share's quota as the filesystem enforces it (btrfs: the qgroup limit of the share's subvolume),
or, where it cannot, as advisory with the reason — refused with storage.quotaEnforcement: required.
Also the warning for a share without a quota. The share's storage step (share_storage.py) applies
and reads it; stacks deployed before that kept it as a ShareQuota resource of its own, whose
provider stays here for them (_ShareQuotaProvider)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timemachine.dynamic.base import Provider
from timemachine.dynamic.storage_helper import STORAGE_PATH, Found, StorageError, inspect, run_helper
from timemachine.planning.units import human_size as human

MIGRATION = "docs/operations.md, Quotas: moving a share into a subvolume"
# Room above the quota in the enforced limit: btrfs counts a subvolume's metadata in its qgroup, and
# at the limit it refuses even the removal of an extended attribute — which vfs_fruit makes before
# every delete — so a share at its limit could not delete anything over SMB, and a Mac could not
# thin its backups. The Mac is told the quota (it counts only its bands, and thins before it
# reaches it); the limit lies this much above, so that what the Mac does stays below it.
MIN_HEADROOM = 64 * 1024**2
HEADROOM_SHARE = 100  # 1 %
MIGRATE_COMMAND = "sudo scripts/migrate_share_to_subvolume.sh {root} {share}"

# Quotas on (once per filesystem; btrfs then accounts every subvolume, waiting for the first scan)
# and the share's limit (LIMIT: bytes, or none).
APPLY_SCRIPT = f"""set -eu
if [ "$ENABLE" = 1 ]; then
  btrfs quota enable {STORAGE_PATH}
  btrfs quota rescan -W {STORAGE_PATH}
fi
btrfs qgroup limit "$LIMIT" "{STORAGE_PATH}/$SHARE"
"""


def enforced_limit(quota: int) -> int:
    """The qgroup limit of a share whose Mac is told `quota`: 1 % above it, at least MIN_HEADROOM."""
    return quota + max(quota // HEADROOM_SHARE, MIN_HEADROOM)


class QuotaRefused(StorageError):
    """storage.quotaEnforcement: required, where the filesystem cannot enforce the share's quota."""


def xfs_reason(root: str) -> str:
    return (
        f"{root} is XFS: its project quotas are not supported by this project (they need the kernel's XFS "
        "quota support and a mount with prjquota, which the machines this project is tested on lack, so "
        "enforcement there could not be verified)"
    )


def unenforceable_reason(root: str, filesystem: str) -> str | None:
    """Why a quota cannot be enforced on `filesystem`; None on btrfs, where it can."""
    if filesystem == "btrfs":
        return None
    if filesystem == "xfs":
        return xfs_reason(root)
    return (
        f"{root} is {filesystem}, where this project cannot enforce a quota (it enforces quotas only on "
        "btrfs: a subvolume per share with a qgroup limit)"
    )


@dataclass(frozen=True)
class Decision:
    """What the quota step does for one share: set `limit` on its subvolume (enforce), or nothing."""

    enforce: bool
    # The qgroup limit to set: bytes, or "none" for a share without a quota; None when not enforcing.
    limit: str | None = None
    warnings: list[str] = field(default_factory=list)


def decide(root: str, share: str, quota: int | None, mode: str, found: Found) -> Decision:
    """What to do with share `share` (quota in bytes, None: no quota) under quotaEnforcement `mode`
    on the filesystem `found`; QuotaRefused when `required` cannot be met."""
    warnings: list[str] = []
    if quota is None:
        warnings.append(
            f"share {share!r} has no quota: it can fill the {human(found.free)} free of {root} "
            f"({human(found.size)}), and every share on it stops with it; give it one (shares[].quota)"
        )
    told = f"its quota of {human(quota)} is only what the Mac is told" if quota is not None else ""
    if mode == "advisory":
        if quota is not None:
            warnings.append(
                f"share {share!r}: {told} (storage.quotaEnforcement: advisory); nothing on the disk stops a "
                "write past it, and a full disk stops every share's backups"
            )
        return Decision(False, warnings=warnings)
    reason = unenforceable_reason(root, found.filesystem)
    if reason is None and found.kind == "directory":
        reason = (
            f"{root}/{share} is a plain directory from before quotas, not a subvolume: move it into one "
            f"({MIGRATION}): {MIGRATE_COMMAND.format(root=root, share=share)}"
        )
    elif reason is None and found.kind != "subvolume":
        reason = f"{root}/{share} is not a directory ({found.kind})"
    if reason is not None:
        if mode == "required" and quota is not None:
            raise QuotaRefused(
                f"storage.quotaEnforcement is required, but {reason}. Fix that, or set "
                "storage.quotaEnforcement: auto (the quota is then only told to the Mac)"
            )
        if quota is not None:
            warnings.append(f"share {share!r}: {told}, not enforced: {reason}")
        return Decision(False, warnings=warnings)
    if quota is not None and found.used is not None and found.used > quota:
        warnings.append(
            f"share {share!r} already holds {human(found.used)}, over its quota of {human(quota)}: writes to it "
            "fail until backups are deleted there (or the quota is raised)"
        )
    return Decision(True, limit=str(enforced_limit(quota)) if quota is not None else "none", warnings=warnings)


# A share without a quota, as the storage step's input: a value, so that a state without the input
# (stored before the step held the quota) differs from it.
NO_QUOTA = "none"


def _limit_of(props: dict[str, Any]) -> int | None:
    quota = props.get("quota")
    # Numbers cross the engine as floats.
    return int(quota) if quota not in (None, NO_QUOTA) else None


def apply_quota(props: dict[str, Any]) -> dict[str, Any]:
    """Read the filesystem, decide (decide()), set the qgroup limit where it is enforced (turning btrfs
    quotas on first, once per filesystem); `props` with the outcome: `filesystem`, `enforced`,
    `limit` (the enforced bytes, or None) and `warnings`."""
    root, share, quota, mode = props["storage_root"], props["share"], _limit_of(props), props["quota_enforcement"]
    found = inspect(props, share, admin=mode != "advisory")
    decision = decide(root, share, quota, mode, found)
    if decision.enforce:
        assert decision.limit is not None
        environment = {"SHARE": share, "LIMIT": decision.limit, "ENABLE": "0" if found.quotas_on else "1"}
        status, _out, error = run_helper(props, APPLY_SCRIPT, environment, admin=True)
        if status != 0:
            raise StorageError(f"cannot set the quota of {root}/{share} ({decision.limit}): {error}")
    return {
        **props,
        "filesystem": found.filesystem,
        "enforced": decision.enforce and quota is not None,
        "limit": enforced_limit(quota) if decision.enforce and quota is not None else None,
        "warnings": decision.warnings,
    }


def observe_quota(props: dict[str, Any], found: Found) -> dict[str, Any]:
    """`props` as the state has them, with the limit `found` on the share's existing directory, where
    the state says it is enforced — so a limit changed by hand shows as drift; a plain directory
    since moved into a subvolume (the migration) reads as enforced once its limit is the quota."""
    if props.get("quota_enforcement") == "advisory":
        return dict(props)
    if found.filesystem != "btrfs" or found.kind != "subvolume" or not found.quotas_on:
        return dict(props)
    quota = _limit_of(props)
    wanted = enforced_limit(quota) if quota is not None else None
    enforced = found.limit is not None and (bool(props.get("enforced")) or found.limit == wanted)
    out = {**props, "enforced": enforced, "limit": found.limit if enforced else None}
    if enforced and not props.get("enforced"):
        # Enforced since the last step (the migration): its warnings as the step would give them now.
        out["warnings"] = decide(
            props["storage_root"], props["share"], quota, props["quota_enforcement"], found
        ).warnings
    if props.get("enforced") and found.limit != wanted:
        # What is really there, so that a limit changed by hand shows as drift (the next `up` sets it
        # again): the quota whose limit it would be, else the bytes themselves.
        out["quota"] = found.limit
    return out


class _ShareQuotaProvider(Provider):
    """The provider of the ShareQuota resources that stacks deployed before the quota moved into the
    share's storage step still hold (the engine runs it by this module path and name). Their next
    `up` declares no ShareQuota and deletes them: that leaves the limit and the data, as it always
    did, while the storage step keeps the limit. Until then they read as stored (the storage step
    reads the real limit)."""

    def subject(self, props) -> str:
        return f"the quota of share {props.get('share')!r}"
