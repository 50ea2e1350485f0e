"""Docker labels on what this stack created (timemachine.share, .owner, .role, .stack)."""

import pulumi
import pulumi_docker as docker

from timemachine.planning.labels import PREFIX
from timemachine.planning.labels import stack_id as _stack_id


def stack_id() -> str:
    return _stack_id(pulumi.get_project(), pulumi.get_stack())


def _labels(args_type, values: dict[str, str]) -> list:
    return [args_type(label=f"{PREFIX}.{key}", value=value) for key, value in values.items()]


def container_labels(**values: str) -> list[docker.ContainerLabelArgs]:
    return _labels(docker.ContainerLabelArgs, {**values, "stack": stack_id()})


def volume_label_map(**values: str) -> dict[str, str]:
    """A volume's labels as the engine has them (no stack label: a volume's labels cannot change),
    for the share storage step that makes Samba's state volume."""
    return {f"{PREFIX}.{key}": value for key, value in values.items()}


def volume_labels(**values: str) -> list[docker.VolumeLabelArgs]:
    return _labels(docker.VolumeLabelArgs, values)


def network_labels(**values: str) -> list[docker.NetworkLabelArgs]:
    return _labels(docker.NetworkLabelArgs, {**values, "stack": stack_id()})
