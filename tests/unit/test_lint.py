"""Lint, format and types of the program (ruff, mypy; pinned in requirements-dev.txt)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.pulumi_runner import ROOT

PROGRAM = ["__main__.py", "components", "config"]


@pytest.mark.parametrize("command", [
    ["ruff", "check", *PROGRAM],
    ["ruff", "format", "--check", *PROGRAM],
    ["mypy", *PROGRAM],
], ids=["ruff-check", "ruff-format", "mypy"])
def test_program_is_clean(command):
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
