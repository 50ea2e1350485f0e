"""Two stacks, `dev` and `staging`, side by side on one Docker engine: every container, volume and
network name is the stack's own (namePrefix), each serves its own data through its own proxy, and
destroying one leaves the other untouched; a second stack with the first one's prefix is stopped
before it declares anything, a renamed one is not. (Its own stacks: `dev` has the default prefix,
which no other stack of the tier uses, so the module runs in any order.)"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet, wait_port
from tests.support.proxy_path import proxy_path
from tests.support.smb import read_file, write_file
from timemachine.planning import names

pytestmark = pytest.mark.engine

SHARE = "alice"  # the same share in both stacks: its names must still differ
PREFIXES = {"dev": names.DEFAULT_PREFIX, "staging": "tm-staging"}
STACK_LABEL = "timemachine.stack"


def label_of(stack: str) -> str:
    return f"tailscale-timemachine/{stack}"


def engine_snapshot(client) -> tuple:
    """Every container (id, start time), network and volume on the engine."""
    return (
        {c.id: c.attrs["State"]["StartedAt"] for c in client.containers.list(all=True)},
        {n.id for n in client.networks.list()},
        {v.name for v in client.volumes.list()},
    )


def objects_of(client, stack: str) -> dict:
    """What the engine holds under `stack`'s label: container name → (its volumes, its networks)."""
    found = {}
    for container in client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={label_of(stack)}"}):
        volumes = sorted(m["Name"] for m in container.attrs["Mounts"] if m["Type"] == "volume")
        found[container.name] = (volumes, sorted(container.attrs["NetworkSettings"]["Networks"]))
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_dev_and_staging_run_side_by_side(pulumi_env, docker_client, goproxy, tmp_path):
    client = docker_client
    expected_volumes = {s: names.volumes(p, [SHARE], headscale=False) for s, p in PREFIXES.items()}
    storage = {s: tmp_path / f"storage-{s}" for s in PREFIXES}
    dev_subnet = unique_subnet(client)
    # Neither sets network.name: each derives it from its prefix (timemachine for the default).
    configs = {
        "dev": stack_config(
            storage["dev"], None, dev_subnet, goproxy.build_args(), [{"name": SHARE, "owner": "alice@"}]
        ),
        "staging": stack_config(
            storage["staging"],
            None,
            unique_subnet(client, {dev_subnet}),
            goproxy.build_args(),
            [{"name": SHARE, "owner": "alice@"}],
        ),
    }
    with (
        deployed_stack(client, pulumi_env, tmp_path / "dev", "dev", configs["dev"]) as dev_deployment,
        deployed_stack(
            client, pulumi_env, tmp_path / "staging", "staging", configs["staging"], up=False
        ) as staging_deployment,
    ):
        dev, staging = dev_deployment.stack, staging_deployment.stack
        before = engine_snapshot(client)

        # staging without a prefix of its own would take dev's names (and share its volumes).
        for command in (staging.preview_json, staging.up):
            refused = command(check=False)
            assert refused.code != 0, refused.output[-3000:]
            for part in (
                "namePrefix 'tm'",
                "container 'tm-caddy'",
                f"stack {label_of('dev')}",
                "pulumi config set namePrefix tm-staging",
            ):
                assert part in refused.output, (part, refused.output[-3000:])
            assert "Traceback" not in refused.output, refused.output[-3000:]
        assert engine_snapshot(client) == before, "the refused stack created, changed or removed something"
        # Its state: the stack itself and the engine's own provider (the state read), no resource.
        assert [r["type"] for r in staging.resources() if not r["type"].startswith("pulumi:")] == []

        configs["staging"]["namePrefix"] = PREFIXES["staging"]
        staging.write_config(configs["staging"])
        staging.up()
        for share in staging.outputs()["shares"].values():
            wait_port(share["ip"], 445)

        for stack, prefix in PREFIXES.items():
            assert objects_of(client, stack) == {
                names.caddy_container(prefix): ([names.caddy_volume(prefix)], [names.network(prefix)]),
                names.samba_container(prefix, SHARE): ([names.samba_volume(prefix, SHARE)], [names.network(prefix)]),
                # The status container (on by default) reads Caddy's node state, read-only.
                names.status_container(prefix): ([names.caddy_volume(prefix)], [names.network(prefix)]),
            }, stack
            assert client.networks.get(names.network(prefix)).attrs["Labels"][STACK_LABEL] == label_of(stack)
        assert names.network("tm") == "timemachine" and names.network("tm-staging") == "tm-staging-network"
        # dev was not touched by staging's `up`, and plans nothing with staging beside it.
        dev_containers = {
            c.id: c.attrs["State"]["StartedAt"]
            for c in client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={label_of('dev')}"})
        }
        assert dev_containers.items() <= before[0].items()
        dev.run("preview", "--expect-no-changes", *dev.stack_args())

        # Each stack's Samba serves its own data, through its own proxy.
        payloads = {s: os.urandom(1024 * 1024) for s in PREFIXES}
        for stack, prefix in PREFIXES.items():
            with proxy_path(client, [SHARE], name_prefix=prefix) as paths:
                host, port = paths[SHARE]
                write_file(host, SHARE, f"{stack}.bin", payloads[stack], port=port)
                assert read_file(host, SHARE, f"{stack}.bin", port=port) == payloads[stack]
        for stack in PREFIXES:
            landed = sorted(p.name for p in (storage[stack] / SHARE).iterdir() if p.suffix == ".bin")
            assert landed == [f"{stack}.bin"], (stack, landed)
            assert sha((storage[stack] / SHARE / f"{stack}.bin").read_bytes()) == sha(payloads[stack])

        # Destroying staging takes its containers and network, keeps its volumes, leaves dev alone.
        staging.run("state", "unprotect", "--all", "--yes", *staging.stack_args())
        staging.run("destroy", "--yes", "--skip-preview", *staging.stack_args())
        assert objects_of(client, "staging") == {}
        assert not client.networks.list(names=[names.network(PREFIXES["staging"])])
        assert expected_volumes["staging"] == [client.volumes.get(v).name for v in expected_volumes["staging"]]
        assert {
            c.id: c.attrs["State"]["StartedAt"]
            for c in client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={label_of('dev')}"})
        } == dev_containers
        assert all(
            c.status == "running"
            for c in client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={label_of('dev')}"})
        )
        assert client.networks.get("timemachine").id in before[1]
        with proxy_path(client, [SHARE]) as paths:
            assert read_file(paths[SHARE][0], SHARE, "dev.bin", port=paths[SHARE][1]) == payloads["dev"]

        # A new prefix on the deployed dev would replace everything: refused, naming the old one.
        moved = {**configs["dev"], "namePrefix": "tm-moved"}
        dev.write_config(moved)
        refused = dev.preview_json(check=False)
        assert refused.code != 0 and "pulumi config set namePrefix tm." in refused.output, refused.output[-3000:]
        dev.write_config(configs["dev"])

        # A renamed stack's containers still carry its old name; its state says they are its own.
        dev.rename("prod")
        renamed = dev.preview_json()
        assert {step["op"] for step in renamed.json()["steps"]} <= {
            "same",
            "replace",
            "update",
            "create-replacement",
            "delete-replaced",
        }, renamed.stdout[-3000:]
