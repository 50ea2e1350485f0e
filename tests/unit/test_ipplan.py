"""IP plan properties: inside the subnet, unique, never reserved, stable under add/remove/reorder."""
import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from components.ipplan import (
    IpPlanError,
    gateway,
    home_address,
    node_port,
    plan_ips,
    proxy_address,
    share_capacity,
)

NAME = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
SUBNETS = st.sampled_from(["172.24.0.0/24", "10.8.0.0/20", "192.168.50.0/26", "10.99.0.0/16"]).map(ipaddress.ip_network)


def plan_or_none(names, subnet, pins=None):
    pins = pins or {}
    try:
        return plan_ips([(n, pins.get(n)) for n in names], subnet)
    except IpPlanError:
        return None


@settings(max_examples=300)
@given(names=st.lists(NAME, unique=True, max_size=30), subnet=SUBNETS)
def test_addresses_are_inside_unique_and_never_reserved(names, subnet):
    plan = plan_or_none(names, subnet)
    assume(plan is not None)
    reserved = {subnet.network_address, gateway(subnet), proxy_address(subnet), subnet.broadcast_address}
    assert set(plan) == set(names)
    assert all(ip in subnet and ip not in reserved for ip in plan.values())
    assert len(set(plan.values())) == len(plan)


@settings(max_examples=300)
@given(names=st.lists(NAME, unique=True, min_size=1, max_size=30), subnet=SUBNETS, data=st.data())
def test_adding_removing_and_reordering_never_moves_an_existing_share(names, subnet, data):
    before = plan_or_none(names, subnet)
    assume(before is not None)
    shuffled = data.draw(st.permutations(names))
    assert plan_ips([(n, None) for n in shuffled], subnet) == before
    kept = data.draw(st.lists(st.sampled_from(names), unique=True))
    after_remove = plan_ips([(n, None) for n in kept], subnet)
    assert all(after_remove[n] == before[n] for n in kept)
    added = data.draw(st.lists(NAME.filter(lambda n: n not in names), unique=True, max_size=5))
    after_add = plan_or_none(names + added, subnet)
    if after_add is None:
        # The only allowed failure: a newcomer competes for a slot; it never moves anyone.
        with pytest.raises(IpPlanError) as caught:
            plan_ips([(n, None) for n in names + added], subnet)
        assert all(p.share in added or "all want" in p.message for p in caught.value.problems)
    else:
        assert all(after_add[n] == before[n] for n in names)


@settings(max_examples=200)
@given(names=st.lists(NAME, unique=True, min_size=2, max_size=20), subnet=SUBNETS, data=st.data())
def test_pins_are_honoured_and_reserved(names, subnet, data):
    pinned_name = data.draw(st.sampled_from(names))
    host = subnet.network_address + 2 + data.draw(st.integers(0, share_capacity(subnet) - 1))
    plan = plan_or_none(names, subnet, {pinned_name: host})
    assume(plan is not None)
    assert plan[pinned_name] == host
    assert list(plan.values()).count(host) == 1


def test_same_input_same_plan_and_sorted():
    subnet = ipaddress.ip_network("172.24.0.0/24")
    plan = plan_ips([("bob", None), ("alice", None)], subnet)
    assert list(plan) == ["alice", "bob"] and plan == plan_ips([("alice", None), ("bob", None)], subnet)
    assert plan["alice"] == home_address("alice", subnet)


def test_full_subnet_is_refused():
    subnet = ipaddress.ip_network("172.24.0.0/29")
    with pytest.raises(IpPlanError, match="do not fit"):
        plan_ips([(f"u{i}", None) for i in range(share_capacity(subnet) + 1)], subnet)


def test_node_ports_follow_the_stable_address():
    subnet = ipaddress.ip_network("172.24.0.0/24")
    assert node_port(ipaddress.ip_address("172.24.0.20"), subnet, 41641) == 41661
