"""Caddy shards (proxy.shards) as the real program declares them under the mock monitor: which shard
serves which share, each shard's names, address, config, keys and limits, each smbd's allow list, the
status container's view of every shard, the outputs, and the refusals."""

from __future__ import annotations

import json

import pulumi
import pytest

from tests.support.pulumi_runner import mock_key, run_program

CONTAINER_T = "docker:index/container:Container"
VOLUME_T = "docker:index/volume:Volume"
PROXY_T = "timemachine:index:CaddyProxy"

SHARES = [{"name": n, "owner": f"{n}@example.com"} for n in ("alice", "bob", "carol", "dave")]
SHARDED = {
    "storageRoot": "/srv/tm",
    "tailnet": {"tagOwners": ["admin@example.com"]},
    "proxy": {"shards": 3},
    "shares": SHARES,
}


@pytest.fixture(scope="module")
def run():
    return run_program(SHARDED)


def caddy_config(run, shard: int) -> dict:
    return json.loads(run.named("proxy-config" if shard == 0 else f"proxy-{shard}-config").inputs["config"])


def smb_conf(run, share: str) -> str:
    envs = run.named(f"{share}-samba").inputs["envs"]
    return next(e for e in envs if e.startswith("SMB_CONF="))


def test_shares_fill_the_emptiest_shard_and_the_status_page_is_on_shard_0(run):
    shards = {name: share["proxyShard"] for name, share in run.outputs["shares"].items()}
    # tm-status on shard 0: alice and bob go to the empty shards 1 and 2, carol to 0, dave to 1.
    assert shards == {"alice": 1, "bob": 2, "carol": 0, "dave": 1}
    assert run.outputs["proxyShards"] == [
        {
            "shard": 0,
            "container": "tm-caddy",
            "ip": "172.24.0.254",
            "nodes": ["tm-carol", "tm-status"],
            "memoryLimit": "512M",
        },
        {
            "shard": 1,
            "container": "tm-caddy-1",
            "ip": "172.24.0.251",
            "nodes": ["tm-alice", "tm-dave"],
            "memoryLimit": "512M",
        },
        {"shard": 2, "container": "tm-caddy-2", "ip": "172.24.0.250", "nodes": ["tm-bob"], "memoryLimit": "512M"},
    ]


def test_each_shard_is_a_caddy_of_its_own_with_a_protected_retained_volume(run):
    proxies = {r.name: r for r in run.of_type(PROXY_T)}
    assert set(proxies) == {"proxy", "proxy-1", "proxy-2"}
    for shard, component in (("", "proxy"), ("-1", "proxy-1"), ("-2", "proxy-2")):
        caddy = run.named(f"{component}-caddy")
        assert caddy.parent == proxies[component].urn and caddy.inputs["name"] == f"tm-caddy{shard}"
        assert caddy.inputs["restart"] == "unless-stopped"
        volume = run.named(f"{component}-data")
        assert volume.inputs["name"] == f"tm-caddy{shard}-data" and volume.protect and volume.retain_on_delete
        assert caddy.inputs["mounts"][0]["source"] == f"tm-caddy{shard}-data"
        assert run.named(f"{component}-config").inputs["container"] == f"tm-caddy{shard}"
        assert run.named(f"{component}-caddy-pids").type.endswith("ProcessLimit")
    labels = {label["label"]: label["value"] for label in run.named("proxy-1-caddy").inputs["labels"]}
    assert labels["timemachine.shard"] == "1" and labels["timemachine.role"] == "proxy"
    assert "timemachine.shard" not in json.dumps(run.named("proxy-caddy").inputs["labels"])
    assert run.named("proxy-2-caddy").inputs["networksAdvanced"] == [
        {"name": "timemachine", "ipv4Address": "172.24.0.250"}
    ]


def test_each_shard_config_holds_only_its_routes_and_keys(run):
    expected = {0: {"carol"}, 1: {"alice", "dave"}, 2: {"bob"}}
    for shard, shares in expected.items():
        config = caddy_config(run, shard)
        nodes = {f"tm-{s}" for s in shares} | ({"tm-status"} if shard == 0 else set())
        assert set(config["apps"]["tailscale"]["nodes"]) == nodes
        assert set(config["apps"]["layer4"]["servers"]) == shares
        assert ("http" in config["apps"]) == (shard == 0), "the status page's server is on shard 0 only"
        keys = run.named("proxy-config" if shard == 0 else f"proxy-{shard}-config").inputs["keys"]
        assert set(keys) == nodes
        assert all(keys[f"tm-{s}"] == mock_key(f"{s}-key") for s in shares)


def test_each_smbd_admits_its_own_shard_the_status_container_and_its_healthcheck(run):
    address = {0: "172.24.0.254", 1: "172.24.0.251", 2: "172.24.0.250"}
    for name, share in run.outputs["shares"].items():
        conf = smb_conf(run, name)
        allowed = next(line for line in conf.splitlines() if "hosts allow" in line)
        assert allowed.split("=", 1)[1].split() == [address[share["proxyShard"]], "172.24.0.252", "127.0.0.1"]
        labels = {label["label"]: label["value"] for label in run.named(f"{name}-samba").inputs["labels"]}
        assert labels.get("timemachine.shard", "0") == str(share["proxyShard"])


