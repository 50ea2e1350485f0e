"""What a plan (the IP plan, the shard plan) reports when it cannot be made: one problem per share or
per setting, raised together."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanProblem:
    share: str | None  # None: a problem of a setting as a whole
    field: str  # the share's own key (e.g. "ip", "proxyShard"), or the setting's path
    message: str


class PlanError(ValueError):
    def __init__(self, problems: list[PlanProblem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.share or p.field}: {p.message}" for p in problems))
