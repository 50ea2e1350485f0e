"""Every policy the program renders for Headscale loads in the real `headscale policy check` of the
default release; the Tailscale form (autogroup:admin as tag owner) does not, which is why it is only
rendered for Tailscale; the `tests` Headscale 0.29 evaluates fail on a tailnet without the devices they
name, which is why the embedded Headscale is given only those its devices resolve."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.support.containers import run_once
from tests.support.pulumi_runner import run_program
from tests.support.tailnet import CONFIG_PATH, HEADSCALE_VERSION, build_headscale, headscale_config
from timemachine.headscale.versions import has_policy_tests, keys_by_id
from timemachine.tailnet.policy import applicable_tests

pytestmark = pytest.mark.tailnet

BASE: dict[str, Any] = {
    "storageRoot": "/srv/tm",
    "network": {"subnet": "10.77.0.0/24"},
    "tailnet": {"authKeys": "provided", "controlUrl": "https://hs:8080", "tagOwners": ["admin@"]},
}
CASES = {
    "two users": [("alice", "alice@"), ("bob", "bob@")],
    "one user, two shares": [("alice", "alice@"), ("alice2", "alice@")],
    "a group and e-mail style users": [("family", "group:family"), ("carol", "carol@example.com")],
    "twenty shares": [(f"u{i:02d}", f"u{i:02d}@") for i in range(20)],
}
# The policy fragment names groups it does not define; the tailnet's policy does.
GROUPS = {"group:family": ["alice@", "bob@"], "group:it": ["admin@"]}


def rendered(shares, **tailnet) -> str:
    config = copy.deepcopy(BASE)
    config["tailnet"].update(tailnet)
    config["shares"] = [{"name": n, "owner": o, "authKey": f"hskey-auth-{n}-0123456789abcdef"} for n, o in shares]
    return run_program(config).outputs["tailnetPolicy"]


def check(docker_client, image: str, policy_text: str, version: str = HEADSCALE_VERSION) -> tuple[int, str]:
    policy = json.loads(policy_text)
    used = {o for acl in policy.get("acls", []) for o in acl["src"]} | {
        o for v in policy["tagOwners"].values() for o in v
    }
    policy["groups"] = {g: m for g, m in GROUPS.items() if g in used}
    # 0.29 checks against a running server's users and devices, or (this flag) its database opened
    # directly: here a new, empty one.
    direct = ["--bypass-grpc-and-access-database-directly", "--force"] if has_policy_tests(version) else []
    return run_once(
        docker_client,
        image,
        ["headscale", "policy", "check", *direct, "-f", "/tmp/p.hujson"],
        {CONFIG_PATH: headscale_config(tls=False, version=version), "/tmp/p.hujson": json.dumps(policy)},
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_headscale_accepts_every_rendered_headscale_policy(docker_client, images, case):
    for owners in (["admin@"], ["group:it"]):
        code, logs = check(docker_client, images["headscale"], rendered(CASES[case], tagOwners=owners))
        assert code == 0, logs


def test_headscale_refuses_each_tailscale_only_part_which_is_why_they_are_left_out_for_it(docker_client, images):
    tailscale_form = json.loads(
        run_program(
            {
                "storageRoot": "/srv/tm",
                "shares": [
                    {"name": "alice", "owner": "alice@example.com"},
                    {"name": "bob", "owner": "bob@example.com"},
                ],
            }
        ).outputs["tailnetPolicy"]
    )
    assert {"tests", "acls", "tagOwners"} <= set(tailscale_form)
    headscale_form = json.loads(rendered(CASES["two users"], tagOwners=["admin@"]))
    refused = {
        # What the Tailscale form has and the Headscale form leaves out, one at a time.
        "autogroup:admin": {
            **headscale_form,
            "tagOwners": {t: ["autogroup:admin"] for t in headscale_form["tagOwners"]},
        },
    }
    if not keys_by_id(HEADSCALE_VERSION):
        # Before 0.28 a tag could not own another tag.
        refused["tag:timemachine"] = {
            **headscale_form,
            "tagOwners": {
                t: o + ([] if t == "tag:timemachine" else ["tag:timemachine"])
                for t, o in headscale_form["tagOwners"].items()
            },
        }
    if not has_policy_tests(HEADSCALE_VERSION):
        refused['"tests"'] = {
            **headscale_form,
            "tests": [{"src": "alice@", "accept": ["tag:tm-alice:445"], "deny": ["tag:tm-bob:445"]}],
        }
    for reason, policy in refused.items():
        code, logs = check(docker_client, images["headscale"], json.dumps(policy))
        assert code != 0 and reason in logs, (reason, logs)
    code, logs = check(docker_client, images["headscale"], json.dumps(tailscale_form))
    assert code != 0, logs


def test_headscale_0_29_fails_tests_whose_devices_it_does_not_have_and_takes_the_narrowed_policy(docker_client):
    # Headscale evaluates `tests` from 0.29: its image (built once per release; the upgrade test's too).
    image = build_headscale(docker_client, "v0.29.3")
    embedded = {**BASE, "tailnet": {**BASE["tailnet"], "headscale": {"embedded": True, "version": "v0.29.3"}}}
    embedded["tailnet"] = {**embedded["tailnet"], "authKeys": "headscale", "controlUrl": "https://hs.internal:8080"}
    embedded["shares"] = [{"name": n, "owner": o} for n, o in CASES["two users"]]
    policy = json.loads(run_program(embedded).outputs["tailnetPolicy"])
    # (With the status page on, its admins' tests come after the shares'.)
    on_shares = [t for t in policy["tests"] if any(d.endswith(":445") for d in t.get("accept", []) + t.get("deny", []))]
    assert on_shares == [
        {"src": "alice@", "accept": ["tag:tm-alice:445"], "deny": ["tag:tm-bob:445"]},
        {"src": "bob@", "accept": ["tag:tm-bob:445"], "deny": ["tag:tm-alice:445"]},
    ]
    code, logs = check(docker_client, image, json.dumps(policy), "v0.29.3")
    # Here not even the users exist (a new database): the tests' sources do not resolve.
    assert code != 0 and "test(s) failed" in logs and 'failed to resolve source "alice@"' in logs, logs
    # What the stack loads into a Headscale with no device yet: the tests wait for them.
    code, logs = check(docker_client, image, json.dumps(applicable_tests(policy, set(), set())), "v0.29.3")
    assert code == 0, logs
