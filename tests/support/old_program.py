"""An earlier commit's program, run by the real CLI on a stack that the current program then takes
over: how a checkout upgraded in place meets a stack it deployed before."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.project import ROOT
from tests.support.pulumi_cli import Stack


def program_at(commit: str, folder: Path) -> Path:
    """The repository at `commit`, unpacked into `folder` (git archive); a clone without it skips the
    test, and fails it under CI."""
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True)
    if archive.returncode != 0:
        message = f"commit {commit} is not in this clone: {archive.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def run_program_from(stack: Stack, entries: dict[str, Path]) -> None:
    """The stack's project folder holds exactly `entries` (links) beside its stack file: the program
    `pulumi` runs there, and the folder the dynamic provider imports the stored providers from."""
    for entry in stack.project.iterdir():
        if entry != stack.config_file:
            entry.unlink()
    for name, target in entries.items():
        (stack.project / name).symlink_to(target)
