"""Renders the smb.conf of one share's smbd-only Samba container."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

# The Samba container creates this account with the configured dataUid; guests become it, and with
# samba.auth: password it is the one user that logs in (a fixed name: a share named after a system
# account, `backup` or `mail`, would otherwise clash with the image's own).
DATA_USER = "timemachine"
DATA_PATH = "/data"
# Samba's own state (tdb files, passdb): a volume per share.
STATE_PATH = "/var/lib/samba"
SMB_CONF_PATH = "/etc/samba/smb.conf"
# The image's health check (images/samba/healthcheck.sh): Docker's, and samba-ready's at `pulumi up`.
HEALTHCHECK_PATH = "/usr/local/bin/healthcheck.sh"
# The environment variable the image's entrypoint writes SMB_CONF_PATH from.
SMB_CONF_ENV = "SMB_CONF"
# How the entrypoint sets up logins (guest | password), from this variable.
AUTH_ENV = "SAMBA_AUTH"
# samba.auth: password — the share's credentials as smbclient's authentication file (username,
# password), 0600 in Samba's private directory on the state volume: the entrypoint sets the
# password of DATA_USER from it, and the healthcheck logs in with it.
CREDENTIALS_FILE = "private/timemachine.credentials"  # on the state volume
CREDENTIALS_PATH = f"{STATE_PATH}/{CREDENTIALS_FILE}"

Auth = Literal["guest", "password"]

# smbd hands each read, write and flush to a thread of a pool per connection, up to this many
# (Samba's default is 100). Every thread counts against the container's pids limit (samba.processLimit),
# so a Mac keeping many requests in flight could use the whole limit, and a fork (the healthcheck,
# a reconnect) would fail. 16 keeps a disk busy (scripts/bench_smbd_load.py: docs/benchmarks.md).
AIO_MAX_THREADS = 16


def credentials_file(password: str) -> str:
    """The content of CREDENTIALS_PATH (smbclient --authentication-file's format)."""
    return f"username = {DATA_USER}\npassword = {password}\n"


def format_size(size: int) -> str:
    """Bytes as Samba's size syntax, in the largest unit that divides exactly (1T, 500G, 1536M)."""
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def render_smb_conf(
    share: str,
    quota: int | None,
    model: str,
    *,
    allow_from: str,
    auth: Auth = "guest",
    time_machine: bool = True,
    also_allow: Sequence[str] = (),
) -> str:
    """One share on a standalone SMB2+ server with the fruit Time Machine options, reachable only
    from `allow_from` (the proxy's address as smbd sees it); guests only (`auth="guest"`), or
    DATA_USER with its password and signed sessions only (`auth="password"`).

    `also_allow`: further addresses smbd admits (the status container's, whose probe is an SMB session).

    `time_machine=False` exists for tests: a negative control that must not advertise FULL_SYNC.
    """
    global_section = {
        # Its own accounts only (no domain), one share: what one Mac's backups need.
        "server role": "standalone server",
        # What Finder shows for the server.
        "server string": f"Time Machine ({share})",
        # SMB2 and later: Time Machine over SMB needs SMB2+ (durable handles, leases, AAPL).
        "server min protocol": "SMB2",
        # Direct SMB over TCP only; the proxy forwards 445. No NetBIOS: the tailnet names the server.
        "smb ports": "445",
        "disable netbios": "yes",
        # No printers: nothing to load, no spoolss service to offer.
        "load printers": "no",
        "printing": "bsd",
        "printcap name": "/dev/null",
        "disable spoolss": "yes",
        # Bounded, so that one Mac's burst stays far below the pids limit (AIO_MAX_THREADS).
        "aio max threads": str(AIO_MAX_THREADS),
        # smbd runs in the foreground with --debug-stdout: the log is the container's output.
        "log level": "1",
        **_global_auth(auth),
        # Guest trust holds only if nothing but the proxy reaches smbd: every other address is
        # refused before a session starts (hosts deny = ALL; an address in both lists is allowed).
        # Loopback is the container's own (its healthcheck); ALL would deny it too.
        "hosts allow": " ".join([allow_from, *also_allow, "127.0.0.1"]),
        "hosts deny": "ALL",
        # macOS: these fruit options only take effect in [global].
        "fruit:aapl": "yes",
        "fruit:model": model,
        # Evidence for the choices below: vfs_fruit(8), smb.conf(5) and Samba's own smbtorture suites
        # vfs.fruit / vfs.fruit_timemachine run against a deployed share (tests/conformance).
        # Real UNIX modes in READ_DIR_ATTR listings and ACLs (AAPL cap NFS_ACE); one owner, no ACLs.
        "fruit:nfs_aces": "yes",
        # Finder copies inside the share stay on the server, streams included (AAPL cap OSX_COPYFILE).
        "fruit:copyfile": "yes",
        # The Mac may cache what it holds; a lease is also what a durable handle hangs on.
        "smb2 leases": "yes",
        # Finder metadata (AFP_AfpInfo) as an xattr via streams_xattr, not netatalk's format.
        "fruit:metadata": "stream",
        # Samba's file ids are inode numbers, which the filesystem reuses; the Mac takes them for
        # HFS+ catalog ids that never repeat. Zero tells it not to trust them (reused ids damaged Time
        # Machine backups: FreeBSD bug 269883). The default in 4.22 (vfs_fruit(8)), kept explicit.
        "fruit:zero_file_id": "yes",
        # POSIX semantics for the Mac, whose filesystem is POSIX: a directory renamed with files open
        # below it (Time Machine renames its sparsebundle so), a file deleted while open. The default
        # in 4.22 (vfs_fruit(8)), where it replaces fruit:posix_rename (removed in 4.22.0).
        "fruit:posix_opens": "yes",
        # ._ AppleDouble files stay visible: Mac ZIP archives and rsync carry them, and with them
        # hidden unpacking such an archive on the share fails (vfs_fruit(8)).
        "fruit:veto_appledouble": "no",
        # macOS writes a 286-byte "intentionally left blank" resource fork that nothing reads: it is
        # truncated, and a ._ file left empty by that is deleted, instead of one per file.
        "fruit:wipe_intentionally_left_blank_rfork": "yes",
        "fruit:delete_empty_adfiles": "yes",
    }
    share_section = {
        "path": DATA_PATH,
        "comment": f"Time Machine backups of {share}",
        # fruit must sit on streams_xattr (it stores its streams there).
        "vfs objects": "catia fruit streams_xattr",
        # Listed to the one client that reaches this smbd; Time Machine writes to it.
        "browseable": "yes",
        "read only": "no",
        **_share_auth(auth),
        # Owner only, x kept: from rw- Samba derives an ACL that refuses the owner full access (17 vfs.fruit tests).
        "create mask": "0700",
        "directory mask": "0700",
        # Extended attributes: where streams_xattr keeps the streams (the backing filesystem needs them).
        "ea support": "yes",
        # Resource forks in ._ files: vfs_fruit(8) rules out fruit:resource = stream on streams_xattr.
        "fruit:resource": "file",
        "fruit:time machine": "yes" if time_machine else "no",
        # The next four are what fruit:time machine enforces; smb.conf(5) grants durable handles only
        # with all of them, and only smbd touches the data (no local or NFS access to stay coherent with).
        # A dropped connection (Wi-Fi, a new tailnet path) reopens the Mac's bands instead of failing.
        "durable handles": "yes",
        # Kernel oplocks serve local processes that never come here, and rule out leases and durability.
        "kernel oplocks": "no",
        # Share modes stay in smbd's own database; kernel share modes need a VFS module we do not have.
        "kernel share modes": "no",
        # Byte-range locks stay in smbd's database, not mapped to fcntl locks nobody else takes.
        "posix locking": "no",
        # Leases need oplocks (smb.conf(5), smb2 leases).
        "oplocks": "yes",
        # A flush from the Mac (Time Machine's F_FULLFSYNC is an SMB2 FLUSH) is an fsync on the server.
        "strict sync": "yes",
        # No fsync per write: the Mac's flushes mark where data must be durable.
        "sync always": "no",
    }
    if quota is not None:
        # What the Mac sees as the disk size: vfs_fruit counts sparsebundle bands × band size
        # (vfs.fruit_timemachine Timemachine-volsize checks it); other files are not counted.
        share_section["fruit:time machine max size"] = format_size(quota)
    return _ini({"global": global_section, share: share_section})


def _global_auth(auth: Auth) -> dict[str, str]:
    if auth == "guest":
        return {
            # The tailnet authenticates (SSO/MFA + access policy); anyone reaching smbd is a guest, and
            # guests are the data owner's account. (`force user` on top breaks guest sessions in 4.17.)
            "map to guest": "Bad User",
            "guest account": DATA_USER,
            "restrict anonymous": "0",
        }
    return {
        # The share's password on top of the tailnet: a wrong user or password is refused, never
        # mapped to a guest, and an anonymous session gets nothing (not even the share list).
        "map to guest": "Never",
        "restrict anonymous": "2",
        # Only signed sessions: a Mac that requires signing (macOS 26) gets it, and nothing between
        # the proxy and smbd can alter a request unnoticed. A guest session has no key to sign with.
        "server signing": "mandatory",
    }


def _share_auth(auth: Auth) -> dict[str, str]:
    if auth == "guest":
        return {"guest ok": "yes", "guest only": "yes"}
    # DATA_USER only: the one account with a password here, and the data's owner.
    return {"guest ok": "no", "valid users": DATA_USER}


def _ini(sections: dict[str, dict[str, str]]) -> str:
    out = []
    for title, options in sections.items():
        out.append(f"[{title}]")
        out += [f"   {key} = {value}" for key, value in sorted(options.items())]
        out.append("")
    return "\n".join(out)
