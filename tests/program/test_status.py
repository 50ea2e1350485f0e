"""The status container and the status page's node, as the real program declares them under the mock monitor."""

from __future__ import annotations

import json

import pytest

from tests.support.pulumi_runner import mock_key, run_program
from timemachine.components.status import STATUS_SOURCES

CONTAINER_T = "docker:index/container:Container"

STATUS_STACK = {
    "storageRoot": "/srv/tm",
    "network": {"subnet": "172.24.0.0/24"},
    "tailnet": {"dnsSuffix": "example-tailnet.ts.net", "tagOwners": ["admin@example.com", "tag:ci"]},
    "status": {"collectInterval": "30s"},
    "shares": [
        {"name": "alice", "owner": "alice@example.com", "quota": "1T", "staleAfter": "36h"},
        {"name": "bob", "owner": "bob@example.com"},
    ],
}


@pytest.fixture(scope="module")
def run():
    return run_program(STATUS_STACK)


def test_the_status_container_is_one_more_container_at_its_planned_address(run):
    status = run.named("status-collector")
    assert status.type == CONTAINER_T and status.inputs["name"] == "tm-status"
    assert run.named("status").type == "timemachine:index:StatusService"
    assert status.parent == run.named("status").urn
    # broadcast - 3: below the proxy's and the embedded Headscale's default.
    assert status.inputs["networksAdvanced"][0]["ipv4Address"] == "172.24.0.252"
    assert run.outputs["status"] == {
        "metricsUrl": "http://172.24.0.252:9110/metrics",
        "ip": "172.24.0.252",
        "hostname": "tm-status",
        "pageUrl": "http://tm-status.example-tailnet.ts.net/",
    }


def test_it_reads_the_storage_root_and_caddys_state_read_only_without_a_docker_socket(run):
    c = run.named("status-collector").inputs
    mounts = {m["target"]: m for m in c["mounts"]}
    assert mounts["/storage"] == {"type": "bind", "source": "/srv/tm", "target": "/storage", "readOnly": True}
    assert mounts["/caddy"]["type"] == "volume" and mounts["/caddy"]["readOnly"] is True
    assert mounts["/caddy"]["source"] == "tm-caddy-data"
    assert set(mounts) == {"/storage", "/caddy"}, "guest shares need no credentials"
    assert "docker.sock" not in json.dumps(c)


def test_it_is_hardened_as_the_others(run):
    c = run.named("status-collector").inputs
    assert c["capabilities"] == {"drops": ["ALL"], "adds": ["CAP_DAC_READ_SEARCH"]}
    assert c["securityOpts"] == ["no-new-privileges:true"] and c["readOnly"] is True
    assert set(c["tmpfs"]) == {"/tmp"} and "noexec" in c["tmpfs"]["/tmp"]
    assert c["memory"] == 256 and c["memorySwap"] == 256
    assert run.named("status-collector-pids").inputs["limit"] == 64
    assert c["restart"] == "unless-stopped" and "ports" not in c


def test_it_serves_with_each_shares_inputs(run):
    command = run.named("status-collector").inputs["command"]
    assert command[:9] == [
        "serve",
        "--root",
        "/storage",
        "--port",
        "9110",
        "--bind",
        "0.0.0.0",
        "--min-interval",
        "30s",
    ]
    shares = json.loads(command[command.index("--shares-json") + 1])
    ips = {name: values["ip"] for name, values in run.outputs["shares"].items()}
    assert shares == {
        "caddyStateDir": "/caddy/tailscale",
        "shares": [
            {
                "name": "alice",
                "quota": 1024**4,
                "staleAfterSeconds": 36 * 3600.0,
                "address": ips["alice"],
                "node": "tm-alice",
            },
            {"name": "bob", "staleAfterSeconds": 3 * 86400.0, "address": ips["bob"], "node": "tm-bob"},
        ],
    }


def test_each_smbd_admits_the_status_container_besides_the_proxy(run):
    for name in ("alice", "bob"):
        envs = run.named(f"{name}-samba").inputs["envs"]
        conf = next(e for e in envs if e.startswith("SMB_CONF="))
        # Bridge mode (the default): Caddy's address, then the status container's.
        assert "hosts allow = 172.24.0.254 172.24.0.252 127.0.0.1" in conf


def test_the_image_is_built_from_the_package_folder_by_its_own_dockerfile(run):
    image = run.named("status-image").inputs
    assert image["build"] == {"context": "timemachine", "dockerfile": "images/status/Dockerfile"}
    assert image["imageName"].startswith("tailscale-timemachine/status:")
    assert set(STATUS_SOURCES) == {"__init__.py", "health", "planning"}


