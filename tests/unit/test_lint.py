"""Lint, format and types of the program, its tests and scripts (ruff, mypy; pinned in the dev extras)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.project import ROOT

PROGRAM = ["__main__.py", "timemachine", "components", "tests", "scripts"]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *PROGRAM],
        ["ruff", "format", "--check", *PROGRAM],
        ["mypy", *PROGRAM],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_program_is_clean(command):
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
