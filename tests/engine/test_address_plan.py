"""Issue 14 with the real engine: 30 shares deployed into a /26 without a pin, then 29 added in
front of them and 10 removed in one change; `pulumi preview` plans nothing for the 20 that stay.

Its own stack, with a namePrefix of its own (so it runs beside any other stack of the tier),
destroyed at the end of this module."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from tests.support.deploy import deployed_stack, fake_keys, stack_config
from tests.support.network import unique_subnet
from tests.support.pulumi_cli import plan, step_name
from timemachine.planning import names
from timemachine.planning.ipplan import home_address, share_capacity

pytestmark = pytest.mark.engine
NAME_PREFIX = "tm-plan"
ORIGINAL = [f"o{i:02d}" for i in range(30)]
# 29: with the status container's address (on by default), the change fills the /26 exactly.
ADDED = [f"n{i:02d}" for i in range(29)]
REMOVED = ORIGINAL[::3]
KEPT = [n for n in ORIGINAL if n not in REMOVED]
SHARE_RESOURCES = ("{}-samba", "{}-storage")


def shares(names: list[str]) -> list[dict]:
    return [{"name": n, "owner": f"{n}@example.com"} for n in names]


@pytest.fixture(scope="module")
def thirty(pulumi_env, docker_client, goproxy, tmp_path_factory):
    network = f"{NAME_PREFIX}-{uuid.uuid4().hex[:6]}"
    # A /26: 60 share addresses, so 30 names collide on home slots (birthday bound), and the
    # change below (49 shares + 10 still held by the removed ones + the status container) fills it exactly.
    subnet = unique_subnet(docker_client).replace("/24", "/26")
    config = stack_config(
        tmp_path_factory.mktemp("storage"),
        network,
        subnet,
        goproxy.build_args(),
        shares(ORIGINAL),
        name_prefix=NAME_PREFIX,
    )
    with deployed_stack(
        docker_client, pulumi_env, tmp_path_factory.mktemp("addressplan"), "addressplan", config, wait=False
    ) as deployment:
        yield {
            "stack": deployment.stack,
            "config": config,
            "network": network,
            "client": docker_client,
            "subnet": ipaddress.IPv4Network(subnet),
            "ips": {n: s["ip"] for n, s in deployment.stack.outputs()["shares"].items()},
        }


def test_a_new_stack_of_thirty_in_a_26_deploys_without_a_pin_at_the_planned_addresses(thirty):
    ips, subnet = thirty["ips"], thirty["subnet"]
    assert sorted(ips) == ORIGINAL and len(set(ips.values())) == 30
    assert share_capacity(subnet) == 60
    # Colliding home slots were resolved by the plan, not by a maintainer.
    assert any(ipaddress.ip_address(ip) != home_address(n, subnet) for n, ip in ips.items())
    for name, ip in ips.items():
        container = thirty["client"].containers.get(names.samba_container(NAME_PREFIX, name))
        attached = container.attrs["NetworkSettings"]["Networks"]
        assert attached[thirty["network"]]["IPAddress"] == ip, name


def test_adding_twenty_nine_and_removing_ten_plans_no_change_for_the_twenty_that_stay(thirty):
    stack, ips = thirty["stack"], thirty["ips"]
    changed = {**thirty["config"], "shares": shares(ADDED + KEPT)}
    stack.write_config(changed)
    stack.set_secrets(fake_keys(changed))
    preview = stack.preview_json().json()
    steps = plan(preview)

    in_state = {step_name(r["urn"]) for r in stack.resources()}
    for name in KEPT:
        for resource in SHARE_RESOURCES:
            assert resource.format(name) in in_state
            assert steps.get(resource.format(name), "same") == "same", (resource.format(name), steps)
    for name in ADDED:
        assert steps.get(f"{name}-samba") == "create", steps
    for name in REMOVED:
        assert steps.get(f"{name}-samba") == "delete", steps

    # The new containers' planned addresses: distinct, and none that a deployed container (kept
    # or about to be deleted after the creates) still holds.
    planned = {
        step_name(s["urn"]): s["newState"]["inputs"]["networksAdvanced"][0]["ipv4Address"]
        for s in preview["steps"]
        if s["op"] == "create" and s["urn"].endswith("-samba") and "newState" in s
    }
    assert sorted(planned) == sorted(f"{n}-samba" for n in ADDED), planned
    assert len(set(planned.values())) == len(ADDED)
    assert not set(planned.values()) & set(ips.values())
