"""Builds images/caddy for the tests: the production Dockerfile, with every module the proxy serves.

caddy-tailscale's pinned version is asked for first; where the Go module proxy refuses it (as it
does on this project's CI machine), the same Dockerfile is built with caddy-l4 alone, and the tests
say so. The production Dockerfile keeps its pins either way.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from components.images import IMAGES_DIR, context_digest

DOCKERFILE = IMAGES_DIR / "caddy" / "Dockerfile"
ENGINE = Path(__file__).resolve().parents[2] / "scripts" / "engine.sh"


def pinned_modules() -> list[str]:
    match = re.search(r'^ARG CADDY_MODULES="([^"]+)"', DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "images/caddy/Dockerfile must pin CADDY_MODULES"
    return match.group(1).split()


def fetchable(module: str) -> tuple[bool, str]:
    """Ask the Go module proxy for one exact module version (seconds; no build)."""
    done = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True,
                          cwd="/tmp", timeout=300)
    return done.returncode == 0, (done.stdout + done.stderr).strip()[-400:]


def build_caddy_image(client) -> tuple[str, list[str], dict[str, str]]:
    """Returns (image tag, modules built in, refused module → reason)."""
    subprocess.run(["bash", str(ENGINE), "golang"], check=True, capture_output=True)
    modules, refused = [], {}
    for module in pinned_modules():
        ok, detail = fetchable(module)
        if ok:
            modules.append(module)
        else:
            refused[module] = detail
    assert any("caddy-l4" in m for m in modules), f"caddy-l4 could not be fetched: {refused}"
    flavour = "full" if not refused else "l4-only"
    tag = f"tailscale-timemachine/caddy-test:{context_digest(IMAGES_DIR / 'caddy')}-{flavour}"
    try:
        client.images.get(tag)
    except Exception:  # noqa: BLE001 - ImageNotFound: build it
        client.images.build(path=str(IMAGES_DIR / "caddy"), tag=tag, rm=True,
                            buildargs={"CADDY_MODULES": " ".join(modules)}, timeout=3000)
    return tag, modules, refused
