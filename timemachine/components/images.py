"""Local image builds (no registry): one `docker.Image` per Dockerfile folder under images/."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pulumi_docker as docker

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"


def context_digest(folder: Path, build_args: Mapping[str, str] | None = None) -> str:
    """A short hash of every file in a build context and of the build args: a changed Dockerfile
    or argument gives a new tag."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name, value in sorted((build_args or {}).items()):
        digest.update(b"arg\0" + name.encode() + b"\0" + value.encode() + b"\0")
    return digest.hexdigest()[:12]


def local_image_name(kind: str, build_args: Mapping[str, str] | None = None) -> str:
    return f"tailscale-timemachine/{kind}:{context_digest(IMAGES_DIR / kind, build_args)}"


def local_image(
    resource_name: str,
    kind: str,
    build_args: Mapping[str, str] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> docker.Image:
    """Build images/<kind> into the local engine, tagged by content so rebuilds show in the diff.

    The context is given relative to the project folder (the engine runs the program and its
    providers there), so a checkout at another path (every CI runner) plans no change; its
    Dockerfile is the context's own.
    """
    return docker.Image(
        resource_name,
        image_name=local_image_name(kind, build_args),
        build=docker.DockerBuildArgs(
            context=f"{IMAGES_DIR.name}/{kind}", args=dict(build_args) if build_args else None
        ),
        skip_push=True,
        opts=opts,
    )
