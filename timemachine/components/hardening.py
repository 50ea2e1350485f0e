"""Least privilege for every container the stack runs: the docker.Container arguments for
capabilities, no-new-privileges, a read-only root filesystem with writable places only where a
process writes, and memory and process limits (CIS Docker Benchmark, container runtime section)."""

from __future__ import annotations

from typing import Any

import pulumi_docker as docker

from timemachine.planning.limits import Limits

# Found by scripts/samba_caps.py (greedy elimination from Docker's default set, each trial a guest
# workload on a fresh data directory): without SETUID or SETGID smbd cannot become the guest (it
# aborts or drops the session); without CHOWN the entrypoint cannot hand a fresh data directory to
# the data owner; without DAC_OVERRIDE smbd's own root-side steps in the owner's 0700 tree fail
# (STATUS_INTERNAL_ERROR). The other ten of Docker's default set are not needed.
SAMBA_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"]
# Caddy and Headscale run as root but bind no port below 1024 (tsnet listeners are userspace, the
# node and Headscale ports are high) and touch only files root owns: no capability at all.
PROXY_CAPABILITIES: list[str] = []
HEADSCALE_CAPABILITIES: list[str] = []
# The status container reads, never writes: every owner's 0700 share tree and Caddy's 0600 node state
# (both mounted read-only). DAC_READ_SEARCH bypasses read and search permission checks and nothing else.
STATUS_CAPABILITIES = ["DAC_READ_SEARCH"]

NO_NEW_PRIVILEGES = "no-new-privileges:true"
# Writable scratch space is memory, not the image: small, no devices, no setuid binaries.
_TMPFS = "rw,nosuid,nodev,size=16m"
_TMPFS_NOEXEC = _TMPFS + ",noexec"


def _common(limits: Limits, capabilities: list[str], tmpfs: dict[str, str]) -> dict[str, Any]:
    return {
        "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=[f"CAP_{c}" for c in capabilities]),
        "security_opts": [NO_NEW_PRIVILEGES],
        "read_only": True,
        "tmpfs": tmpfs,
        "memory": limits.memory_limit,
        # Memory plus swap, the same: no swap on top of the limit (and Docker's default of twice the
        # limit would read back as a change on every refresh).
        "memory_swap": limits.memory_limit,
    }


def for_samba(limits: Limits, capabilities: list[str] | None = None) -> dict[str, Any]:
    """smbd: smb.conf (written by the entrypoint from SMB_CONF), its lock, pid and socket files
    (/run/samba), the passwd and group the entrypoint writes (/run/nss, where the image's
    /etc/passwd and /etc/group point) and its cache (gencache) in memory; its state is a volume
    and the data a host directory (share.py)."""
    caps = SAMBA_CAPABILITIES if capabilities is None else capabilities
    tmpfs = {"/etc/samba": _TMPFS_NOEXEC, "/run": _TMPFS_NOEXEC, "/var/cache/samba": _TMPFS_NOEXEC}
    return _common(limits, caps, {**tmpfs, "/tmp": _TMPFS_NOEXEC})


def for_proxy(limits: Limits) -> dict[str, Any]:
    """Caddy: its admin socket (/run) and scratch in memory; node state, key files, the config and
    Caddy's autosave (XDG_CONFIG_HOME=/data/config) on the /data volume, written through the
    Docker archive API (which a read-only root allows into a volume, not elsewhere)."""
    return _common(limits, PROXY_CAPABILITIES, {"/run": _TMPFS_NOEXEC, "/tmp": _TMPFS_NOEXEC})


def for_headscale(limits: Limits) -> dict[str, Any]:
    """Headscale: its config (written by the image's entrypoint from the environment), CLI socket
    (/var/run/headscale) and scratch in memory; state and the policy on its volume."""
    tmpfs = {"/etc/headscale": _TMPFS_NOEXEC, "/var/run/headscale": _TMPFS_NOEXEC, "/tmp": _TMPFS_NOEXEC}
    return _common(limits, HEADSCALE_CAPABILITIES, tmpfs)


def for_status(limits: Limits) -> dict[str, Any]:
    """The status collector: only scratch space (smbclient's files and the probe's) in memory; the
    storage root and Caddy's volume are mounted read-only (components/status.py)."""
    return _common(limits, STATUS_CAPABILITIES, {"/tmp": _TMPFS_NOEXEC})


def docker_sdk(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The same settings as Docker SDK (docker-py) create arguments, for scripts and tests."""
    caps = kwargs["capabilities"]
    return {
        "cap_drop": list(caps.drops),
        "cap_add": list(caps.adds),
        "security_opt": list(kwargs["security_opts"]),
        "read_only": kwargs["read_only"],
        "tmpfs": dict(kwargs["tmpfs"]),
        "mem_limit": f"{kwargs['memory']}m",
        "memswap_limit": f"{kwargs['memory_swap']}m",
    }
