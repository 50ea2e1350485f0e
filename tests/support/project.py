"""Where this repository is, and the name of the Pulumi project it holds."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "tailscale-timemachine"
