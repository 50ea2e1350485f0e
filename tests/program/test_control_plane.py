"""The control plane and each Mac's enrolment as the program declares them (issue 20): the stack's CA
and where its files go, what the share nodes trust, no debug variable anywhere, Headscale's
published ports, one join key per Mac and the outputs a Mac's owner uses."""

from __future__ import annotations

import copy
import json
import plistlib

import yaml

from tests.support.project import ROOT
from tests.support.pulumi_runner import mock_certificates, mock_key, run_program
from timemachine.headscale.tls import der, issue_authority

LOCAL = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
TAILNET = "tailscale-timemachine:tailnet"
SHARES = "tailscale-timemachine:shares"


def envs(run, name: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in run.named(name).inputs.get("envs") or [])


def with_tailnet(base: dict, **tailnet) -> dict:
    config = copy.deepcopy(base)
    config[TAILNET] = {**config[TAILNET], **tailnet}
    return config


def test_no_container_gets_a_debug_variable_in_any_mode():
    external = with_tailnet(LOCAL, headscale={"embedded": False}, headscaleApiKey="hskey-api-x")
    loopback = with_tailnet(LOCAL, controlUrl="http://127.0.0.1:8080")
    for config in (LOCAL, DEV, external, loopback):
        run = run_program(config)
        for container in run.of_type("container:Container"):
            assert not [e for e in container.inputs.get("envs") or [] if e.startswith("TS_DEBUG")], container.name


def test_the_stack_ca_is_issued_for_the_control_name_and_its_files_precede_headscale():
    run = run_program(LOCAL)
    certificates = run.named("headscale-certificates").inputs
    assert certificates["host"] == "headscale.internal"
    assert certificates["authority_name"] == "tailscale-timemachine tailscale-timemachine/test control CA"
    # Its keys are additional secret outputs, which mock mode does not mark: the tailnet tier finds
    # no private key in the exported state but with --show-secrets.
    tls = run.named("headscale-tls")
    issued = mock_certificates("headscale.internal")
    assert tls.inputs["volume"] == "tm-headscale-data" and tls.inputs["mode"] == 0o600
    assert tls.inputs["files"] == {"tls/server.crt": issued["certificate"], "tls/server.key": issued["key"]}
    assert tls.secret_at("files"), "the server key travels as a secret"
    headscale = run.named("headscale-headscale")
    assert tls.urn in headscale.depends_on, "the files exist before Headscale starts"
    # A renewed certificate has another fingerprint: the container is replaced and reads it.
    assert envs(run, "headscale-headscale")["TLS_CERTIFICATE_SHA256"] == issued["fingerprint"]


def test_the_share_nodes_trust_the_stack_ca_beside_the_systems_and_find_headscale_by_name():
    run = run_program(LOCAL)
    issued = mock_certificates("headscale.internal")
    trust = run.named("proxy-control-ca")
    assert trust.inputs["volume"] == "tm-caddy-data"
    assert trust.inputs["files"] == {"trust/control-ca.pem": issued["ca_certificate"]}
    caddy = run.named("proxy-caddy")
    assert trust.urn in caddy.depends_on
    env = envs(run, "proxy-caddy")
    assert env["SSL_CERT_DIR"] == "/etc/ssl/certs:/data/trust" and "CONTROL_CA_SHA256" in env
    assert caddy.inputs["hosts"] == [{"host": "headscale.internal", "ip": "172.24.0.253"}]
    # Tailscale's own control plane, or an http:// one on loopback: no extra trust, no hosts entry.
    for config in (DEV, with_tailnet(LOCAL, controlUrl="http://127.0.0.1:8080")):
        plain = run_program(config)
        assert "SSL_CERT_DIR" not in envs(plain, "proxy-caddy") and not plain.named("proxy-caddy").inputs.get("hosts")
        assert not [r for r in plain.resources if r.name == "proxy-control-ca"]


def test_an_external_headscales_private_ca_is_trusted_by_the_nodes_and_the_api_calls():
    ca = issue_authority("hs.example.com", "their CA").certificate
    config = with_tailnet(
        LOCAL,
        controlUrl="https://hs.example.com",
        headscale={"embedded": False},
        headscaleApiKey="hskey-api-x",
        controlCaCertificate=ca,
    )
    run = run_program(config)
    assert run.named("proxy-control-ca").inputs["files"] == {"trust/control-ca.pem": ca}
    assert run.named("alice-key").inputs["access"]["ca"] == ca
    assert run.outputs["controlCaCertificate"] == ca
    assert not run.named("proxy-caddy").inputs.get("hosts"), "its name is the operator's DNS's"


