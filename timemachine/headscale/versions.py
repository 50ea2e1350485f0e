"""Headscale's versions: which the stack can embed and talk to, what each speaks, and the upgrade path
of a deployed stack's embedded Headscale (one minor version at a time). Plain functions, no Pulumi."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from timemachine.config.models import HEADSCALE_VERSIONS
from timemachine.planning.labels import PREFIX

# The label on the embedded Headscale's container that says the version it runs: the next run reads
# it from the stack's state to check the upgrade step before anything is declared.
VERSION_LABEL = f"{PREFIX}.headscale-version"
# Stacks deployed before the label ran the only version embedded until then.
UNLABELLED_VERSION = "v0.27.1"
# The embedded Headscale's container, by the type chain in its URN.
HEADSCALE_CONTAINER = "timemachine:index:HeadscaleServer$docker:index/container:Container"
# An external Headscale the client speaks to: 0.27 (keys by user and key) to 0.29 (keys by id).
SUPPORTED_MINORS = range(27, 30)
SUPPORTED_TEXT = "v0.27.0 to v0.29.x"

VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


class VersionError(ValueError):
    """A version the stack cannot work with; the message says which and what to do."""


def parse(version: str) -> tuple[int, int, int]:
    """vMAJOR.MINOR.PATCH (a pre-release or build suffix ignored)."""
    found = VERSION.match(version.strip())
    if not found:
        raise VersionError(f"{version!r} is not a Headscale release version (vMAJOR.MINOR.PATCH)")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def keys_by_id(version: str) -> bool:
    """0.28 and later expire and list pre-auth keys by id (not by user and key)."""
    return parse(version)[:2] >= (0, 28)


def has_policy_tests(version: str) -> bool:
    """0.29 and later evaluate a policy's `tests` block (and refuse a policy that fails it)."""
    return parse(version)[:2] >= (0, 29)


def has_client_port_setting(version: str) -> bool:
    """Before 0.29 the server config has `randomize_client_port`; 0.29 refuses to start with it."""
    return parse(version)[:2] < (0, 29)


def check_supported(version: str, where: str) -> str:
    """`version` if the client speaks to it, else a VersionError naming it and the range."""
    try:
        major, minor, _patch = parse(version)
    except VersionError:
        raise VersionError(
            f"{where} reports version {version!r}, not a release; this stack works with Headscale "
            f"{SUPPORTED_TEXT}: run a released Headscale"
        ) from None
    if major != 0 or minor not in SUPPORTED_MINORS:
        direction = "upgrade it" if (major, minor) < (0, SUPPORTED_MINORS.start) else "use a release in that range"
        raise VersionError(
            f"{where} runs Headscale {version}; this stack works with Headscale {SUPPORTED_TEXT} only: {direction}"
        )
    return version


def deployed_version(resources: Mapping[str, Any]) -> str | None:
    """The version of the embedded Headscale in a stack's state (None: none deployed)."""
    for urn, resource in sorted(resources.items()):
        if not urn.split("::")[2].endswith(HEADSCALE_CONTAINER):
            continue
        outputs = resource.get("outputs") or {}
        labels = {item.get("label"): item.get("value") for item in outputs.get("labels") or []}
        return labels.get(VERSION_LABEL) or UNLABELLED_VERSION
    return None


def upgrade_problem(deployed: str | None, wanted: str) -> str | None:
    """Why the embedded Headscale cannot go from `deployed` to `wanted` in one `pulumi up`, with the
    step to take; None when it can (same minor, or the next one)."""
    if deployed is None or deployed == wanted:
        return None
    old, new = parse(deployed), parse(wanted)
    if new[:2] < old[:2]:
        return (
            f"tailnet.headscale.version: {wanted} is older than the deployed {deployed}, and Headscale cannot "
            f"open a database a newer minor version has migrated; keep {deployed} (set tailnet.headscale.version "
            f"to {deployed}), or restore the copy of the database made before that upgrade (docs/operations.md)"
        )
    if new[0] != old[0] or new[1] > old[1] + 1:
        steps = [v for v in HEADSCALE_VERSIONS if old[:2] < parse(v)[:2] <= new[:2]]
        after = {}
        for step in steps:  # the newest patch of each minor between them
            after[parse(step)[:2]] = step
        path = " → ".join([deployed, *after.values()])
        first = next(iter(after.values()), wanted)
        return (
            f"tailnet.headscale.version: {wanted} skips a minor version of the deployed {deployed}; Headscale "
            f"upgrades one minor version at a time ({path}). Set tailnet.headscale.version to {first} and run "
            "pulumi up, then the next (docs/operations.md, upgrading Headscale)"
        )
    return None


def kept_version(deployed: str | None, wanted: str, *, chosen: bool) -> tuple[str, str | None]:
    """The release this run embeds, and a warning when it is not `wanted`. A deployed stack whose
    config names no release (`chosen` False) keeps the one it runs: the default moves to newer
    releases, and following it would skip a minor version or change the control server unasked. The
    warning names the next step of the upgrade path."""
    if chosen or deployed is None or parse(deployed)[:2] == parse(wanted)[:2]:
        return wanted, None
    later = [v for v in HEADSCALE_VERSIONS if parse(v)[:2] > parse(deployed)[:2]]
    step = (
        f"to upgrade, one minor version per pulumi up: pulumi config set --path tailnet.headscale.version {later[0]}"
        if later and parse(deployed)[:2] < parse(wanted)[:2]
        else f"to keep it so, pulumi config set --path tailnet.headscale.version {deployed}"
    )
    return deployed, (
        f"tailnet.headscale.version is not set: this stack keeps the Headscale {deployed} it runs (new stacks "
        f"get {wanted}); {step} (docs/operations.md, upgrading Headscale)"
    )
