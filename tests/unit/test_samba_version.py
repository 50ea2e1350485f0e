"""The Samba version check the image build runs (images/samba/samba-version.sh), over version strings."""

from __future__ import annotations

import subprocess

import pytest

from timemachine.components.images import IMAGES_DIR

SCRIPT = IMAGES_DIR / "samba" / "samba-version.sh"


def check(version: str) -> subprocess.CompletedProcess:
    # /bin/sh, as in the image: the script must stay POSIX (dash here, dash there).
    return subprocess.run(["/bin/sh", str(SCRIPT), version], capture_output=True, text=True)


@pytest.mark.parametrize(
    "version",
    [
        "Version 4.22.6-Debian-4.22.6+dfsg-0+deb13u1",
        "Version 4.22.11-Debian-4.22.11+dfsg-0+deb13u1",  # trixie
        "Version 4.22.6-Debian-4.22.6+dfsg-1~bpo12+1",  # bookworm-backports
        "4.23.3",
        "4.23.10",
        "4.24.0",
        "4.24.0rc1",
        "5.0.0",
    ],
)
def test_accepts_a_samba_that_renames_open_sparsebundles(version):
    done = check(version)
    assert done.returncode == 0, done.stderr
    assert "usable" in done.stdout


@pytest.mark.parametrize(
    "version",
    [
        "Version 4.17.12-Debian",  # bookworm
        "4.21.9",
        "4.22.0",
        "4.22.0rc4",
        "4.22.5",
        "Version 4.22.5-SerNet-RedHat-1.el9",
        "4.23.0",
        "4.23.0rc1",
        "4.23.2",
        "3.6.25",
    ],
)
def test_refuses_before_4_22_6_and_4_23_0_to_4_23_2(version):
    done = check(version)
    assert done.returncode == 1, done.stdout
    assert "15926" in done.stderr and "4.22.6" in done.stderr


@pytest.mark.parametrize("text", ["", "Version", "smbd: command not found", "4.22"])
def test_something_that_is_no_version_is_refused_too(text):
    done = check(text)
    assert done.returncode == 2
    assert "not a Samba version" in done.stderr


def test_the_image_build_runs_the_check_on_its_own_smbd():
    dockerfile = (IMAGES_DIR / "samba" / "Dockerfile").read_text()
    assert 'samba-version.sh "$(smbd --version)"' in dockerfile
