"""The shard plan (proxy.shards): over any sequence of adds, removes and count changes fed back as the
deployment, no deployed share changes shard; new shares fill the emptiest shard; a count that would
drop a deployed share's shard, or a pin that would move it, is refused. And each shard's address."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from timemachine.config.loader import ConfigError, load
from timemachine.planning.ipplan import headscale_address, proxy_address, reserved_addresses, shard_addresses
from timemachine.planning.shards import SHARDS_FIELD, DeployedShards, ShardPlanError, plan_shards

NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), unique=True, max_size=30)
SUBNET = ipaddress.IPv4Network("172.24.0.0/24")


def unpinned(names):
    return [(name, None) for name in names]


@given(NAMES, NAMES, st.integers(1, 6), st.booleans())
def test_adding_shares_never_moves_a_deployed_one(first, more, shards, status):
    more = [name for name in more if name not in first]
    deployed = plan_shards(unpinned(first), shards, status_node=status)
    after = plan_shards(unpinned(first + more), shards, deployed, status_node=status)
    assert {name: after[name] for name in first} == deployed
    assert set(after.values()) <= set(range(shards))


@given(NAMES, st.integers(1, 6), st.booleans())
def test_a_fresh_plan_is_balanced_counting_the_status_node(names, shards, status):
    plan = plan_shards(unpinned(names), shards, status_node=status)
    load = [list(plan.values()).count(k) + (1 if status and k == 0 else 0) for k in range(shards)]
    assert max(load) - min(load) <= 1


@given(NAMES, st.integers(1, 5), st.integers(0, 3))
def test_raising_the_count_keeps_every_deployed_share_and_fills_the_new_shards(names, shards, more):
    deployed = plan_shards(unpinned(names), shards)
    extra = [f"new{i}" for i in range(len(names))]
    after = plan_shards(unpinned(names + extra), shards + more, deployed)
    assert {name: after[name] for name in names} == deployed
    if more and len(names) >= max(shards, more):
        # Every old shard serves a share: the new shares go to the new (empty) shards first.
        assert {after[name] for name in extra[:more]} == set(range(shards, shards + more))


class ShardStack(RuleBasedStateMachine):
    """A stack changed one update at a time, each plan deployed: no share ever changes shard."""

    @initialize(shards=st.integers(1, 4))
    def start(self, shards):
        self.shards, self.config, self.deployed, self.counter = shards, [], {}, 0

    @rule()
    def add(self):
        self.counter += 1
        self.config.append(f"s{self.counter}")
        self.deploy()

    @rule(data=st.data())
    def remove(self, data):
        if self.config:
            self.config.remove(data.draw(st.sampled_from(self.config)))
            self.deploy()

    @rule(shards=st.integers(1, 5))
    def recount(self, shards):
        needed = max(self.deployed.values(), default=-1) + 1
        if shards < needed:
            with pytest.raises(ShardPlanError) as refused:
                plan_shards(unpinned(self.config), shards, self.deployed)
            assert refused.value.problems[0].field == SHARDS_FIELD
            assert f"at {needed} or more" in refused.value.problems[0].message
        else:
            self.shards = shards
            self.deploy()

    def deploy(self):
        plan = plan_shards(unpinned(self.config), self.shards, self.deployed)
        for name, shard in self.deployed.items():
            assert plan.get(name, shard) == shard, f"{name} moved from shard {shard} to {plan[name]}"
        # Removed shares leave the state.
        self.deployed = plan

    @invariant()
    def in_range(self):
        assert all(0 <= shard < self.shards for shard in self.deployed.values())


TestShardStack = ShardStack.TestCase


def test_a_pin_places_a_new_share_and_counts_for_the_others():
    plan = plan_shards([("a", 1), ("b", None), ("c", None)], 2)
    assert plan == {"a": 1, "b": 0, "c": 0}


def test_a_pin_that_would_move_a_deployed_share_is_refused_naming_its_shard():
    with pytest.raises(ShardPlanError) as refused:
        plan_shards([("a", 1)], 2, {"a": 0})
    (problem,) = refused.value.problems
    assert (problem.share, problem.field) == ("a", "proxyShard")
    assert "deployed on shard 0" in problem.message and "Set proxyShard to 0 or remove it" in problem.message
    assert plan_shards([("a", 0)], 2, {"a": 0}) == {"a": 0}


def test_lowering_the_count_under_a_deployed_share_is_refused_listing_them():
    with pytest.raises(ShardPlanError, match=r"'c' on shard 2.*Keep proxy.shards at 3 or more"):
        plan_shards(unpinned("abc"), 2, {"a": 0, "b": 1, "c": 2})
    # A shard whose shares are gone may go.
    assert plan_shards(unpinned("ab"), 2, {"a": 0, "b": 1, "c": 2}) == {"a": 0, "b": 1}


def test_shard_addresses_shard_0_is_the_proxy_the_others_below_the_status_container():
    status = SUBNET.broadcast_address - 3
    ips = shard_addresses(SUBNET, 3, taken=[status])
    assert ips == [proxy_address(SUBNET), SUBNET.broadcast_address - 4, SUBNET.broadcast_address - 5]
    assert headscale_address(SUBNET) not in ips and not set(ips[1:]) & set(reserved_addresses(SUBNET))
    # A deployed shard keeps its address; a new one avoids it.
    kept = ipaddress.IPv4Address("172.24.0.100")
    assert shard_addresses(SUBNET, 3, {1: kept}, taken=[status]) == [
        proxy_address(SUBNET),
        kept,
        SUBNET.broadcast_address - 4,
    ]
    # Unless a share was pinned there (taken): then it moves.
    assert shard_addresses(SUBNET, 2, {1: kept}, taken=[status, kept])[1] == SUBNET.broadcast_address - 4


BASE = {"storage": {"root": "/srv/timemachine"}}


def shares(*names, **extra):
    return [{"name": n, "owner": f"{n}@example.com", **extra} for n in names]


def test_loader_reserves_each_shard_address_so_no_share_or_status_takes_it():
    stack = load({**BASE, "proxy": {"shards": 3}, "shares": shares("alice", "bob", "carol")})
    assert stack.proxy_ips == (
        ipaddress.IPv4Address("172.24.0.254"),
        ipaddress.IPv4Address("172.24.0.251"),
        ipaddress.IPv4Address("172.24.0.250"),
    )
    assert stack.status_ip == ipaddress.IPv4Address("172.24.0.252")
    assert not set(stack.ips.values()) & set(stack.proxy_ips)
    # The status page's node is on shard 0: the three shares go to shards 1, 2, then 0.
    assert stack.proxy_shards == {"alice": 1, "bob": 2, "carol": 0}
    # A deployed shard keeps its address, and the status container keeps clear of it.
    deployed = DeployedShards({"alice": 1}, {1: ipaddress.IPv4Address("172.24.0.252")})
    again = load({**BASE, "proxy": {"shards": 2}, "shares": shares("alice", "bob")}, read_shards=lambda: deployed)
    assert again.proxy_ips[1] == ipaddress.IPv4Address("172.24.0.252")
    assert again.status_ip == ipaddress.IPv4Address("172.24.0.251")


def test_loader_reports_shard_refusals_with_the_config_path():
    deployed = DeployedShards({"bob": 1}, {})
    with pytest.raises(ConfigError) as refused:
        load(
            {**BASE, "proxy": {"shards": 2}, "shares": shares("alice") + shares("bob", proxyShard=0)},
            read_shards=lambda: deployed,
        )
    assert refused.value.problems[0].startswith("shares[1].proxyShard: 'bob' is deployed on shard 1")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"proxy": {"shards": 0}}, "proxy.shards: Input should be greater than or equal to 1"),
        (
            {"proxy": {"shards": 4}},
            "proxy.shards: 4 shards for 3 tailnet node(s) (2 share(s) and the status page) would leave a Caddy "
            "serving nothing; set proxy.shards to at most 3",
        ),
        ({"proxy": {"shards": 2, "networkMode": "host"}}, "proxy.shards: 2 shards in host mode"),
        ({"proxy": {"shards": 2}, "shares": shares("alice", proxyShard=2)}, "shares[0].proxyShard: shard 2, but"),
    ],
)
def test_config_refuses_bad_shard_settings_naming_the_field_and_the_fix(config, expected):
    with pytest.raises(ConfigError) as refused:
        load({**BASE, "shares": shares("alice", "bob"), **config})
    assert any(p.startswith(expected) for p in refused.value.problems), refused.value.problems


def test_shard_names_shard_0_keeps_the_one_caddys_and_the_guard_plans_every_shard():
    from timemachine.planning import names

    assert [names.caddy_container("tm", k) for k in range(3)] == ["tm-caddy", "tm-caddy-1", "tm-caddy-2"]
    assert [names.caddy_volume("tm", k) for k in range(2)] == ["tm-caddy-data", "tm-caddy-1-data"]
    assert names.containers("tm", ["alice"], headscale=False, proxy_shards=2) == [
        "tm-caddy",
        "tm-alice-samba",
        "tm-caddy-1",
    ]
    assert names.volumes("tm", [], headscale=False, proxy_shards=2) == ["tm-caddy-data", "tm-caddy-1-data"]