def test_the_page_node_gets_a_key_like_a_share_and_a_route_in_caddy(run):
    key = run.named("status-page-key")
    assert key.type == "tailscale:index/tailnetKey:TailnetKey"
    assert key.inputs["tags"] == ["tag:timemachine", "tag:tm-status"]
    assert key.inputs["reusable"] is False and key.inputs["ephemeral"] is False
    config = json.loads(run.named("proxy-config").inputs["config"])
    assert config["apps"]["http"]["servers"]["status"]["listen"] == ["tailscale/tm-status:80"]
    upstream = config["apps"]["http"]["servers"]["status"]["routes"][0]["handle"][0]["upstreams"]
    assert upstream == [{"dial": "172.24.0.252:9110"}]
    assert set(config["apps"]["tailscale"]["nodes"]) == {"tm-alice", "tm-bob", "tm-status"}
    keys = run.named("proxy-config").inputs["keys"]
    assert keys["tm-status"] == mock_key("status-page-key")
    assert run.named("proxy-config").secret_at("keys")


def test_only_the_admins_reach_the_page(run):
    policy = json.loads(run.outputs["tailnetPolicy"])
    rule = {"action": "accept", "src": ["admin@example.com"], "dst": ["tag:tm-status:80"]}
    assert rule in policy["acls"]
    assert policy["tagOwners"]["tag:tm-status"] == ["admin@example.com", "tag:ci", "tag:timemachine"]
    assert {"src": "admin@example.com", "accept": ["tag:tm-status:80"]} in policy["tests"]
    assert {"src": "alice@example.com", "deny": ["tag:tm-status:80"]} in policy["tests"]


def test_on_by_default_and_turned_off_nothing_of_it_is_declared(run):
    default = run_program({k: v for k, v in STATUS_STACK.items() if k != "status"})
    assert {r.name for r in default.resources} == {r.name for r in run.resources}
    plain = run_program({**STATUS_STACK, "status": {"enabled": False}})
    assert not [r for r in plain.resources if "status" in r.name]
    assert "status" not in plain.outputs
    conf = next(e for e in plain.named("alice-samba").inputs["envs"] if e.startswith("SMB_CONF="))
    assert "hosts allow = 172.24.0.254 127.0.0.1" in conf


def test_where_the_page_cannot_have_a_key_the_metrics_stay_and_up_says_why():
    # Provided keys and no key for the page: the status container runs, the page's node is not declared.
    provided = {
        **STATUS_STACK,
        "status": {},
        "tailnet": {"dnsSuffix": "example-tailnet.ts.net", "tagOwners": ["admin@example.com"], "authKeys": "provided"},
        "shares": [{"name": "alice", "owner": "alice@example.com", "authKey": "tskey-auth-" + "a" * 30}],
    }
    run = run_program(provided, secret_keys=["tailscale-timemachine:shares"])
    assert run.named("status-collector").type == CONTAINER_T
    assert not [r for r in run.resources if r.name.startswith("status-page")]
    assert set(json.loads(run.named("proxy-config").inputs["config"])["apps"]["tailscale"]["nodes"]) == {"tm-alice"}
    assert "pageUrl" not in run.outputs["status"] and "metricsUrl" in run.outputs["status"]
    assert any("the status page is off" in w and "status.authKey" in w for w in run.warnings), run.warnings


def test_headscale_keys_and_a_password_share_with_its_credentials_mounted():
    config = {
        **STATUS_STACK,
        "tailnet": {
            "controlUrl": "https://hs.example.com",
            "authKeys": "headscale",
            "tagOwners": ["admin@"],
            "headscaleApiKey": "a" * 40,
        },
        "status": {"enabled": True, "page": True, "admins": ["admin@", "carol@"]},
        "shares": [{"name": "alice", "owner": "alice@", "auth": "password"}],
    }
    run = run_program(config)
    key = run.named("status-page-key")
    assert key.type.endswith("HeadscalePreAuthKey") and key.inputs["tags"] == ["tag:timemachine", "tag:tm-status"]
    assert key.inputs["user_id"] == run.named("headscale-user-admin").inputs.get("user_id", "headscale-user-admin-uid")
    c = run.named("status-collector").inputs
    mounts = {m["target"]: m for m in c["mounts"]}
    assert mounts["/samba/alice"]["readOnly"] is True and mounts["/samba/alice"]["source"] == "tm-alice-samba-state"
    shares = json.loads(c["command"][c["command"].index("--shares-json") + 1])["shares"]
    assert shares[0]["credentialsFile"] == "/samba/alice/private/timemachine.credentials"
    policy = json.loads(run.outputs["tailnetPolicy"])
    assert {"action": "accept", "src": ["admin@", "carol@"], "dst": ["tag:tm-status:80"]} in policy["acls"]
    assert "tests" not in policy


def test_no_page_no_node_but_the_metrics():
    run = run_program({**STATUS_STACK, "status": {"enabled": True, "page": False}})
    assert run.outputs["status"] == {"metricsUrl": "http://172.24.0.252:9110/metrics", "ip": "172.24.0.252"}
    config = json.loads(run.named("proxy-config").inputs["config"])
    assert "http" not in config["apps"] and "tm-status" not in config["apps"]["tailscale"]["nodes"]
