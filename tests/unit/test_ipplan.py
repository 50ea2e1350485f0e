"""IP plan properties: inside the subnet, unique, never reserved, and over any sequence of adds,
removes, reorders and pins fed back as the deployment, no share ever moves and nothing but a
full subnet stops the plan."""

import ipaddress

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from timemachine.planning.ipplan import (
    SUBNET_FIELD,
    IpPlanError,
    fitting_subnet,
    gateway,
    home_address,
    node_port,
    plan_ips,
    proxy_address,
    reserved_addresses,
    share_capacity,
)

NAME = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
SUBNETS = st.sampled_from(["172.24.0.0/24", "10.8.0.0/20", "192.168.50.0/26", "10.99.0.0/16"]).map(
    ipaddress.IPv4Network
)
# Small subnets and a small name pool: home slots collide and subnets fill up within a few steps.
SMALL_SUBNETS = st.sampled_from(["10.0.0.0/28", "10.0.0.32/27", "172.24.0.0/26", "172.24.0.0/24"]).map(
    ipaddress.IPv4Network
)
POOL = [f"u{i:02d}" for i in range(70)]
ip = ipaddress.IPv4Address


def share_slots(subnet):
    return [a for a in subnet.hosts() if a not in reserved_addresses(subnet)]


@settings(max_examples=300)
@given(names=st.lists(NAME, unique=True, max_size=60), subnet=SUBNETS)
def test_a_new_stack_places_every_share_inside_unique_and_never_reserved(names, subnet):
    if len(names) > share_capacity(subnet):
        with pytest.raises(IpPlanError):
            plan_ips([(n, None) for n in names], subnet)
        return
    plan = plan_ips([(n, None) for n in names], subnet)
    assert set(plan) == set(names)
    assert all(a in subnet and a not in reserved_addresses(subnet) for a in plan.values())
    assert len(set(plan.values())) == len(plan)


