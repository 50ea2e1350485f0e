"""Caddy's memory limit follows the number of tailnet nodes it serves when proxy.memoryLimit is
unset (scripts/bench_scale.py measured about 9.4 MiB per idle node); an explicit value wins unless it
is below what Caddy was measured to need for them, which is refused with the formula."""

from __future__ import annotations

import json

import pytest

from tests.support.stack_configs import generated
from timemachine.config.loader import ConfigError, load
from timemachine.config.models import (
    PROXY_MEMORY_FLOOR_MIB,
    ProxyConfig,
    proxy_memory_mib,
    proxy_memory_need_mib,
    proxy_process_need,
)

# What scripts/bench_scale.py measured (docs/benchmarks.md, "Scale"): Caddy's RSS per idle node, and
# its data path's peak (scripts/measure_limits.py).
MEASURED_MIB_PER_NODE = 9.4
DATA_PATH_MIB = 52.4


def config(shares: int, **proxy) -> dict:
    # Host mode: no node port per address, whatever the subnet.
    return generated(shares, network={"name": "tm", "subnet": "10.77.0.0/20"}, proxy={"networkMode": "host", **proxy})


@pytest.mark.parametrize(("shares", "mib"), [(1, 512), (10, 512), (30, 512), (50, 1024), (100, 2048), (500, 8192)])
def test_the_default_follows_the_shares(shares, mib):
    assert load(config(shares)).config.proxy.memory_limit == mib


def test_an_explicit_limit_wins_even_below_the_derived_one():
    assert load(config(100, memoryLimit="768M")).config.proxy.memory_limit == 768


def test_the_other_proxy_settings_are_kept():
    proxy = load(config(100, firstNodePort=42000)).config.proxy
    assert (proxy.first_node_port, proxy.network_mode, proxy.memory_limit) == (42000, "host", 2048)


def test_a_proxy_given_as_json_text_as_pulumi_passes_it():
    raw = {**config(100), "proxy": json.dumps({"networkMode": "host"})}
    assert load(raw).config.proxy.memory_limit == 2048


def test_the_limit_covers_the_measured_need_and_never_falls():
    limits = [proxy_memory_mib(nodes) for nodes in range(1, 1001)]
    assert all(b >= a for a, b in zip(limits, limits[1:], strict=False))
    assert min(limits) == PROXY_MEMORY_FLOOR_MIB
    for nodes, limit in enumerate(limits, start=1):
        assert limit >= DATA_PATH_MIB + MEASURED_MIB_PER_NODE * nodes * 1.25, nodes


def test_adding_shares_changes_the_limit_rarely():
    """Powers of two: from 100 to 1000 shares the limit changes three times (each an in-place update)."""
    changes = {proxy_memory_mib(n + 1) for n in range(100, 1001)}
    assert len(changes) == 4


def problems(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load(config)
    return refused.value.problems


def test_a_limit_below_the_measured_need_is_refused_with_the_formula_and_the_fixes():
    # 100 shares and the status page: 64 MiB + 2.5 MiB x 101 nodes, rounded up.
    (problem,) = problems(config(100, memoryLimit="256M"))
    assert problem == (
        "proxy.memoryLimit: 256M is below what Caddy needs for 101 tailnet node(s): 64 MiB + 2.5 MiB per node "
        "= 317 MiB, the least it was measured to take idle (docs/benchmarks.md); set it to at least 317M, unset "
        "it to have it follow the shares (2048M here), or raise proxy.shards"
    )
    assert load(config(100, memoryLimit="317M")).config.proxy.memory_limit == 317


def test_shards_share_the_need_by_the_busiest_shard():
    # 101 nodes on 4 shards: the busiest serves at least 26.
    assert load(config(100, memoryLimit="129M", shards=4, networkMode="bridge")).config.proxy.memory_limit == 129
    (problem,) = problems(config(100, memoryLimit="128M", shards=4, networkMode="bridge"))
    assert problem.startswith(
        "proxy.memoryLimit: 128M is below what Caddy needs for 26 tailnet node(s) (the fewest the busiest of 4 "
        "shards can serve): 64 MiB + 2.5 MiB per node = 129 MiB"
    ), problem


def test_a_pids_limit_below_the_measured_need_is_refused():
    (problem,) = problems(config(100, processLimit=32))
    assert problem == (
        "proxy.processLimit: 32 is below what Caddy needs for 101 tailnet node(s): 32 + one per 16 nodes = 38; "
        f"set it to at least 38, or unset it (the default is {ProxyConfig().process_limit})"
    )


def test_the_defaults_always_meet_the_need():
    for nodes in range(0, 2001):
        assert proxy_memory_mib(nodes) >= proxy_memory_need_mib(nodes), nodes
    # Never above what Caddy was measured to take (scripts/bench_scale.py at 0b2b7e5, 100 nodes).
    assert proxy_memory_need_mib(100) <= 336.7
    assert ProxyConfig().process_limit >= proxy_process_need(2000)
