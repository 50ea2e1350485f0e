"""What the status container checks besides the files: each share's smbd over SMB (a real write, read back
and delete, as a Mac's own session would), and each tailnet node's identity in Caddy's node state.

Neither needs the Docker socket: the probe is an SMB client on the stack's network (the share's smbd admits
the status container's address), and the node state is Caddy's volume, mounted read-only.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from timemachine.planning.node_state import STATE_FILE, registered_node_id

# Hidden, at the share's top (never inside a bundle), distinct from the Samba healthcheck's own
# /data/.timemachine-probe so the two never race on one file.
PROBE_FILE = ".timemachine-probe-status"
PROBE_TIMEOUT_SECONDS = 20
NT_STATUS = re.compile(r"NT_STATUS_[A-Z0-9_]+")
# smbclient processes at once: a hung smbd costs one timeout, and the container's memory stays bounded.
PROBES_AT_ONCE = 4


@dataclass(frozen=True)
class SmbTarget:
    """A share's smbd: its address, and for a password share the smbclient credentials file to log in with."""

    share: str
    address: str
    credentials_file: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    up: bool
    # Why not, in a few words (the step and Samba's status code); "" when up.
    reason: str = ""


Runner = Callable[..., subprocess.CompletedProcess]


def _step(output: str) -> str:
    """Which step of the probe a failure belongs to, from smbclient's message."""
    lowered = output.lower()
    if any(
        step in lowered
        for step in ("connection to", "protocol negotiation", "session setup failed", "tree connect failed")
    ):
        return "connect"
    if "opening remote file" in lowered or "putting file" in lowered or "writing" in lowered:
        return "write"
    if "getting file" in lowered or "reading" in lowered:
        return "read"
    if "deleting" in lowered or "del " in lowered or "unlink" in lowered:
        return "delete"
    return "smb"


def smb_probe(
    target: SmbTarget, *, run: Runner = subprocess.run, timeout: float = PROBE_TIMEOUT_SECONDS
) -> ProbeResult:
    """Write a small random file at the top of the share, read it back, delete it, all with smbclient."""
    payload = secrets.token_hex(32).encode()
    with tempfile.TemporaryDirectory(prefix="tm-probe-") as scratch:
        sent, back = os.path.join(scratch, "sent"), os.path.join(scratch, "back")
        with open(sent, "wb") as handle:
            handle.write(payload)
        login = ["--authentication-file", target.credentials_file] if target.credentials_file else ["--no-pass"]
        commands = f'put "{sent}" {PROBE_FILE}; get {PROBE_FILE} "{back}"; del {PROBE_FILE}'
        command = [
            "smbclient",
            f"//{target.address}/{target.share}",
            *login,
            "--option=client min protocol=SMB2",
            "--timeout=10",
            "--command",
            commands,
        ]
        try:
            done = run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return ProbeResult(False, f"no answer within {timeout:.0f}s")
        except OSError as error:
            return ProbeResult(False, f"cannot run smbclient ({error.strerror or error})")
        output = (done.stdout or "") + (done.stderr or "")
        status = NT_STATUS.search(output)
        if status:
            line = next(line for line in output.splitlines() if status.group(0) in line)
            return ProbeResult(False, f"{_step(line)}: {status.group(0)}")
        try:
            with open(back, "rb") as handle:
                read_back = handle.read()
        except OSError:
            read_back = None
        if done.returncode != 0:
            last = output.strip().splitlines()[-1:] or [f"smbclient exited {done.returncode}"]
            return ProbeResult(False, f"smb: {last[0][:120]}")
        if read_back != payload:
            return ProbeResult(False, "read: the file read back differs from the one written")
    return ProbeResult(True)


def probe_shares(
    targets: Iterable[SmbTarget], probe: Callable[[SmbTarget], ProbeResult] = smb_probe
) -> dict[str, ProbeResult]:
    """Every share's probe, PROBES_AT_ONCE at a time: a hung smbd costs one timeout, not one per share."""
    targets = list(targets)
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(PROBES_AT_ONCE, len(targets))) as pool:
        results = pool.map(probe, targets)
        return {t.share: r for t, r in zip(targets, results, strict=True)}


def node_registered(state_dir: str, node: str) -> bool | None:
    """Whether Caddy's node `node` has a tailnet identity; None when its state cannot be read (not known)."""
    try:
        with open(os.path.join(state_dir, node, STATE_FILE), "rb") as handle:
            state = handle.read(4 * 1024 * 1024)
    except FileNotFoundError:
        # No state at all: the node never started, or its state was lost.
        return False
    except OSError:
        return None
    return registered_node_id(state) is not None


def nodes_registered(
    state_dir: str, nodes: Mapping[str, str], state_dirs: Mapping[str, str] | None = None
) -> dict[str, bool]:
    """share → registered, for each share's node whose state could be read; `state_dirs`: the shares
    whose node state is elsewhere than `state_dir` (on another Caddy shard's volume)."""
    dirs = state_dirs or {}
    found = {share: node_registered(dirs.get(share, state_dir), node) for share, node in nodes.items()}
    return {share: value for share, value in found.items() if value is not None}
