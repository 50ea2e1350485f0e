"""Every policy the program renders for Headscale loads in the real `headscale policy check`; the
Tailscale-only parts (autogroup:admin as tag owner, `tests`) are why that form is not for Headscale."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.support.containers import run_once
from tests.support.pulumi_runner import run_program
from tests.support.tailnet import CONFIG_PATH, headscale_config

pytestmark = pytest.mark.tailnet

BASE: dict[str, Any] = {
    "storageRoot": "/srv/tm",
    "network": {"subnet": "10.77.0.0/16"},
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


def check(docker_client, image: str, policy_text: str) -> tuple[int, str]:
    policy = json.loads(policy_text)
    used = {o for acl in policy.get("acls", []) for o in acl["src"]} | {
        o for v in policy["tagOwners"].values() for o in v
    }
    policy["groups"] = {g: m for g, m in GROUPS.items() if g in used}
    return run_once(
        docker_client,
        image,
        ["headscale", "policy", "check", "-f", "/tmp/p.hujson"],
        {CONFIG_PATH: headscale_config(tls=False), "/tmp/p.hujson": json.dumps(policy)},
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
    cases = {
        # What the Tailscale form has and the Headscale form leaves out, one at a time.
        "autogroup:admin": {
            **headscale_form,
            "tagOwners": {t: ["autogroup:admin"] for t in headscale_form["tagOwners"]},
        },
        "tag:timemachine": {
            **headscale_form,
            "tagOwners": {
                t: o + ([] if t == "tag:timemachine" else ["tag:timemachine"])
                for t, o in headscale_form["tagOwners"].items()
            },
        },
        '"tests"': {
            **headscale_form,
            "tests": [{"src": "alice@", "accept": ["tag:tm-alice:445"], "deny": ["tag:tm-bob:445"]}],
        },
    }
    for reason, policy in cases.items():
        code, logs = check(docker_client, images["headscale"], json.dumps(policy))
        assert code != 0 and reason in logs, (reason, logs)
    code, logs = check(docker_client, images["headscale"], json.dumps(tailscale_form))
    assert code != 0, logs
