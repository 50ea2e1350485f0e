"""Docker labels that mark what this stack created (timemachine.share, .owner, .role)."""
import pulumi_docker as docker

PREFIX = "timemachine"


def container_labels(**values: str) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=f"{PREFIX}.{key}", value=value) for key, value in values.items()]


def volume_labels(**values: str) -> list[docker.VolumeLabelArgs]:
    return [docker.VolumeLabelArgs(label=f"{PREFIX}.{key}", value=value) for key, value in values.items()]


def network_labels(**values: str) -> list[docker.NetworkLabelArgs]:
    return [docker.NetworkLabelArgs(label=f"{PREFIX}.{key}", value=value) for key, value in values.items()]
