"""The name guard's decision (timemachine/preflight/guard.py): another stack's labelled container or network with one
of this stack's names stops the program; unlabelled ones and this stack's own do not."""

from timemachine.config.loader import load
from timemachine.preflight.guard import Found, check, foreign, message, suggested_prefix

DEV, STAGING = "tailscale-timemachine/dev", "tailscale-timemachine/staging"
CONFIG = {"storageRoot": "/srv/tm", "shares": [{"name": "alice", "owner": "alice@example.com"}]}


def test_another_stacks_objects_with_this_stacks_names_clash():
    config = load(CONFIG).config
    found = [
        Found("container", "tm-caddy", DEV),
        Found("network", "timemachine", DEV),
        Found("container", "tm-bob-samba", DEV),
        Found("container", "tm-alice-samba", STAGING),
    ]
    clashes = [Found("container", "tm-caddy", DEV), Found("network", "timemachine", DEV)]
    assert foreign(found, config, STAGING) == clashes
    text = message(foreign(found, config, STAGING), config, STAGING)
    assert text.startswith("namePrefix 'tm': ") and "container 'tm-caddy', network 'timemachine'" in text
    assert f"stack {DEV}" in text and "pulumi config set namePrefix tm-staging" in text


def test_own_and_unlabelled_objects_do_not_clash():
    config = load(CONFIG).config
    found = [
        Found("container", "tm-caddy", STAGING),
        Found("container", "tm-alice-samba", None),
        Found("network", "timemachine", None),
    ]
    assert foreign(found, config, STAGING) == []


def test_a_prefix_of_its_own_does_not_clash_but_a_colliding_share_name_does():
    config = load({**CONFIG, "namePrefix": "tm-staging"}).config
    assert foreign([Found("container", "tm-caddy", DEV), Found("network", "timemachine", DEV)], config, STAGING) == []
    # dev's share "staging-alice" has the container name staging's share "alice" would take.
    clash = [Found("container", "tm-staging-alice-samba", DEV)]
    assert foreign(clash, config, STAGING) == clash


def test_an_explicit_network_name_that_clashes_is_named_in_the_fix():
    config = load({**CONFIG, "namePrefix": "tm-staging", "network": {"name": "timemachine"}}).config
    clashes = foreign([Found("network", "timemachine", DEV)], config, STAGING)
    assert clashes and "a network.name of its own" in message(clashes, config, STAGING)


def test_suggested_prefix_is_a_valid_one():
    assert suggested_prefix("tm", "org/tailscale-timemachine/Staging_EU") == "tm-staging-eu"
    assert load({**CONFIG, "namePrefix": suggested_prefix("t" * 30, "x/y/staging")}).config


def test_an_engine_that_does_not_answer_is_no_clash(tmp_path):
    config = load(CONFIG).config
    assert check(config, STAGING, f"unix://{tmp_path}/no-such.sock", {}) is None


def test_objects_in_this_stacks_state_are_its_own_whatever_their_label(monkeypatch):
    # `pulumi stack rename dev prod`: prod's containers still say dev, and its state holds them.
    from timemachine.preflight import guard

    config = load(CONFIG).config
    caddy = Found("container", "tm-caddy", DEV, id="c0ffee")
    monkeypatch.setattr(guard, "engine_objects", lambda _host: [caddy])
    prod = "tailscale-timemachine/prod"
    assert check(config, prod, None, state(caddy="c0ffee")) is None
    refused = check(config, prod, None, state(caddy="another-id"))
    assert refused and "container 'tm-caddy'" in refused


def test_docker_ids_of_a_state():
    from timemachine.preflight.state import docker_ids

    state = {
        "urn:a": {"type": "docker:index/container:Container", "outputs": {"id": "c1", "name": "tm-caddy"}},
        "urn:b": {"type": "docker:index/network:Network", "outputs": {"id": "n1"}},
        "urn:c": {"type": "docker:index/volume:Volume", "outputs": {"id": "tm-caddy-data"}},
        "urn:d": {"type": "docker:index/container:Container", "outputs": {}},
    }
    assert docker_ids(state) == {"c1", "n1"}


def state(prefix: str = "tm", caddy: str = "c1") -> dict:
    """A deployed stack's state (as the program reads it) with its Caddy container."""
    chain = "timemachine:index:CaddyProxy$docker:index/container:Container"
    urn = f"urn:pulumi:dev::tailscale-timemachine::{chain}::proxy-caddy"
    return {urn: {"type": "docker:index/container:Container", "outputs": {"id": caddy, "name": f"{prefix}-caddy"}}}


def test_a_new_prefix_on_a_deployed_stack_is_refused_with_the_old_one(monkeypatch):
    from timemachine.preflight import guard

    monkeypatch.setattr(guard, "engine_objects", lambda _host: None)
    config = load({**CONFIG, "namePrefix": "tm-b"}).config
    refused = check(config, DEV, None, state("tm-a"))
    assert refused and refused.startswith("namePrefix 'tm-b': ") and "pulumi config set namePrefix tm-a" in refused
    assert check(config, DEV, None, state("tm-b")) is None
    assert check(config, DEV, None, {}) is None, "a stack never deployed takes any prefix"
