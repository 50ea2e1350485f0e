"""Renders the smb.conf of one share's smbd-only Samba container."""

from __future__ import annotations

# The Samba container creates this account with the configured dataUid; guests become it.
DATA_USER = "timemachine"
DATA_PATH = "/data"
SMB_CONF_PATH = "/etc/samba/smb.conf"


def format_size(size: int) -> str:
    """Bytes as Samba's size syntax, in the largest unit that divides exactly (1T, 500G, 1536M)."""
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def render_smb_conf(share: str, quota: int | None, model: str, time_machine: bool = True) -> str:
    """One share on a standalone, guest-only, SMB2+ server with the fruit Time Machine options.

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
        # macOS: these fruit options only take effect in [global].
        "fruit:aapl": "yes",
        "fruit:model": model,
        "fruit:nfs_aces": "no",
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
        "create mask": "0600",
        "directory mask": "0700",
        "ea support": "yes",
        "fruit:time machine": "yes" if time_machine else "no",
    }
    if quota is not None:
        share_section["fruit:time machine max size"] = format_size(quota)
    return _ini({"global": global_section, share: share_section})


def _ini(sections: dict[str, dict[str, str]]) -> str:
    out = []
    for title, options in sections.items():
        out.append(f"[{title}]")
        out += [f"   {key} = {value}" for key, value in sorted(options.items())]
        out.append("")
    return "\n".join(out)
