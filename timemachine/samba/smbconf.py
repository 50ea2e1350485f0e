"""Renders the smb.conf of one share's smbd-only Samba container."""

from __future__ import annotations

# The Samba container creates this account with the configured dataUid; guests become it.
DATA_USER = "timemachine"
DATA_PATH = "/data"
SMB_CONF_PATH = "/etc/samba/smb.conf"
# The environment variable the image's entrypoint writes SMB_CONF_PATH from.
SMB_CONF_ENV = "SMB_CONF"


def format_size(size: int) -> str:
    """Bytes as Samba's size syntax, in the largest unit that divides exactly (1T, 500G, 1536M)."""
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def render_smb_conf(share: str, quota: int | None, model: str, *, allow_from: str, time_machine: bool = True) -> str:
    """One share on a standalone, guest-only, SMB2+ server with the fruit Time Machine options,
    reachable only from `allow_from` (the proxy's address as smbd sees it).

    `time_machine=False` exists for tests: a negative control that must not advertise FULL_SYNC.
    """
    global_section = {
        "server role": "standalone server",
        "server string": f"Time Machine ({share})",
        "server min protocol": "SMB2",
        "smb ports": "445",
        "disable netbios": "yes",
        "load printers": "no",
        "printing": "bsd",
        "printcap name": "/dev/null",
        "disable spoolss": "yes",
        # smbd runs in the foreground with --debug-stdout: the log is the container's output.
        "log level": "1",
        # The tailnet authenticates (SSO/MFA + access policy); anyone reaching smbd is a guest, and
        # guests are the data owner's account. (`force user` on top breaks guest sessions in 4.17.)
        "map to guest": "Bad User",
        "guest account": DATA_USER,
        "restrict anonymous": "0",
        # Guest trust holds only if nothing but the proxy reaches smbd: every other address is
        # refused before a session starts (hosts deny = ALL; an address in both lists is allowed).
        # Loopback is the container's own (its healthcheck); ALL would deny it too.
        "hosts allow": f"{allow_from} 127.0.0.1",
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
        "fruit:zero_file_id": "yes",
        "fruit:posix_rename": "yes",
        "fruit:veto_appledouble": "no",
        "fruit:wipe_intentionally_left_blank_rfork": "yes",
        "fruit:delete_empty_adfiles": "yes",
    }
    share_section = {
        "path": DATA_PATH,
        "comment": f"Time Machine backups of {share}",
        # fruit must sit on streams_xattr (it stores its streams there).
        "vfs objects": "catia fruit streams_xattr",
        "browseable": "yes",
        "read only": "no",
        "guest ok": "yes",
        "guest only": "yes",
        # Owner only, x kept: from rw- Samba derives an ACL that refuses the owner full access (17 vfs.fruit tests).
        "create mask": "0700",
        "directory mask": "0700",
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


def _ini(sections: dict[str, dict[str, str]]) -> str:
    out = []
    for title, options in sections.items():
        out.append(f"[{title}]")
        out += [f"   {key} = {value}" for key, value in sorted(options.items())]
        out.append("")
    return "\n".join(out)
