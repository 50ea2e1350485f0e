"""Real Docker engine fixtures shared by the tiers that use the private engine."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tarfile
import time
from pathlib import Path, PurePosixPath

import pytest

from tests.pulumi_runner import ROOT

ENGINE = ROOT / "scripts" / "engine.sh"


def start_engine() -> str:
    """Start (or reuse) the private engine and make sure the base image exists; returns DOCKER_HOST."""
    done = subprocess.run(["bash", str(ENGINE), "start"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"engine did not start: {done.stderr.strip()}")
    host = done.stdout.strip().splitlines()[-1]
    done = subprocess.run(["bash", str(ENGINE), "base"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"base image could not be made: {done.stderr.strip()}")
    return host


def docker_client_for():
    """A Docker SDK client on the private engine (started if needed)."""
    import docker

    host = start_engine()
    os.environ["DOCKER_HOST"] = host
    return docker.DockerClient(base_url=host, timeout=600)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker_client_for()
    except (RuntimeError, FileNotFoundError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a Docker engine: {exc}")
        pytest.skip(f"no Docker engine could start here: {exc}")
    yield client
    client.close()


def wait_healthy(container, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        health = container.attrs["State"].get("Health", {}).get("Status")
        if health == "healthy":
            return
        if container.status == "exited":
            raise AssertionError(f"{container.name} exited: {container.logs(tail=30).decode()}")
        time.sleep(1)
    raise AssertionError(f"{container.name} not healthy after {timeout}s: {container.logs(tail=30).decode()}")


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{host}:{port} did not accept connections in {timeout}s")


def unique_subnet(client, exclude: frozenset[str] | set[str] = frozenset()) -> str:
    """A /24 in 172.31.x.0 used by no network of this engine or route of this machine."""
    used = {cfg.get("Subnet") for n in client.networks.list() for cfg in (n.attrs.get("IPAM", {}).get("Config") or [])}
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for third in range(200, 250):
        subnet = f"172.31.{third}.0/24"
        if subnet not in used and subnet not in exclude and f"172.31.{third}." not in routes:
            return subnet
    raise RuntimeError("no free test subnet")


def samba_volumes(data: Path) -> dict:
    """Docker SDK `volumes` for running the Samba image by hand as the stack runs it: the share's
    directory at /data and the marker of the storage root beside it (made here), read-only."""
    from timemachine.dynamic.share_storage import MARKER_NAME, MARKER_PATH
    from timemachine.samba.smbconf import DATA_PATH

    marker = data.parent / MARKER_NAME
    marker.touch()
    return {str(data): {"bind": DATA_PATH, "mode": "rw"}, str(marker): {"bind": MARKER_PATH, "mode": "ro"}}


def upload(container, path: str, content: str, mode: int = 0o644) -> None:
    """Put one file into a (created, not yet started) container, as the provider's `uploads` do."""
    data = content.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(PurePosixPath(path).name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(str(PurePosixPath(path).parent), buffer.getvalue())


@pytest.fixture(scope="session")
def pulumi_env():
    """The exports of scripts/pulumi-tools.sh env: the real Pulumi CLI and plugins."""
    from tests.engine.pulumi_cli import tools_or_reason

    env, reason = tools_or_reason()
    if env is None:
        message = f"the Pulumi tools are not built (run scripts/setup.sh): {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return env


@pytest.fixture(scope="session")
def goproxy(docker_client, tmp_path_factory):
    """caddy-tailscale for the Caddy build (see tests/goproxy.py)."""
    from tests.engine.deploy import start_goproxy

    proxy = start_goproxy(docker_client, tmp_path_factory.mktemp("goproxy"))
    yield proxy
    proxy.close()


def run_once(client, image: str, command: list[str], files: dict[str, str]) -> tuple[int, str]:
    """Run `command` once in a throwaway container of `image` (no network) with `files` uploaded;
    returns its exit status and output."""
    container = client.containers.create(image, command=command, network_mode="none")
    try:
        for path, content in files.items():
            upload(container, path, content)
        container.start()
        status = container.wait(timeout=120)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True, v=True)
