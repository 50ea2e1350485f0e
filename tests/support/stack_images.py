"""The images the stack's program builds (images/<kind>), built here under the names the program gives
them, so that a stack configured with those names — or the program's own build — finds them."""

from __future__ import annotations

import docker

from tests.support.project import ROOT
from timemachine.components.images import local_image_name


def ensure_images(client, kinds: dict[str, dict | None]) -> dict[str, str]:
    """Each of `kinds` (kind → build args) built unless the engine has it; kind → image name."""
    built = {}
    for kind, args in kinds.items():
        name = local_image_name(kind, args)
        try:
            client.images.get(name)
        except docker.errors.ImageNotFound:
            client.images.build(path=str(ROOT / "images" / kind), tag=name, rm=True, timeout=3600, buildargs=args)
        built[kind] = name
    return built
