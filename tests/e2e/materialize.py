"""Creates the Docker resources a mock-monitored program run declared, on a real engine.

The Pulumi engine and its docker provider cannot run here, so this harness stands in for them: it
reads each recorded resource's inputs and makes the same network, images, volumes and containers
with the Docker SDK. Any input it does not understand is an error, never silently dropped.
"""
from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Optional

import docker
from docker.types import Healthcheck, IPAMConfig, IPAMPool, Mount

from tests.pulumi_runner import Declared, ProgramRun

# Inputs each type may carry, and what the harness does with them. Anything else: refuse.
KNOWN = {
    "docker:index/network:Network": {"name", "driver", "ipamConfigs", "labels"},
    "docker:index/image:Image": {"imageName", "build", "skipPush", "buildOnPreview"},
    "docker:index/volume:Volume": {"name", "labels"},
    "docker:index/container:Container": {
        "name", "image", "hostname", "restart", "networksAdvanced", "networkMode", "envs", "uploads",
        "volumes", "mounts", "healthcheck", "labels", "ports",
    },
}
IGNORED_TYPES = {
    # Not Docker: the tailnet key lives in Tailscale's control plane (mocked at the monitor).
    "tailscale:index/tailnetKey:TailnetKey",
    "timemachine:index:TimeMachineShare",
    "timemachine:index:CaddyProxy",
}
DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")


class UnsupportedInput(ValueError):
    pass


