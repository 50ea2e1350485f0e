"""smb.conf as the Samba release in images/samba reads it: its own testparm, inside the image, over
every rendered variant (the host's testparm is another release), and every fruit option set is one
that release's vfs_fruit(8) documents (testparm accepts any `fruit:` key: a removed one, such as
fruit:posix_rename in 4.22, would be silently ignored)."""

from __future__ import annotations

import re

import pytest

from tests.support.containers import upload
from tests.support.tailnet import build
from timemachine.components.images import IMAGES_DIR
from timemachine.samba.smbconf import render_smb_conf

pytestmark = pytest.mark.conformance

CONF = "/tmp/smb.conf"
VARIANTS = {
    "guest-1T": render_smb_conf("alice", 1024**4, "TimeCapsule8,119", allow_from="172.24.0.254"),
    "guest-unlimited": render_smb_conf("carol-2", None, "MacPro7,1@ECOLOR=226,226,224", allow_from="172.24.0.1"),
    "password-500G": render_smb_conf(
        "bob", 500 * 1024**3, "TimeCapsule8,119", allow_from="172.24.0.254", auth="password"
    ),
    "no-time-machine": render_smb_conf("x", None, "TimeCapsule8,119", allow_from="10.0.0.1", time_machine=False),
}


@pytest.fixture(scope="module")
def samba_image(docker_client) -> str:
    return build(docker_client, IMAGES_DIR / "samba", "tailscale-timemachine/samba")


def in_image(client, image: str, script: str, files: dict[str, str] | None = None) -> str:
    """`sh -c script` once in a throwaway container of the image (its entrypoint aside, no network)
    with `files` put in; its output (stdout and stderr). A non-zero exit fails the test."""
    container = client.containers.create(image, [script], entrypoint=["sh", "-c"], network_mode="none")
    try:
        for path, content in (files or {}).items():
            upload(container, path, content)
        container.start()
        status = container.wait(timeout=120)["StatusCode"]
        output = container.logs().decode()
    finally:
        container.remove(force=True, v=True)
    assert status == 0, output
    return output


def parsed_by_testparm(client, image: str, conf: str, verbose: bool = False) -> dict[str, dict[str, str]]:
    """The image's testparm over `conf`; its sections (lower-cased keys). `verbose`: every
    parameter's effective value, defaults too."""
    output = in_image(client, image, f"testparm -s {'-v ' if verbose else ''}{CONF} 2>&1", {CONF: conf})
    assert "Unknown parameter" not in output and "Ignoring unknown" not in output, output
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and current is not None:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key.lower()] = value
    return sections


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_images_testparm_takes_every_variant(docker_client, samba_image, variant):
    parsed = parsed_by_testparm(docker_client, samba_image, VARIANTS[variant])
    assert list(parsed)[0] == "global" and len(parsed) == 2


def test_each_login_reads_as_meant(docker_client, samba_image):
    guest = parsed_by_testparm(docker_client, samba_image, VARIANTS["guest-1T"], verbose=True)
    g, s = guest["global"], {**guest["global"], **guest["alice"]}
    assert g["map to guest"] == "Bad User" and g["guest account"] == "timemachine"
    assert s["guest ok"] == "Yes" and s["guest only"] == "Yes"
    password = parsed_by_testparm(docker_client, samba_image, VARIANTS["password-500G"], verbose=True)
    g, s = password["global"], {**password["global"], **password["bob"]}
    assert g["map to guest"] == "Never" and g["restrict anonymous"] == "2"
    # testparm names mandatory `required`.
    assert g["server signing"] == "required"
    assert s["guest ok"] == "No" and s["valid users"] == "timemachine"


def test_durability_settings_are_in_effect_on_the_share(docker_client, samba_image):
    """What durable handles need (smb.conf(5)) and what fruit:time machine enforces, as this
    release's testparm reads them, so no default of another Samba version can change them."""
    parsed = parsed_by_testparm(docker_client, samba_image, VARIANTS["guest-1T"], verbose=True)
    # A share lists only what differs from [global], whose -v listing has every default.
    g, s = parsed["global"], {**parsed["global"], **parsed["alice"]}
    assert g["smb2 leases"] == "Yes"
    assert s["durable handles"] == "Yes" and s["oplocks"] == "Yes"
    assert s["kernel oplocks"] == "No" and s["kernel share modes"] == "No" and s["posix locking"] == "No"
    assert s["strict sync"] == "Yes" and s["sync always"] == "No"
    assert s["fruit:time machine"] == "yes" and s["fruit:time machine max size"] == "1T"
    assert s["vfs objects"].split()[-2:] == ["fruit", "streams_xattr"]


def test_every_fruit_option_is_one_this_release_documents(docker_client, samba_image):
    manual = in_image(docker_client, samba_image, "zcat /usr/share/man/man8/vfs_fruit.8.gz")
    documented = set(re.findall(r"^(fruit:[a-z_ ]+?) = ", manual, re.MULTILINE))
    used = {
        key.strip()
        for conf in VARIANTS.values()
        for line in conf.splitlines()
        if line.strip().startswith("fruit:")
        for key in [line.split("=", 1)[0]]
    }
    assert used <= documented, f"not in this release's vfs_fruit(8): {sorted(used - documented)}"
    assert "fruit:posix_rename" not in documented  # removed in 4.22.0 (its WHATSNEW)


def test_the_image_carries_a_samba_that_renames_open_sparsebundles(docker_client, samba_image):
    version = in_image(docker_client, samba_image, "smbd --version").split()[-1]
    checked = in_image(docker_client, samba_image, f"sh /usr/local/bin/samba-version.sh 'Version {version}'")
    assert "usable for Time Machine" in checked