def test_headscale_publishes_on_the_bind_address_and_the_public_relay_needs_no_stun():
    ports = run_program(LOCAL).named("headscale-headscale").inputs["ports"]
    assert {(p["external"], p["ip"]) for p in ports} == {(8080, "127.0.0.1"), (3478, "127.0.0.1")}
    config = with_tailnet(LOCAL, headscale={**LOCAL[TAILNET]["headscale"], "bindAddress": "192.168.1.10"})
    ports = run_program(config).named("headscale-headscale").inputs["ports"]
    assert {p["ip"] for p in ports} == {"192.168.1.10"}
    public = with_tailnet(LOCAL, headscale={**LOCAL[TAILNET]["headscale"], "derp": "public"})
    run = run_program(public)
    assert [p["protocol"] for p in run.named("headscale-headscale").inputs["ports"]] == ["tcp"]
    assert run.outputs["headscale"]["derp"] == "public"


def test_each_mac_has_its_own_single_use_key_join_command_script_and_enrol_command():
    config = copy.deepcopy(LOCAL)
    config[SHARES] = [
        {"name": "alice", "owner": "alice@", "macs": ["alice-macbook", "alice-imac"]},
        {"name": "alice-photos", "owner": "alice@", "macs": ["alice-imac"]},
        {"name": "bob", "owner": "bob@"},
    ]
    run = run_program(config)
    keys = {r.name: r.inputs for r in run.of_type("HeadscalePreAuthKey") if r.name.startswith("join-")}
    assert sorted(keys) == ["join-alice-imac", "join-alice-macbook", "join-bob-mac"]
    for key in keys.values():
        assert key["expiry_hours"] == 24 and key["reusable"] is False and key["tags"] == []
    assert keys["join-bob-mac"]["user_id"] == "headscale-user-bob-uid"
    assert {"joinCommands", "macSetupScripts"} <= run.secret_outputs
    assert "enrolCommands" not in run.secret_outputs and "controlCaCertificate" not in run.secret_outputs
    assert run.outputs["joinCommands"]["alice-imac"] == (
        "tailscale up --login-server=https://headscale.internal:8080 "
        f"--auth-key={mock_key('join-alice-imac')} --hostname=alice-imac"
    )
    enrol = run.outputs["enrolCommands"]["alice-imac"]
    assert enrol.startswith("pulumi up --stack test --replace 'urn:pulumi:") and enrol.endswith("::join-alice-imac'")
    script = run.outputs["macSetupScripts"]["alice-imac"]
    assert script.count("tmutil setdestination -a smb://guest@tm-") == 2
    assert run.outputs["joinCommands"]["alice-imac"].removeprefix("tailscale ") in script
    ca = run.outputs["controlCaCertificate"]
    assert ca.strip() in script and ca == mock_certificates("headscale.internal")["ca_certificate"]
    (root,) = plistlib.loads(run.outputs["controlCaProfile"].encode())["PayloadContent"]
    assert root["PayloadContent"] == der(ca)


def test_the_join_key_lifetime_is_the_configured_one():
    run = run_program(with_tailnet(LOCAL, joinKeyExpiryHours=2))
    assert run.named("join-alice-macbook").inputs["expiry_hours"] == 2
    assert run.named("alice-key").inputs["expiry_days"] == 90, "the nodes' keys keep their own lifetime"


def test_share_nodes_ask_for_their_tags_on_tailscale_only_headscale_takes_them_from_the_key():
    """Headscale 0.28+ refuses a new node that registers with a pre-auth key and also requests tags (it
    never joins): on a self-hosted control plane a node's tags come from its key alone."""
    external = with_tailnet(LOCAL, headscale={"embedded": False}, headscaleApiKey="hskey-api-x")
    for config, self_hosted in ((LOCAL, True), (external, True), (DEV, False)):
        run = run_program(config)
        nodes = json.loads(run.named("proxy-config").inputs["config"])["apps"]["tailscale"]["nodes"]
        keys = {r.name: r.inputs for r in run.resources if r.type.endswith(("HeadscalePreAuthKey", "TailnetKey"))}
        assert set(nodes) >= {"tm-alice", "tm-status"}
        for hostname, node in nodes.items():
            tags = sorted(["tag:timemachine", f"tag:{hostname}"])
            assert node["tags"] == ([] if self_hosted else tags), hostname
            # The key carries them either way.
            assert [k for k in keys.values() if k.get("tags") == tags], hostname
