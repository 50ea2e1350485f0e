"""Samba's smbtorture, run from a container of tests/images/smbtorture (the Samba release of
images/samba), and its result lines."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support.containers import upload

RESULT = re.compile(r"^(success|failure|skip|error|xfail|uxsuccess): (.+?)( \[)?$")
CREDENTIALS = "/tmp/credentials"


@dataclass
class Outcome:
    outcome: str
    message: str


def parse(output: str) -> dict[str, Outcome]:
    """smbtorture's result lines: `success: NAME`, or `failure|skip|error: NAME [` with its
    message on the lines up to the closing `]`."""
    results: dict[str, Outcome] = {}
    lines = iter(output.splitlines())
    for line in lines:
        match = RESULT.match(line)
        if not match:
            continue
        outcome, name, bracket = match.groups()
        message = []
        if bracket:
            for more in lines:
                if more.startswith("]"):
                    break
                message.append(more)
        assert name not in results, f"{name} reported twice"
        results[name] = Outcome(outcome, "\n".join(message).strip())
    return results


def version(client, image: str) -> str:
    """`smbtorture --version` of the image, e.g. 4.22.11-Debian-4.22.11+dfsg-0+deb13u1."""
    output = client.containers.run(image, ["--version"], network_mode="none", remove=True)
    return output.decode().split()[-1]


def run_suite(
    client,
    image: str,
    netns_of,
    host: str,
    port: int,
    share: str,
    suite: str,
    credentials: str | None = None,
    options: Sequence[str] = (),
) -> tuple[int, str, str]:
    """One suite against //host/share on `port`, from a container in the network namespace of the
    container `netns_of` (the deployed Caddy's, where the proxy path listens). `credentials`: an
    smbclient authentication file (the login of a password share); none: a guest (`-U%`).
    `options`: smbtorture's `--option`s (name=value).
    Returns the exit status, stdout (the results) and stderr."""
    login = [f"--authentication-file={CREDENTIALS}"] if credentials else ["-U%"]
    container = client.containers.create(
        image,
        [f"//{host}/{share}", *login, "-p", str(port), *(f"--option={o}" for o in options), suite],
        network_mode=f"container:{netns_of.id}",
    )
    try:
        if credentials:
            upload(container, CREDENTIALS, credentials, mode=0o600)
        container.start()
        status = container.wait(timeout=900)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        return status, out, err
    finally:
        container.remove(force=True)


@contextmanager
def share_without_fruit(samba, share: str) -> Iterator[str]:
    """A second share on the deployed smbd for as long as the context lasts: `share`'s own section
    (its path and logins) without vfs_fruit, as Samba's selftest has [vfs_wo_fruit] beside
    [vfs_fruit] for vfs.fruit's `invalid AFP_AfpInfo` (option torture:share2), which writes a
    malformed AFP_AfpInfo stream where fruit cannot check it. Written into the container's smb.conf
    (a tmpfs) and loaded with `smbcontrol smbd reload-config`; the deployed file comes back after.
    Yields the second share's name."""
    second = f"{share}-wo-fruit"
    script = f"""set -eu
conf=/etc/samba/smb.conf
cp "$conf" "$conf.deployed"
awk -v share='[{share}]' -v second='[{second}]' '
  $0 == share {{ inside = 1; print second; next }}
  /^\\[/ {{ inside = 0 }}
  inside && $1 !~ /^fruit:/ && $0 !~ /vfs objects/ {{ print }}
' "$conf.deployed" >"$conf.section"
printf '   vfs objects = streams_xattr\\n' >>"$conf.section"
cat "$conf.deployed" "$conf.section" >"$conf"
smbcontrol smbd reload-config
"""
    done = samba.exec_run(["sh", "-c", script])
    assert done.exit_code == 0, done.output.decode()
    try:
        yield second
    finally:
        restore = "mv /etc/samba/smb.conf.deployed /etc/samba/smb.conf && rm /etc/samba/smb.conf.section"
        done = samba.exec_run(["sh", "-c", f"{restore} && smbcontrol smbd reload-config"])
        assert done.exit_code == 0, done.output.decode()
