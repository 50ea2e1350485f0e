"""authKeys: headscale against an external Headscale (tailnet.headscale.embedded off) over HTTPS with a
private CA (tailnet.controlCaCertificate): users and keys through its REST API with an API key; a
wrong key and a Headscale that does not answer stop the update with a clear error and leave the
state as it was. The program on this machine reaches it by its name, as an operator's DNS gives it."""

from __future__ import annotations

import ipaddress
import uuid
from contextlib import ExitStack

import docker
import pytest

from tests.support.containers import remove_containers
from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet
from tests.support.tailnet import HEADSCALE_NAME, hosts_entry, start_client, start_headscale

pytestmark = pytest.mark.tailnet

SHARES = [{"name": "alice", "owner": "alice@"}]
NAME_PREFIX = "tm-ext"


@pytest.fixture(scope="module")
def external(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    """Headscale on a network of its own with an API key, and the stack initialised with its config
    but neither the API key nor a first `pulumi up` (the tests give both)."""
    subnet = unique_subnet(docker_client)
    control_subnet = unique_subnet(docker_client, exclude={subnet})
    hs_ip = str(ipaddress.IPv4Network(control_subnet).network_address + 10)
    made: list = []
    with ExitStack() as cleanup:
        control_net = docker_client.networks.create(
            f"{NAME_PREFIX}-control-{uuid.uuid4().hex[:6]}",
            driver="bridge",
            internal=True,
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=control_subnet)]),
        )
        cleanup.callback(control_net.remove)
        cleanup.callback(remove_containers, made)
        headscale = start_headscale(docker_client, images["headscale"], control_net.name, hs_ip, hs_ip, "{}")
        made.append(headscale.container)
        cleanup.enter_context(hosts_entry(HEADSCALE_NAME, hs_ip))
        api_key = headscale.cli("apikeys", "create", "--expiration", "1h").strip().splitlines()[-1]
        config = stack_config(
            tmp_path_factory.mktemp("external-storage"),
            f"{NAME_PREFIX}-{uuid.uuid4().hex[:6]}",
            subnet,
            goproxy.build_args(),
            SHARES,
            name_prefix=NAME_PREFIX,
            internal=True,
            control_url=headscale.url,
        )
        config["tailnet"] = {**config["tailnet"], "authKeys": "headscale", "controlCaCertificate": headscale.ca_pem}
        deployment = cleanup.enter_context(
            deployed_stack(
                docker_client, pulumi_env, tmp_path_factory.mktemp("external"), "external", config, up=False, made=made
            )
        )
        yield {
            "stack": deployment.stack,
            "config": config,
            "headscale": headscale,
            "api_key": api_key,
            "made": made,
            "control_net": control_net,
            "client": docker_client,
            "images": images,
        }


def dynamic_resources(stack) -> dict[str, str]:
    """The Headscale users and keys in the stack's state (the Caddy config is a dynamic resource too)."""
    return {
        r["urn"].split("::")[-1]: r["id"]
        for r in stack.resources()
        if r["urn"].split("::")[2].endswith((":HeadscaleUser", ":HeadscalePreAuthKey"))
    }


def test_a_wrong_api_key_stops_before_any_user_with_a_clear_error(external):
    stack, headscale = external["stack"], external["headscale"]
    # Well-formed, of a real key's prefix, with the wrong secret: `<prefix>.<secret>` before 0.28,
    # `hskey-api-<12 characters>-<secret>` from 0.28 (URL-safe characters, "-" among them).
    key = external["api_key"]
    cut = len("hskey-api-") + 12 if key.startswith("hskey-api-") else key.index(".")
    stack.set_secrets({"tailnet.headscaleApiKey": f"{key[: cut + 1]}{'x' * len(key[cut + 1 :])}"})
    failed = stack.up(check=False)
    assert failed.code != 0
    assert "refused the API key (401 Unauthorized)" in failed.output, failed.output[-3000:]
    assert "pulumi config set --secret --path tailnet.headscaleApiKey" in failed.output
    assert dynamic_resources(stack) == {}
    assert {u["name"] for u in headscale.cli_json("users", "list") or []} == set()


def test_the_right_key_makes_users_and_keys_a_mac_can_join_with(external):
    stack, headscale = external["stack"], external["headscale"]
    stack.set_secrets({"tailnet.headscaleApiKey": external["api_key"]})
    stack.up()
    made = dynamic_resources(stack)
    # (The status page's key too where the status page is on.)
    assert set(made) - {"status-page-key"} == {
        "headscale-user-admin",
        "headscale-user-alice",
        "alice-key",
        "join-alice-mac",
    }
    users = {u["name"]: str(u["id"]) for u in headscale.cli_json("users", "list")}
    assert made["headscale-user-alice"] == users["alice"] and made["headscale-user-admin"] == users["admin"]
    share_key = headscale.keys(users["admin"])
    share_key = [k for k in share_key if "tag:tm-status" not in k["acl_tags"]]  # the status page's, if on
    assert [sorted(k["acl_tags"]) for k in share_key] == [["tag:timemachine", "tag:tm-alice"]]
    command = stack.outputs(show_secrets=True)["joinCommands"]["alice-mac"]
    ip = str(ipaddress.IPv4Network(external["control_net"].attrs["IPAM"]["Config"][0]["Subnet"]).network_address + 20)
    mac = start_client(external["client"], external["images"]["client"], external["control_net"].name, ip, "alice-mac")
    external["made"].append(mac.container)
    mac.join(command)
    nodes = headscale.wait_online(["alice-mac"])
    assert nodes["alice-mac"]["user"]["name"] == "alice"
    stack.preview_json("--expect-no-changes")


def test_headscale_not_answering_stops_a_rekey_and_keeps_the_old_key(external):
    stack, headscale = external["stack"], external["headscale"]
    key_urn = next(r["urn"] for r in stack.resources() if r["urn"].endswith("::alice-key"))
    old = dynamic_resources(stack)["alice-key"]
    headscale.container.stop(timeout=10)
    try:
        failed = stack.up("--replace", key_urn, check=False)
        assert failed.code != 0
        assert f"Headscale at {headscale.url} does not answer" in failed.output, failed.output[-3000:]
        assert dynamic_resources(stack)["alice-key"] == old
    finally:
        headscale.container.start()
        headscale.wait_ready()
    stack.up("--replace", key_urn)
    assert dynamic_resources(stack)["alice-key"] != old