def _nanoseconds(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise UnsupportedInput(f"duration {text!r}")
    number, unit = match.groups()
    return int(number) * {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}[unit]


def _int(value) -> int:
    # Pulumi's wire format carries numbers as doubles.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise UnsupportedInput(f"integer expected, got {value!r}")
    return int(value)


def _labels(items: list[dict]) -> dict:
    for item in items:
        if set(item) != {"label", "value"}:
            raise UnsupportedInput(f"label fields {sorted(item)}")
    return {item["label"]: item["value"] for item in items}


def upload(container, path: str, content: str, mode: int = 0o644) -> None:
    """Put one file into a (created, not yet started) container, as the provider's `uploads` do."""
    data = content.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(PurePosixPath(path).name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(str(PurePosixPath(path).parent), buffer.getvalue())


@dataclass
class Materialized:
    client: docker.DockerClient
    containers: dict[str, "docker.models.containers.Container"] = field(default_factory=dict)
    networks: list = field(default_factory=list)
    volumes: list = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)

    def remove_containers(self) -> None:
        """What `pulumi destroy` does to containers (volumes are retained on delete, data is a host dir)."""
        for container in self.containers.values():
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        self.containers.clear()

    def remove_all(self) -> None:
        self.remove_containers()
        for network in self.networks:
            try:
                network.remove()
            except docker.errors.NotFound:
                pass
        for volume in self.volumes:
            try:
                volume.remove(force=True)
            except docker.errors.NotFound:
                pass
        self.networks.clear()
        self.volumes.clear()


def materialize(
    run: ProgramRun,
    client: docker.DockerClient,
    *,
    rewrite_upload: Optional[Callable[[str, str, str], str]] = None,
    skip: frozenset[str] = frozenset(),
) -> Materialized:
    """Create everything `run` declared, in declaration order.

    rewrite_upload(container, path, content): lets a test change an upload it says it changes (the
    Caddy listeners, with no tailnet in CI). skip: resource names a test leaves out (and says why).
    """
    done = Materialized(client)
    try:
        for resource in run.resources:
            if resource.type in IGNORED_TYPES or resource.name in skip:
                continue
            if resource.type not in KNOWN:
                raise UnsupportedInput(f"{resource.name}: resource type {resource.type} is not understood")
            unknown = set(resource.inputs) - KNOWN[resource.type]
            if unknown:
                raise UnsupportedInput(f"{resource.name}: inputs {sorted(unknown)} are not understood")
            kind = resource.type.split(":")[-1]
            if kind == "Network":
                _network(done, resource)
            elif kind == "Image":
                _image(done, resource)
            elif kind == "Volume":
                _volume(done, resource)
            else:
                _container(done, resource, rewrite_upload)
    except BaseException:
        done.remove_all()
        raise
    return done


def _network(done: Materialized, resource: Declared) -> None:
    inputs = resource.inputs
    pools = []
    for ipam in inputs.get("ipamConfigs", []):
        if set(ipam) - {"subnet", "gateway"}:
            raise UnsupportedInput(f"{resource.name}: ipam fields {sorted(ipam)}")
        pools.append(IPAMPool(subnet=ipam["subnet"], gateway=ipam.get("gateway")))
    done.networks.append(done.client.networks.create(
        inputs["name"], driver=inputs.get("driver", "bridge"), ipam=IPAMConfig(pool_configs=pools),
        labels=_labels(inputs.get("labels", [])), check_duplicate=True,
    ))


def _image(done: Materialized, resource: Declared) -> None:
    inputs = resource.inputs
    build = inputs["build"]
    if set(build) - {"context", "dockerfile"}:
        raise UnsupportedInput(f"{resource.name}: build fields {sorted(build)}")
    if inputs.get("skipPush") is not True:
        raise UnsupportedInput(f"{resource.name}: only local builds (skipPush) are understood")
    name = inputs["imageName"]
    try:
        done.client.images.get(name)  # tagged by content digest: present means up to date
    except docker.errors.ImageNotFound:
        dockerfile = str(PurePosixPath(build["dockerfile"]).relative_to(build["context"]))
        done.client.images.build(path=build["context"], dockerfile=dockerfile, tag=name, rm=True)
    done.images[resource.name] = name


def _volume(done: Materialized, resource: Declared) -> None:
    inputs = resource.inputs
    done.volumes.append(done.client.volumes.create(inputs["name"], labels=_labels(inputs.get("labels", []))))


def _container(done: Materialized, resource: Declared, rewrite_upload) -> None:
    inputs, api = resource.inputs, done.client.api
    name = inputs["name"]
    binds, mounts, ports, port_bindings = [], [], [], {}
    for volume in inputs.get("volumes", []):
        if set(volume) != {"hostPath", "containerPath"}:
            raise UnsupportedInput(f"{name}: volume fields {sorted(volume)}")
        binds.append(f"{volume['hostPath']}:{volume['containerPath']}:rw")
    for mount in inputs.get("mounts", []):
        if set(mount) != {"type", "source", "target"} or mount["type"] != "volume":
            raise UnsupportedInput(f"{name}: mount {mount}")
        mounts.append(Mount(target=mount["target"], source=mount["source"], type="volume"))
    for port in inputs.get("ports", []):
        if set(port) - {"internal", "external", "protocol"}:
            raise UnsupportedInput(f"{name}: port fields {sorted(port)}")
        internal, protocol = _int(port["internal"]), port.get("protocol", "tcp")
        ports.append((internal, protocol))
        port_bindings[f"{internal}/{protocol}"] = _int(port["external"]) if "external" in port else None
    networks = inputs.get("networksAdvanced", [])
    for network in networks:
        if set(network) - {"name", "ipv4Address"}:
            raise UnsupportedInput(f"{name}: network fields {sorted(network)}")
    if networks and "networkMode" in inputs:
        raise UnsupportedInput(f"{name}: both networkMode and networksAdvanced")
    network_mode = inputs.get("networkMode") or (networks[0]["name"] if networks else None)
    healthcheck = None
    if "healthcheck" in inputs:
        hc = inputs["healthcheck"]
        if set(hc) - {"tests", "interval", "timeout", "startPeriod", "retries"}:
            raise UnsupportedInput(f"{name}: healthcheck fields {sorted(hc)}")
        healthcheck = Healthcheck(
            test=hc["tests"], interval=_nanoseconds(hc.get("interval", "30s")),
            timeout=_nanoseconds(hc.get("timeout", "30s")), start_period=_nanoseconds(hc.get("startPeriod", "0s")),
            retries=_int(hc.get("retries", 3)))
    host_config = api.create_host_config(
        binds=binds, mounts=mounts, port_bindings=port_bindings or None, network_mode=network_mode,
        restart_policy={"Name": inputs["restart"]} if "restart" in inputs else None,
    )
    networking = None
    if networks:
        networking = api.create_networking_config({
            networks[0]["name"]: api.create_endpoint_config(ipv4_address=networks[0].get("ipv4Address"))})
    created = api.create_container(
        inputs["image"], name=name, hostname=inputs.get("hostname"), environment=inputs.get("envs"),
        labels=_labels(inputs.get("labels", [])), host_config=host_config, networking_config=networking,
        ports=ports or None, healthcheck=healthcheck,
    )
    container = done.client.containers.get(created["Id"])
    done.containers[name] = container
    for network in networks[1:]:
        done.client.networks.get(network["name"]).connect(container, ipv4_address=network.get("ipv4Address"))
    for upload_input in inputs.get("uploads", []):
        if set(upload_input) != {"file", "content"}:
            raise UnsupportedInput(f"{name}: upload fields {sorted(upload_input)}")
        content = upload_input["content"]
        if rewrite_upload:
            content = rewrite_upload(name, upload_input["file"], content)
        upload(container, upload_input["file"], content)
    container.start()
