"""Fixtures of the health tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.health.bundles import build_storage


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """A storage root with one share per case the collector must handle (see build_storage)."""
    return build_storage(tmp_path / "storage")
