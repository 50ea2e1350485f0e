"""The status section and shares[].staleAfter: parsed once at the edge, every mistake located with its fix;
the status container's address never moves a deployed share."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timemachine.config.loader import ConfigError, load
from timemachine.planning.durations import format_duration, parse_duration
from timemachine.planning.ipplan import status_address

IP = ipaddress.IPv4Address
BASE: dict[str, Any] = {
    "storageRoot": "/srv/timemachine",
    "network": {"subnet": "172.24.0.0/24"},
    "tailnet": {"dnsSuffix": "example-tailnet.ts.net", "tagOwners": ["admin@example.com", "group:it", "tag:ci"]},
    "status": {"enabled": True},
    "shares": [
        {"name": "alice", "owner": "alice@example.com", "quota": "1T", "staleAfter": "36h"},
        {"name": "bob", "owner": "bob@example.com"},
    ],
}


def config(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(raw)
    return caught.value.problems


def test_stale_after_parses_like_the_other_durations_and_defaults_to_three_days():
    loaded = load(config())
    alice, bob = loaded.config.shares
    assert alice.stale_after == 36 * 3600 and bob.stale_after == 3 * 86400
    assert (
        load(config(shares=[{"name": "a", "owner": "a@x.com", "staleAfter": 7200}])).config.shares[0].stale_after
        == 7200
    )


@pytest.mark.parametrize("bad", ["3 days", "-1d", "0", "1w", True, [], "d"])
def test_a_bad_stale_after_names_the_field_and_the_forms(bad):
    found = problems(config(shares=[{"name": "alice", "owner": "alice@example.com", "staleAfter": bad}]))
    assert len(found) == 1 and found[0].startswith("shares[0].staleAfter: "), found
    assert "e.g. 3d" in found[0] or "3d, 72h" in found[0], found


@given(st.integers(min_value=1, max_value=10**7))
def test_durations_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_the_status_address_is_planned_and_reserved_from_the_shares():
    loaded = load(config())
    assert loaded.status_ip == IP("172.24.0.252")
    assert loaded.status_ip not in loaded.ips.values()
    # A share pinned on the default keeps its pin; the status container takes the next address down.
    pinned = load(config(shares=[{"name": "alice", "owner": "alice@example.com", "ip": "172.24.0.252"}]))
    assert pinned.ips == {"alice": IP("172.24.0.252")} and pinned.status_ip == IP("172.24.0.251")
    # A pin on a pinned status address is refused as reserved.
    found = problems(
        config(
            status={"enabled": True, "ip": "172.24.0.100"},
            shares=[{"name": "alice", "owner": "alice@example.com", "ip": "172.24.0.100"}],
        )
    )
    assert found == [
        "shares[0].ip: 172.24.0.100 is the status container's (status.ip) of 172.24.0.0/24; pin another address"
    ]


def test_turning_the_status_on_never_moves_a_deployed_share():
    # A share deployed on broadcast - 3 before the status container existed keeps it; the status goes below.
    deployed = {"alice": IP("172.24.0.252"), "bob": IP("172.24.0.251")}
    loaded = load(config(), lambda: deployed)
    assert loaded.ips == deployed
    assert loaded.status_ip == IP("172.24.0.250")
    # With the embedded Headscale on its default, the status address skips it too.
    assert status_address(ipaddress.IPv4Network("10.0.0.0/29")) == IP("10.0.0.4")


def test_status_ip_can_be_pinned_but_not_onto_a_reserved_address():
    assert load(config(status={"enabled": True, "ip": "172.24.0.200"})).status_ip == IP("172.24.0.200")
    found = problems(config(status={"enabled": True, "ip": "172.24.0.254"}))
    assert found == ["status.ip: 172.24.0.254 is not a free host of 172.24.0.0/24; omit it (default 172.24.0.252)"]


def test_on_by_default_and_off_takes_no_address():
    raw = config()
    del raw["status"]
    assert load(raw).status_ip == IP("172.24.0.252")
    assert load(config(status={"enabled": False})).status_ip is None


@pytest.mark.parametrize(
    ("tailnet", "reason"),
    [
        ({"tagOwners": ["tag:ci"]}, "set status.admins"),
        (
            {"authKeys": "provided", "tagOwners": ["admin@example.com"]},
            "pulumi config set --secret --path status.authKey",
        ),
    ],
    ids=["no admins", "provided keys"],
)
def test_left_unset_the_page_is_off_where_it_could_not_run_and_says_why(tailnet, reason):
    shares = [{"name": "alice", "owner": "alice@example.com"}]
    if tailnet.get("authKeys") == "provided":
        shares[0]["authKey"] = "tskey-auth-" + "a" * 30
    loaded = load({**config(tailnet=tailnet, shares=shares), "status": {}})
    assert loaded.config.status.enabled and not loaded.config.status_page
    assert loaded.status_ip is not None, "the metrics stay on"
    off = loaded.config.status_page_off_reason
    assert off is not None and off.startswith("the status page is off:") and reason in off
    # Asked for explicitly, the page's needs are errors naming the field.
    assert problems({**config(tailnet=tailnet, shares=shares), "status": {"page": True}})


def test_admins_default_to_the_users_and_groups_among_the_tag_owners():
    loaded = load(config())
    assert loaded.config.status_admins == ["admin@example.com", "group:it"]
    assert loaded.config.status_hostname == "tm-status"


BAD = {
    "a share named like the status node": (
        config(shares=[{"name": "status", "owner": "alice@example.com"}]),
        "shares[0].name: 'status' gives the node 'tm-status', the status page's; rename the share or set "
        "status.hostname (e.g. tm-backup-status)",
    ),
    "no admin among the tag owners": (
        config(tailnet={"tagOwners": ["tag:ci"]}, status={"page": True}),
        "status.admins: missing: no user or group among tailnet.tagOwners may open the status page; give the "
        "admins, e.g. status.admins: [admin@example.com]",
    ),
    "an admin that is a tag": (
        config(status={"enabled": True, "admins": ["tag:ci"]}),
        "status.admins: 'tag:ci' is not a tailnet login (alice@example.com; alice@ on Headscale) or group (group:…)",
    ),
    "provided keys without the page's": (
        config(
            tailnet={"authKeys": "provided", "tagOwners": ["admin@example.com"]},
            status={"page": True},
            shares=[{"name": "alice", "owner": "alice@example.com", "authKey": "tskey-auth-" + "a" * 30}],
        ),
        "status.authKey: missing: with tailnet.authKeys = provided the status page's node needs its key; run "
        "pulumi config set --secret --path status.authKey tskey-… (or set status.page: false)",
    ),
    "a page key where keys are managed": (
        config(status={"enabled": True, "authKey": "tskey-auth-" + "a" * 30}),
        "status.authKey: given, but tailnet.authKeys is managed; remove it or set tailnet.authKeys to provided",
    ),
    "a bad hostname": (
        config(status={"enabled": True, "hostname": "Status!"}),
        "status.hostname: 'Status!' is not a DNS label (lowercase a-z, 0-9, \"-\"), e.g. tm-status",
    ),
    "an unknown status key": (
        config(status={"enabled": True, "pageUrl": "x"}),
        "status.pageUrl: unknown key; remove it or fix its spelling (keys are camelCase, e.g. hostnamePrefix)",
    ),
    "a bad collect interval": (
        config(status={"enabled": True, "collectInterval": "soon"}),
        "status.collectInterval: 'soon' is not a duration (seconds, or a number with s, m, h or d, e.g. 3d)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=sorted(BAD))
def test_bad_status_config_is_rejected_naming_the_field_and_the_fix(case):
    raw, expected = BAD[case]
    assert problems(raw) == [expected]


def test_no_page_needs_no_key_and_no_admins():
    raw = config(
        tailnet={"authKeys": "provided", "tagOwners": ["tag:ci"]},
        status={"enabled": True, "page": False},
        shares=[{"name": "alice", "owner": "alice@example.com", "authKey": "tskey-auth-" + "a" * 30}],
    )
    assert load(raw).status_ip == IP("172.24.0.252")
