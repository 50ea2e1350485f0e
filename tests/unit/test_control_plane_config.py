"""The control plane's config (issue 20): every refusal of what would leak a key, each with its
message, before any resource; the defaults a real Mac needs; the Macs each share enrols."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from timemachine.config.loader import ConfigError, load
from timemachine.headscale.tls import issue_authority

EMBEDDED: dict[str, Any] = {
    "storageRoot": "/srv/timemachine",
    "tailnet": {
        "controlUrl": "https://headscale.internal:8080",
        "authKeys": "headscale",
        "tagOwners": ["admin@"],
        "headscale": {"embedded": True},
    },
    "shares": [{"name": "alice", "owner": "alice@"}, {"name": "bob", "owner": "bob@"}],
}


def external(url: str, **tailnet: Any) -> dict:
    """An external Headscale at `url` with program-made keys (API key) or provided ones."""
    config = copy.deepcopy(EMBEDDED)
    config["tailnet"] = {"controlUrl": url, "authKeys": "headscale", "tagOwners": ["admin@"], **tailnet}
    return config


def embedded(url: str = "https://headscale.internal:8080", *, shares=None, **tailnet: Any) -> dict:
    config = copy.deepcopy(EMBEDDED)
    config["tailnet"] = {**config["tailnet"], "controlUrl": url, **tailnet}
    if shares is not None:
        config["shares"] = shares
    return config


def problems(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load(config)
    return refused.value.problems


def test_the_defaults_are_what_a_real_mac_needs():
    tailnet = load(EMBEDDED).config.tailnet
    assert tailnet.headscale.tls == "internal", "a LAN-only stack: its own CA"
    assert tailnet.headscale.derp == "embedded", "a relay over the same TLS, offline too"
    assert str(tailnet.headscale.bind_address) == "127.0.0.1", "published nowhere but loopback until told"
    assert tailnet.join_key_expiry_hours == 24 and tailnet.key_expiry_days == 90
    assert tailnet.allow_keys_over_plain_http is False


API_KEY_IN_CLEAR = (
    "tailnet.headscaleApiKey: would be sent in clear to http://hs.example.com:8080: anyone on the path reads "
    "it and owns the Headscale; give controlUrl as https:// (or a loopback address, where nothing leaves the "
    "machine)"
)


def test_an_api_key_to_a_plain_http_control_url_is_refused_unless_loopback():
    assert problems(external("http://hs.example.com:8080", headscaleApiKey="hskey-api-x")) == [API_KEY_IN_CLEAR]
    # The opt-out for plain HTTP does not cover the API key.
    assert problems(
        external("http://hs.example.com:8080", headscaleApiKey="hskey-api-x", allowKeysOverPlainHttp=True)
    ) == [API_KEY_IN_CLEAR]
    for loopback in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        assert load(external(loopback, headscaleApiKey="hskey-api-x")).config.tailnet.plain_http
    assert load(external("https://hs.example.com", headscaleApiKey="hskey-api-x"))


PLAIN_HTTP = (
    "tailnet.controlUrl: http://192.168.1.10:8080 is plain HTTP: Macs fetch the server's key over it, so "
    "whoever answers at 192.168.1.10 in its place (ARP or DNS spoofing on the LAN) receives their join keys "
    "and joins as their owners; use https:// (the embedded Headscale makes its own certificate), or accept "
    "that risk with tailnet.allowKeysOverPlainHttp: true"
)


def test_a_plain_http_control_url_off_the_machine_is_refused_without_the_named_opt_out():
    assert problems(embedded("http://192.168.1.10:8080")) == [PLAIN_HTTP]
    # A private name is no better than a private address: DNS can be spoofed too.
    assert "http://headscale.lan:8080 is plain HTTP" in problems(embedded("http://headscale.lan:8080"))[0]
    accepted = load(embedded("http://192.168.1.10:8080", allowKeysOverPlainHttp=True)).config.tailnet
    assert accepted.plain_http and accepted.allow_keys_over_plain_http
    assert load(embedded("http://127.0.0.1:8080")), "loopback: nothing leaves the machine"


def test_an_https_control_url_at_an_address_is_refused():
    assert problems(embedded("https://192.168.1.10:8080")) == [
        "tailnet.controlUrl: 192.168.1.10 is an address: Tailscale clients check an address's certificate "
        "against their trust store but not against the address, so a certificate for any name a Mac trusts "
        "would pass and whoever answers at that address receives the join keys; give a DNS name that resolves "
        "to it (e.g. https://headscale.internal:8080, in your LAN's DNS or each Mac's /etc/hosts)"
    ]
    assert load(embedded("https://127.0.0.1:8443")), "loopback: no one else answers there"


def test_bind_address_takes_an_address_and_the_relay_and_certificate_modes_are_closed_sets():
    config = embedded(headscale={"embedded": True, "bindAddress": "192.168.1.10"})
    assert str(load(config).config.tailnet.headscale.bind_address) == "192.168.1.10"
    assert problems(embedded(headscale={"embedded": True, "bindAddress": "lan"}))[0].startswith(
        "tailnet.headscale.bindAddress:"
    )
    assert problems(embedded(headscale={"embedded": True, "derp": "http"}))[0].startswith("tailnet.headscale.derp:")
    assert problems(embedded(headscale={"embedded": True, "tls": "self-signed"}))[0].startswith(
        "tailnet.headscale.tls:"
    )
    assert problems(embedded("http://127.0.0.1:8080", headscale={"embedded": True, "tls": "acme"})) == [
        "tailnet.headscale.tls: is acme, but controlUrl is http://; give the public name as https://hs.example.com"
    ]


@pytest.mark.parametrize("hours,ok", [(1, True), (24, True), (2160, True), (0, False), (2161, False)])
def test_join_keys_live_hours_within_bounds(hours, ok):
    config = embedded(joinKeyExpiryHours=hours)
    if ok:
        assert load(config).config.tailnet.join_key_expiry_hours == hours
    else:
        assert problems(config)[0].startswith("tailnet.joinKeyExpiryHours:")


def test_a_control_ca_certificate_is_checked_and_only_for_an_external_https_server():
    pem = issue_authority("hs.example.com", "test CA").certificate
    config = external("https://hs.example.com", headscaleApiKey="hskey-api-x", controlCaCertificate=pem)
    assert load(config).config.tailnet.control_ca_certificate == pem
    assert problems(external("https://hs.example.com", headscaleApiKey="k", controlCaCertificate="not a pem")) == [
        "tailnet.controlCaCertificate: is not a PEM certificate; give the CA's -----BEGIN CERTIFICATE----- text"
    ]
    assert problems(embedded(controlCaCertificate=pem)) == [
        "tailnet.controlCaCertificate: given, but the embedded Headscale's certificate comes from the stack's "
        "own CA; remove it"
    ]


def test_each_mac_gets_a_name_and_an_owner_and_a_share_without_macs_has_one():
    config = embedded(
        shares=[
            {"name": "alice", "owner": "alice@", "macs": ["alice-macbook", "alice-imac"]},
            {"name": "alice-photos", "owner": "alice@", "macs": ["alice-imac"]},
            {"name": "bob", "owner": "bob@"},
        ]
    )
    assert load(config).config.macs == {
        "alice-macbook": ("alice@", ["alice"]),
        "alice-imac": ("alice@", ["alice", "alice-photos"]),
        "bob-mac": ("bob@", ["bob"]),
    }


def test_macs_that_cannot_be_enrolled_are_refused():
    shared = [
        {"name": "alice", "owner": "alice@", "macs": ["family-imac"]},
        {"name": "bob", "owner": "bob@", "macs": ["family-imac"]},
    ]
    assert problems(embedded(shares=shared)) == [
        "shares[1].macs: 'family-imac' is already shares[0]'s Mac, owned by alice@: a Mac joins as one owner; "
        "give each Mac its own name"
    ]
    assert problems(embedded(shares=[{"name": "alice", "owner": "alice@", "macs": ["tm-alice"]}])) == [
        "shares[0].macs: 'tm-alice' is a share node's hostname; give the Mac another name"
    ]
    assert problems(embedded(shares=[{"name": "alice", "owner": "alice@", "macs": ["Alices Mac"]}]))[0].startswith(
        "shares[0].macs: 'Alices Mac' is not a Mac name"
    )
    managed = {"storageRoot": "/srv/tm", "shares": [{"name": "alice", "owner": "alice@example.com", "macs": ["m"]}]}
    assert problems(managed) == [
        "shares[0].macs: given, but tailnet.authKeys is managed: only authKeys: headscale makes join keys; "
        "elsewhere each Mac logs in with its owner's account. Remove it"
    ]