class Deployments(RuleBasedStateMachine):
    """A maintainer's config over many updates. Each accepted plan becomes the deployment the next
    plan reads back (as the program reads its own state); a refused plan changes nothing."""

    @initialize(subnet=SMALL_SUBNETS)
    def start(self, subnet):
        self.subnet = subnet
        self.config: list[tuple[str, ipaddress.IPv4Address | None]] = []
        self.deployed: dict[str, ipaddress.IPv4Address] = {}
        self.updates = 0

    def names(self):
        return [n for n, _ in self.config]

    def free_for_a_pin(self, name):
        """Addresses a pin of `name` may take: not reserved, not another's pin, not another
        deployed share's address (the plan refuses those, tested below)."""
        others = {p for n, p in self.config if p is not None and n != name}
        others |= {a for n, a in self.deployed.items() if n != name}
        return [a for a in share_slots(self.subnet) if a not in others]

    def update(self, config):
        """Plan `config` against the deployment; check it; deploy it if accepted."""
        names = {n for n, _ in config}
        pins = {n: p for n, p in config if p is not None}
        # Addresses this update cannot hand out: those of deployed shares that leave them.
        leaving = {a for n, a in self.deployed.items() if n not in names or pins.get(n, a) != a}
        try:
            plan = plan_ips(config, self.subnet, self.deployed)
        except IpPlanError as error:
            assert len(config) + len(leaving) > share_capacity(self.subnet), error
            assert [p.field for p in error.problems] == [SUBNET_FIELD], error
            bigger = ipaddress.IPv4Network(error.problems[0].message.split("set network.subnet to ")[1].split(",")[0])
            assert self.subnet.subnet_of(bigger) and share_capacity(bigger) >= len(config) + len(leaving)
            event("refused: subnet full")
            return
        assert len(config) + len(leaving) <= share_capacity(self.subnet)
        assert set(plan) == names
        assert len(set(plan.values())) == len(plan), "two shares on one address"
        assert all(a in self.subnet and a not in reserved_addresses(self.subnet) for a in plan.values())
        assert not set(plan.values()) & leaving, "an address whose container still exists was handed out"
        for name, address in plan.items():
            if name in pins:
                assert address == pins[name], "a pin did not win"
            elif name in self.deployed:
                assert address == self.deployed[name], f"{name} moved"
                assert node_port(address, self.subnet, 41641) == node_port(self.deployed[name], self.subnet, 41641)
        # New shares, in config order: the home slot, else the next free address upwards.
        taken = set(reserved_addresses(self.subnet)) | set(self.deployed.values()) | set(pins.values())
        slots = share_slots(self.subnet)
        for name, pin in config:
            if pin is None and name not in self.deployed:
                start = slots.index(home_address(name, self.subnet))
                walk = slots[start:] + slots[:start]
                assert plan[name] == next(a for a in walk if a not in taken), name
                taken.add(plan[name])
        event("accepted" + (" with addresses held by leaving shares" if leaving else ""))
        if any(plan[n] != home_address(n, self.subnet) for n, p in config if p is None):
            event("accepted with a share off its home slot")
        self.config, self.deployed = list(config), plan
        self.updates += 1

    @rule(names=st.lists(st.sampled_from(POOL), min_size=1, max_size=12, unique=True), data=st.data())
    def add(self, names, data):
        self.update(self.with_new(list(self.config), names, data))

    def with_new(self, config, names, data):
        """`config` with each of `names` not yet in the stack inserted at a drawn place."""
        for name in names:
            if name not in self.names():
                config.insert(data.draw(st.integers(0, len(config))), (name, None))
        return config

    @precondition(lambda self: self.config)
    @rule(data=st.data())
    def remove(self, data):
        gone = set(data.draw(st.lists(st.sampled_from(self.names()), min_size=1, max_size=8)))
        self.update([(n, p) for n, p in self.config if n not in gone])

    @precondition(lambda self: self.config)
    @rule(names=st.lists(st.sampled_from(POOL), min_size=1, max_size=12, unique=True), data=st.data())
    def remove_and_add_in_one_update(self, names, data):
        gone = set(data.draw(st.lists(st.sampled_from(self.names()), min_size=1, max_size=8)))
        self.update(self.with_new([(n, p) for n, p in self.config if n not in gone], names, data))

    @precondition(lambda self: self.config)
    @rule(data=st.data())
    def pin_one_and_add_one(self, data):
        """A share moved by a pin, and a newcomer in the same update."""
        index = data.draw(st.integers(0, len(self.config) - 1))
        name = self.config[index][0]
        choices = self.free_for_a_pin(name)
        newcomers = [n for n in POOL if n not in self.names()]
        if not choices or not newcomers:
            return
        config = list(self.config)
        config[index] = (name, data.draw(st.sampled_from(choices)))
        config.insert(data.draw(st.integers(0, len(config))), (data.draw(st.sampled_from(newcomers)), None))
        self.update(config)

    @precondition(lambda self: len(self.config) > 1)
    @rule(data=st.data())
    def reorder(self, data):
        self.update(data.draw(st.permutations(self.config)))

    @precondition(lambda self: self.config)
    @rule(data=st.data())
    def pin(self, data):
        index = data.draw(st.integers(0, len(self.config) - 1))
        name = self.config[index][0]
        choices = self.free_for_a_pin(name)
        if not choices:
            return
        config = list(self.config)
        config[index] = (name, data.draw(st.sampled_from(choices)))
        self.update(config)

    @precondition(lambda self: any(p is not None for _, p in self.config))
    @rule(data=st.data())
    def unpin(self, data):
        pinned = [i for i, (_, p) in enumerate(self.config) if p is not None]
        index = data.draw(st.sampled_from(pinned))
        config = list(self.config)
        config[index] = (config[index][0], None)
        self.update(config)

    @precondition(lambda self: len(self.config) < len(POOL))
    @rule(data=st.data())
    def add_pinned(self, data):
        name = data.draw(st.sampled_from([n for n in POOL if n not in self.names()]))
        choices = self.free_for_a_pin(name)
        if choices:
            self.update([*self.config, (name, data.draw(st.sampled_from(choices)))])

    @invariant()
    def the_deployment_is_the_last_accepted_plan(self):
        assert set(self.deployed) == set(self.names())


Deployments.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_deployments = Deployments.TestCase


SUBNET = ipaddress.IPv4Network("172.24.0.0/24")


def colliding(subnet, count=3):
    """`count` names with one home slot."""
    by_home: dict = {}
    for i in range(100000):
        name = f"n{i}"
        by_home.setdefault(home_address(name, subnet), []).append(name)
        if len(by_home[home_address(name, subnet)]) == count:
            return by_home[home_address(name, subnet)]
    raise AssertionError("no collision found")


def test_a_new_stack_allocates_in_config_order():
    a, b, c = colliding(SUBNET)
    home = home_address(a, SUBNET)
    assert plan_ips([(b, None), (a, None), (c, None)], SUBNET) == {b: home, a: home + 1, c: home + 2}


def test_the_deployed_share_keeps_its_address_whatever_the_order():
    a, b, _ = colliding(SUBNET)
    home = home_address(a, SUBNET)
    assert plan_ips([(a, None), (b, None)], SUBNET, {b: home}) == {b: home, a: home + 1}