def test_the_status_container_reads_each_node_on_its_shards_volume(run):
    c = run.named("status-collector").inputs
    mounts = {m["target"]: m["source"] for m in c["mounts"] if m["type"] == "volume"}
    assert mounts == {"/caddy": "tm-caddy-data", "/caddy-1": "tm-caddy-1-data", "/caddy-2": "tm-caddy-2-data"}
    shares = json.loads(c["command"][c["command"].index("--shares-json") + 1])
    assert shares["caddyStateDir"] == "/caddy/tailscale"
    dirs = {s["name"]: s.get("caddyStateDir") for s in shares["shares"]}
    assert dirs == {
        "alice": "/caddy-1/tailscale",
        "bob": "/caddy-2/tailscale",
        "carol": None,
        "dave": "/caddy-1/tailscale",
    }


def test_each_shard_memory_limit_follows_its_own_nodes_and_a_set_one_wins():
    many = [{"name": f"u{i:02d}", "owner": f"u{i}@example.com"} for i in range(60)]
    run = run_program({**SHARDED, "network": {"subnet": "10.9.0.0/24"}, "proxy": {"shards": 2}, "shares": many})
    # 61 nodes in one Caddy would take 1G; split 31/30 each is 512M (128 MiB + 12 MiB per node, a power of two).
    assert [s["memoryLimit"] for s in run.outputs["proxyShards"]] == ["512M", "512M"]
    assert run.named("proxy-caddy").inputs["memory"] == run.named("proxy-1-caddy").inputs["memory"] == 512
    one = run_program({**SHARDED, "network": {"subnet": "10.9.0.0/24"}, "proxy": {"shards": 1}, "shares": many})
    assert one.named("proxy-caddy").inputs["memory"] == 1024
    fixed = run_program({**SHARDED, "proxy": {"shards": 2, "memoryLimit": "768M"}})
    assert [s["memoryLimit"] for s in fixed.outputs["proxyShards"]] == ["768M", "768M"]


def test_a_deployed_share_stays_on_its_shard_when_shares_and_shards_are_added(run):
    more = SHARES + [{"name": n, "owner": f"{n}@example.com"} for n in ("erin", "frank", "gus")]
    after = run_program({**SHARDED, "proxy": {"shards": 4}, "shares": more}, deployed=run)
    before = {n: s["proxyShard"] for n, s in run.outputs["shares"].items()}
    assert {n: after.outputs["shares"][n]["proxyShard"] for n in before} == before
    # Every deployed shard keeps its address; the new one takes the next free host.
    assert [s["ip"] for s in after.outputs["proxyShards"]] == [s["ip"] for s in run.outputs["proxyShards"]] + [
        "172.24.0.249"
    ]
    assert after.outputs["shares"]["erin"]["proxyShard"] == 3
    # A share removed elsewhere changes nothing of the others' inputs (the pids limits and the
    # readiness wait of all Samba containers, one resource each, lose only its container).
    fewer = run_program({**SHARDED, "shares": SHARES[1:]}, deployed=run)
    unchanged = {
        r.urn: r.inputs
        for r in run.resources
        if not any(part in r.name for part in ("alice", "proxy", "samba-pids", "samba-ready"))
    }
    for urn, inputs in {r.urn: r.inputs for r in fewer.resources}.items():
        if urn in unchanged and "status" not in urn:
            assert inputs == unchanged[urn], urn
    limits = fewer.named("samba-pids").inputs
    assert set(limits["containers"]) == set(limits["limits"]) == {s["name"] for s in SHARES[1:]}


def test_without_shards_the_one_caddy_keeps_its_names_address_and_labels():
    run = run_program({**SHARDED, "proxy": {}})
    assert [r.name for r in run.of_type(PROXY_T)] == ["proxy"]
    caddy = run.named("proxy-caddy")
    assert caddy.inputs["name"] == "tm-caddy" and run.named("proxy-data").inputs["name"] == "tm-caddy-data"
    assert caddy.inputs["networksAdvanced"] == [{"name": "timemachine", "ipv4Address": "172.24.0.254"}]
    assert caddy.urn.endswith("timemachine:index:CaddyProxy$docker:index/container:Container::proxy-caddy")
    assert "timemachine.shard" not in json.dumps([r.inputs.get("labels") for r in run.resources])
    assert {s["proxyShard"] for s in run.outputs["shares"].values()} == {0}
    status = run.named("status-collector").inputs
    assert [m["target"] for m in status["mounts"] if m["type"] == "volume"] == ["/caddy"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"proxy": {"shards": 2}}, r"proxy.shards: 2 would drop the shard of deployed shares \('bob' on shard 2\)"),
        (
            {"shares": [{**SHARES[0], "proxyShard": 0}, *SHARES[1:]]},
            r"shares\[0\].proxyShard: 'alice' is deployed on shard 1",
        ),
        ({"proxy": {"shards": 3, "networkMode": "host"}}, r"proxy.shards: 3 shards in host mode"),
        ({"proxy": {"shards": 9}}, r"proxy.shards: 9 shards for 5 tailnet node\(s\)"),
    ],
)
def test_refusals_stop_the_program_before_anything_is_declared(run, change, message):
    with pytest.raises(pulumi.RunError, match=message):
        run_program({**SHARDED, **change}, deployed=run)


def test_a_prefix_change_is_still_read_from_shard_0_only(run):
    # Shard 1's container is tm-caddy-1: not a deployed prefix "tm-caddy".
    assert run_program(SHARDED, deployed=run).resources
    with pytest.raises(pulumi.RunError, match="deployed with namePrefix 'tm'"):
        run_program({**SHARDED, "namePrefix": "tm-b"}, deployed=run)
