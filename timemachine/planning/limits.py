"""What a container's limits are, as the components read them from a config section."""

from __future__ import annotations

from typing import Protocol


class Limits(Protocol):
    """A config section with container limits (timemachine/config/models.py): memory in MiB, processes."""

    @property
    def memory_limit(self) -> int: ...
    @property
    def process_limit(self) -> int: ...
