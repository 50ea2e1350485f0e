"""Docker labels that mark what this stack created (timemachine.share, .owner, .role)."""

import pulumi_docker as docker

PREFIX = "timemachine"


def _labels(args_type, values: dict[str, str]) -> list:
    return [args_type(label=f"{PREFIX}.{key}", value=value) for key, value in values.items()]


def container_labels(**values: str) -> list[docker.ContainerLabelArgs]:
    return _labels(docker.ContainerLabelArgs, values)


def volume_labels(**values: str) -> list[docker.VolumeLabelArgs]:
    return _labels(docker.VolumeLabelArgs, values)


def network_labels(**values: str) -> list[docker.NetworkLabelArgs]:
    return _labels(docker.NetworkLabelArgs, values)
