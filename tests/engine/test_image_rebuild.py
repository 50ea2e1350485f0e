"""A security rebuild on the real engine: a new `images.rebuild` label builds every image again
without reusing the layer that installs its Debian packages, replaces the containers that run
them, and loses nothing — the share's backups, Samba's state and Caddy's node state are where they
were. (Its own stack and prefix; one share.)"""

from __future__ import annotations

import os

import pytest

from tests.support.deploy import DATA_UID, deployed_stack, stack_config
from tests.support.network import unique_subnet, wait_port
from tests.support.pulumi_cli import plan
from timemachine.planning import names

pytestmark = pytest.mark.engine

PREFIX = "tm-rebuild"
SHARE = "alice"
# Fixed, so a warm build cache has its layers; what is tested is that the label moves the tags and
# the containers, and that the package layer differs from the one built without it.
LABEL = "engine-test-1"


def package_layer(client, image: str) -> int:
    """When the layer of the RUN that installs the Debian packages was built (the image's history;
    a layer reused from the build cache keeps its time)."""
    runs = [h for h in client.images.get(image).history() if "apt-get update" in (h.get("CreatedBy") or "")]
    assert len(runs) == 1, [h.get("CreatedBy") for h in runs]
    return runs[0]["Created"]


def test_a_new_label_rebuilds_the_images_and_replaces_their_containers_keeping_every_byte(
    pulumi_env, docker_client, goproxy, tmp_path
):
    client = docker_client
    config = stack_config(
        tmp_path / "storage",
        None,
        unique_subnet(client),
        goproxy.build_args(),
        [{"name": SHARE, "owner": "alice@"}],
        name_prefix=PREFIX,
    )
    samba, caddy = names.samba_container(PREFIX, SHARE), names.caddy_container(PREFIX)
    with deployed_stack(client, pulumi_env, tmp_path / "stack", "rebuild", config) as deployment:
        stack = deployment.stack
        backup = tmp_path / "storage" / SHARE / "Mac.sparsebundle" / "token"
        backup.parent.mkdir()
        backup.write_bytes(payload := os.urandom(4096))
        # The data owner's, as a Mac's backup over SMB is (the Samba entrypoint refuses another's).
        for path in (backup.parent, backup):
            os.chown(path, DATA_UID, DATA_UID)
        containers = {name: client.containers.get(name) for name in (samba, caddy)}
        images = {name: c.attrs["Config"]["Image"] for name, c in containers.items()}
        layers = {name: package_layer(client, image) for name, image in images.items()}
        # A file on each container's state volume (Samba's state, Caddy's node state and config).
        marks = {samba: "/var/lib/samba/rebuild-mark", caddy: "/data/rebuild-mark"}
        token = os.urandom(8).hex()
        for name, path in marks.items():
            assert containers[name].exec_run(["sh", "-c", f"echo {token} > {path}"]).exit_code == 0

        stack.write_config({**stack.config(), "images": {"rebuild": LABEL}})
        steps = plan(stack.preview_json().json())
        assert steps["samba-image"] == steps["caddy-image"] == "update", steps
        assert steps[f"{SHARE}-samba"] == steps["proxy-caddy"] == "replace", steps
        assert not [name for name, op in steps.items() if op == "delete"], steps
        # The volumes are not among the steps that do anything (the preview lists `same` only for some).
        assert {op for name, op in steps.items() if name.endswith(("-state", "-data"))} <= {"same"}, steps
        stack.up()

        for name, before in containers.items():
            now = client.containers.get(name)
            assert now.id != before.id, f"{name} was not replaced"
            image = now.attrs["Config"]["Image"]
            assert image != images[name] and image.rsplit(":", 1)[0] == images[name].rsplit(":", 1)[0]
            assert package_layer(client, image) > layers[name], f"{name}: the package layer was reused"
            code, out = now.exec_run(["cat", marks[name]])
            assert (code, out.decode().strip()) == (0, token), f"{name}: its state volume is not the one it had"
        assert backup.read_bytes() == payload
        wait_port(stack.outputs()["shares"][SHARE]["ip"], 445)
        stack.preview_json("--expect-no-changes")
