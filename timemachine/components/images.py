"""Local image builds (no registry): one `docker.Image` per Dockerfile folder under images/."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pulumi
import pulumi_docker as docker

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The build arg images.rebuild reaches every Dockerfile under images/ by: each uses it in the RUN
# that installs its packages, so a new value misses Docker's layer cache there (and after).
REBUILD_ARG = "REBUILD"


def _source_files(folder: Path) -> list[Path]:
    # Bytecode caches are the interpreter's, not the source: never hashed, never sent (Dockerfile.dockerignore).
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def context_digest(
    folder: Path, build_args: Mapping[str, str] | None = None, package_sources: Sequence[str] = ()
) -> str:
    """A short hash of every file in a build context, of the package sources it takes and of the build
    args: a changed Dockerfile, source file or argument gives a new tag."""
    digest = hashlib.sha256()
    for path in _source_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for source in sorted(package_sources):
        top = PACKAGE_DIR / source
        for path in [top] if top.is_file() else _source_files(top):
            name = path.relative_to(PACKAGE_DIR).as_posix()
            digest.update(b"src\0" + name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name, value in sorted((build_args or {}).items()):
        digest.update(b"arg\0" + name.encode() + b"\0" + value.encode() + b"\0")
    return digest.hexdigest()[:12]


def image_build_args(build_args: Mapping[str, str] | None, rebuild: str = "") -> dict[str, str]:
    """The build args of an image: the given ones and, with images.rebuild set, REBUILD (which wins)."""
    return {**(build_args or {}), **({REBUILD_ARG: rebuild} if rebuild else {})}


def local_image_name(
    kind: str, build_args: Mapping[str, str] | None = None, package_sources: Sequence[str] = (), rebuild: str = ""
) -> str:
    args = image_build_args(build_args, rebuild)
    return f"tailscale-timemachine/{kind}:{context_digest(IMAGES_DIR / kind, args, package_sources)}"


def local_image(
    resource_name: str,
    kind: str,
    build_args: Mapping[str, str] | None = None,
    opts: pulumi.ResourceOptions | None = None,
    *,
    package_sources: Sequence[str] = (),
    rebuild: str = "",
) -> docker.Image:
    """Build images/<kind> into the local engine, tagged by content so rebuilds show in the diff.

    The context is given relative to the project folder (the engine runs the program and its
    providers there), so a checkout at another path (every CI runner) plans no change; its
    Dockerfile is the context's own.

    `package_sources`: parts of this package the image runs (e.g. "health", "planning", "__init__.py").
    The context is then the package folder itself, cut down to those parts by
    images/<kind>/Dockerfile.dockerignore (the provider reads `<Dockerfile>.dockerignore`), with the
    Dockerfile from images/<kind>: nothing else of the checkout (.venv, tests) is sent to the engine,
    and each part is hashed into the tag.

    `rebuild`: images.rebuild, passed as the REBUILD build arg and so hashed into the tag: a new value
    builds the image again without reusing its package layer, and replaces its containers.
    """
    args = image_build_args(build_args, rebuild) or None
    build = docker.DockerBuildArgs(context=f"{IMAGES_DIR.name}/{kind}", args=args)
    if package_sources:
        build = docker.DockerBuildArgs(
            context=PACKAGE_DIR.name, dockerfile=f"{IMAGES_DIR.name}/{kind}/Dockerfile", args=args
        )
    return docker.Image(
        resource_name,
        image_name=local_image_name(kind, args, package_sources),
        build=build,
        skip_push=True,
        opts=opts,
    )