def test_a_removed_share_address_is_free_once_the_removal_is_deployed():
    a, b, c = colliding(SUBNET)
    home = home_address(a, SUBNET)
    first = plan_ips([(a, None)], SUBNET)
    # a is removed and b added in one update: a's container still exists while b's is created.
    second = plan_ips([(b, None)], SUBNET, first)
    assert second == {b: home + 1}
    # After that update a is gone from the state: its address is free for the next newcomer.
    assert plan_ips([(b, None), (c, None)], SUBNET, second) == {b: home + 1, c: home}


def test_removing_a_pin_keeps_the_address_and_a_new_pin_moves_only_that_share():
    deployed = plan_ips([("alice", ip("172.24.0.50")), ("bob", None)], SUBNET)
    assert plan_ips([("alice", None), ("bob", None)], SUBNET, deployed) == deployed
    moved = plan_ips([("alice", ip("172.24.0.60")), ("bob", None)], SUBNET, deployed)
    assert moved == {"alice": ip("172.24.0.60"), "bob": deployed["bob"]}


def test_the_proxy_and_gateway_stay_reserved_even_for_a_hash_slot_next_to_them():
    subnet = ipaddress.IPv4Network("10.0.0.0/29")  # share slots .2 .3 .4 .5
    plan = plan_ips([(f"s{i}", None) for i in range(4)], subnet)
    assert sorted(plan.values()) == [ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.5")]
    assert gateway(subnet) not in plan.values() and proxy_address(subnet) not in plan.values()


def test_a_full_subnet_says_how_many_are_left_and_which_subnet_fits():
    subnet = ipaddress.IPv4Network("172.24.0.0/28")  # 12 share addresses
    deployed = plan_ips([(f"old{i}", None) for i in range(10)], subnet)
    config = [(f"old{i}", None) for i in range(8)] + [(f"new{i}", None) for i in range(5)]
    with pytest.raises(IpPlanError) as caught:
        plan_ips(config, subnet, deployed)
    (problem,) = caught.value.problems
    assert problem.share is None and problem.field == SUBNET_FIELD
    assert problem.message.startswith(
        "172.24.0.0/28 is full: 5 new share(s) need an address and 2 are left of its 12 share addresses "
        "(8 kept by deployed or pinned shares, 2 held until this update has removed or moved the shares on them)"
    ), problem.message
    assert "a /27 holds 28: set network.subnet to 172.24.0.0/27, which contains 172.24.0.0/28" in problem.message
    # The suggestion works: the same update in that subnet keeps every deployed address.
    bigger = plan_ips(config, ipaddress.IPv4Network("172.24.0.0/27"), deployed)
    assert all(bigger[n] == deployed[n] for n, _ in config if n in deployed)


@given(subnet=SMALL_SUBNETS, needed=st.integers(0, 5000))
def test_fitting_subnet_contains_the_subnet_and_is_the_smallest_that_fits(subnet, needed):
    bigger = fitting_subnet(subnet, needed)
    assert subnet.subnet_of(bigger) and share_capacity(bigger) >= needed
    assert bigger == subnet or share_capacity(next(bigger.subnets(prefixlen_diff=1))) < needed


def test_pins_that_cannot_be_honoured_are_each_reported():
    deployed = {"alice": ip("172.24.0.10"), "gone": ip("172.24.0.11")}
    config = [
        ("alice", None),
        ("bob", ip("172.24.0.10")),
        ("carol", ip("172.24.0.11")),
        ("dave", ip("172.24.0.254")),
        ("erin", ip("10.0.0.1")),
        ("frank", ip("172.24.0.12")),
        ("grace", ip("172.24.0.12")),
    ]
    with pytest.raises(IpPlanError) as caught:
        plan_ips(config, SUBNET, deployed)
    messages = {p.share: p.message for p in caught.value.problems}
    assert messages["bob"].startswith("172.24.0.10 is the address of 'alice', which is deployed there")
    assert messages["carol"].startswith(
        "172.24.0.11 is the address of 'gone', removed from the config but deployed there until this update deletes it"
    )
    assert "reserved for the proxy" in messages["dave"] and "outside the subnet" in messages["erin"]
    assert messages["grace"].startswith("172.24.0.12 is also pinned by 'frank'")
    assert set(messages) == {"bob", "carol", "dave", "erin", "grace"}


def test_a_changed_subnet_places_shares_outside_it_anew():
    old = plan_ips([("alice", None), ("bob", None)], SUBNET)
    new_subnet = ipaddress.IPv4Network("10.9.0.0/24")
    assert plan_ips([("alice", None), ("bob", None)], new_subnet, old) == plan_ips(
        [("alice", None), ("bob", None)], new_subnet
    )


def test_node_ports_follow_the_stable_address():
    assert node_port(ip("172.24.0.20"), SUBNET, 41641) == 41661
