"""The tailnet tier: Headscale, the stack's caddy-tailscale nodes and two client nodes (alice,
bob), with the program's own tailnetPolicy loaded. All on `internal` networks."""
from __future__ import annotations

import ipaddress
import json
import uuid

import docker
import pytest

from config.loader import load
from tests.conftest import unique_subnet
from tests.engine.deploy import deploy, new_stack, stack_config, teardown
from tests.pulumi_runner import run_program
from tests.tailnet.harness import CLIENT_CONTEXT, HEADSCALE_CONTEXT, build, start_client, start_headscale

MiB = 1024 * 1024
SHARES = [
    {"name": "alice", "owner": "alice@", "quota": "2G"},
    {"name": "bob", "owner": "bob@", "quota": "1G"},
]
NODE_TAGS = {"alice": ["tag:timemachine", "tag:tm-alice"], "bob": ["tag:timemachine", "tag:tm-bob"]}
FORWARD = {"alice": 4450, "bob": 4451, "bob-to-alice": 4452}


@pytest.fixture(scope="package")
def images(docker_client, goproxy):
    """Headscale (images/headscale) and the test client (tests/images/tailnet-client)."""
    # goproxy: its fixture has made the golang builder base both Dockerfiles start from.
    return {
        "headscale": build(docker_client, HEADSCALE_CONTEXT, "tailscale-timemachine/headscale"),
        "client": build(docker_client, CLIENT_CONTEXT, "tailscale-timemachine/tailnet-client-test"),
    }


def free_addresses(config: dict, count: int) -> list[str]:
    """Addresses in the stack's subnet that are neither a share's, the gateway nor the proxy's."""
    loaded = load(config)
    taken = {str(ip) for ip in loaded.ips.values()}
    hosts = list(ipaddress.IPv4Network(config["network"]["subnet"]).hosts())[1:-1]
    return [str(ip) for ip in reversed(hosts) if str(ip) not in taken][:count]


@pytest.fixture(scope="package")
def tailnet(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    client = docker_client
    storage = tmp_path_factory.mktemp("tn-storage")
    network = f"tm-tailnet-{uuid.uuid4().hex[:6]}"
    subnet = unique_subnet(client)
    # The control network: Headscale's home while the stack does not exist yet.
    control_subnet = unique_subnet(client, exclude={subnet})
    control_net = client.networks.create(
        f"tm-tn-control-{uuid.uuid4().hex[:6]}", driver="bridge", internal=True,
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=control_subnet)]))
    provisional = stack_config(storage, network, subnet, goproxy.build_args(), SHARES, internal=True,
                               control_url="http://headscale:8080")
    hs_ip, alice_ip, bob_ip, spare_ip = free_addresses(
        {**provisional, "shares": [dict(s, authKey="x") for s in SHARES]}, 4)
    control_ip = str(list(ipaddress.IPv4Network(control_subnet).hosts())[9])
    stack = new_stack(tmp_path_factory.mktemp("tailnet-stack"), "tailnet", pulumi_env)
    made = []
    headscale = None
    try:
        headscale = start_headscale(client, images["headscale"], control_net.name, control_ip, "{}")
        # The server URL every node is given is Headscale's address on the stack's network.
        headscale.ip = hs_ip
        made.append(headscale.container)
        keys = {s["name"]: headscale.preauth_key("admin", NODE_TAGS[s["name"]]) for s in SHARES}
        config = stack_config(storage, network, subnet, goproxy.build_args(), SHARES, internal=True,
                              control_url=headscale.url)
        mock = run_program({**config, "shares": [dict(s, authKey=keys[s["name"]]) for s in config["shares"]]})
        policy = mock.outputs["tailnetPolicy"]
        headscale.load_policy(policy)
        deploy(stack, config, keys, wait=False)
        assert json.loads(stack.outputs()["tailnetPolicy"]) == json.loads(policy), "the deployed program's policy"
        client.networks.get(network).connect(headscale.container, ipv4_address=hs_ip)
        nodes = headscale.wait_online(["tm-alice", "tm-bob"])
        clients = {}
        for name, ip in (("alice", alice_ip), ("bob", bob_ip)):
            c = start_client(client, images["client"], network, ip, f"{name}-mac")
            made.append(c.container)
            c.up(headscale.url, headscale.preauth_key(name))
            clients[name] = c
        headscale.wait_online(["alice-mac", "bob-mac"])
        clients["alice"].forward(FORWARD["alice"], "tm-alice", 445)
        clients["bob"].forward(FORWARD["bob"], "tm-bob", 445)
        clients["bob"].forward(FORWARD["bob-to-alice"], "tm-alice", 445)
        yield {"stack": stack, "config": config, "keys": keys, "headscale": headscale, "clients": clients,
               "nodes": nodes, "storage": storage, "network": network, "client": client, "policy": policy,
               "spare_ip": spare_ip}
    finally:
        for container in made:
            container.remove(force=True, v=True)
        teardown(stack, client, storage)
        control_net.remove()

