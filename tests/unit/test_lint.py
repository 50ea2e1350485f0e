"""Lint, format and types of the program, its tests and scripts (ruff, mypy; pinned in the dev extras)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.pulumi_runner import ROOT

PROGRAM = ["__main__.py", "timemachine", "tests", "scripts"]
# mypy over the tests and scripts is issue 26 part 3, in progress.
TYPED = ["__main__.py", "timemachine"]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *PROGRAM],
        ["ruff", "format", "--check", *PROGRAM],
        ["mypy", *TYPED],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_program_is_clean(command):
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
