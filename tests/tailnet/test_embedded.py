"""The local stack as a user runs it: Pulumi.local.yaml (embedded Headscale over HTTPS with the stack's
own CA, keys made by the program) brought up by the real engine from an empty state, joined by the
owners' Macs with the stack's own join commands, each Mac trusting the stack's root as a Mac with
the profile does and with no debug variable. The tests of this module run in their order on its
one stack, with the default namePrefix as shipped; the last one destroys it."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import plistlib
import shlex
import threading
import time
import uuid

import pytest
import smbclient
import yaml
from cryptography import x509
from cryptography.x509 import verification

from tests.support.containers import upload
from tests.support.deploy import deployed_stack, mark_storage
from tests.support.network import unique_subnet
from tests.support.project import PROJECT, ROOT
from tests.support.proxy_path import caddy_config_of
from tests.support.pulumi_cli import PulumiError, plan
from tests.support.smb import GuestClient, MiB, read_file, write_file
from tests.support.tailnet import Headscale, key_matches, node_tags, run, start_client
from timemachine.config.models import SambaConfig
from timemachine.headscale.api import CLI_ENVIRONMENT
from timemachine.headscale.tls import der, issue_authority, issue_server
from timemachine.planning import names

pytestmark = pytest.mark.tailnet

FORWARD = 4450
# Pulumi.local.yaml sets no namePrefix: the stack's Docker names are the default ones.
CADDY = names.caddy_container(names.DEFAULT_PREFIX)
HEADSCALE = names.headscale_container(names.DEFAULT_PREFIX)


def local_config(storage, network: str, subnet: str, build_args: dict) -> dict:
    """Pulumi.local.yaml as shipped (controlUrl https://headscale.internal:8080, which the stack's
    network resolves), with what a test must change: its own storage and network (internal: nothing
    leaves the machine), the Caddy build's Go proxy; alice's second Mac and bob's share added."""
    raw = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
    config = {key.removeprefix(f"{PROJECT}:"): value for key, value in raw.items()}
    config["storageRoot"] = str(mark_storage(storage))
    config["network"] = {**config["network"], "name": network, "subnet": subnet, "internal": True}
    config["proxy"] = {**config["proxy"], "buildArgs": build_args, "firstNodePort": 47100}
    alice, *others = config["shares"]
    config["shares"] = [
        # A quota this machine's disk holds (the stack checks the quotas' sum against it).
        {**alice, "macs": [*alice["macs"], "alice-mbp"], "quota": "4G"},
        *others,
        {"name": "bob", "owner": "bob@", "quota": "1G"},
    ]
    return config


@pytest.fixture(scope="module")
def local(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    storage = tmp_path_factory.mktemp("local-storage")
    network = f"tm-local-{uuid.uuid4().hex[:6]}"
    config = local_config(storage, network, unique_subnet(docker_client), goproxy.build_args())
    # Its network is internal: nothing on it answers this machine, so `up` is not followed by a wait.
    with deployed_stack(
        docker_client, pulumi_env, tmp_path_factory.mktemp("local"), "local", config, wait=False
    ) as deployment:
        headscale_ip = str(ipaddress.IPv4Network(config["network"]["subnet"]).broadcast_address - 2)
        headscale = Headscale(docker_client.containers.get(HEADSCALE), headscale_ip)
        yield {
            "stack": deployment.stack,
            "config": config,
            "storage": storage,
            "network": network,
            "made": deployment.made,
            "macs": {},
            "headscale": headscale,
            "client": docker_client,
            "images": images,
        }


def headscale_of(local) -> Headscale:
    """Headscale's container as it is now (a policy change replaces it)."""
    return Headscale(local["client"].containers.get(HEADSCALE), local["headscale"].ip)


def keys_of(headscale: Headscale, user: str) -> list[dict]:
    user_id = {u["name"]: u["id"] for u in headscale.cli_json("users", "list")}[user]
    return headscale.keys(user_id)


def state_keys(stack) -> list[str]:
    """The pre-auth keys in the stack's state, in full (Headscale lists only their prefixes)."""
    deployment = json.loads(stack.export(show_secrets=True))["deployment"]
    keys = [
        r["outputs"]["key"]
        for r in deployment.get("resources") or []
        if r["urn"].split("::")[2].endswith(":HeadscalePreAuthKey")
    ]
    # A secret in the export: {<signature>: …, "plaintext": <the value as JSON>}.
    return [json.loads(k["plaintext"]) if isinstance(k, dict) else k for k in keys]


def stack_ca(local) -> str:
    return local["stack"].outputs()["controlCaCertificate"]


def new_client(local, name: str, trust: str | None = "stack", net_admin: bool = False):
    """A client container on the stack's network (removed with the stack); `trust` "stack": the
    stack's root in its trust store, as a Mac with the profile installed."""
    subnet = ipaddress.IPv4Network(local["config"]["network"]["subnet"])
    # Above the shares' addresses here (their home slots): one each, never reused.
    local["clients"] = local.get("clients", 0) + 1
    ip = str(subnet.network_address + 199 + local["clients"])
    ca = stack_ca(local) if trust == "stack" else trust
    client = start_client(
        local["client"], local["images"]["client"], local["network"], ip, name, trust=ca, net_admin=net_admin
    )
    local["made"].append(client.container)
    return client


def join_command(local, mac_name: str) -> str:
    return local["stack"].outputs(show_secrets=True)["joinCommands"][mac_name]


def mac(local, mac_name: str, **client_options):
    """A client container for the Mac `mac_name`, joined with the stack's join command for it."""
    client = new_client(local, mac_name, **client_options)
    client.join(join_command(local, mac_name))
    local["macs"][mac_name] = client
    return client


def test_up_from_empty_state_makes_users_keys_and_join_commands(local):
    stack, headscale = local["stack"], local["headscale"]
    outputs = stack.outputs()
    assert outputs["joinCommands"] == "[secret]", "join commands carry keys: a secret output"
    assert outputs["macSetupScripts"] == "[secret]"
    commands = stack.outputs(show_secrets=True)["joinCommands"]
    # One per Mac: alice's two (Pulumi.local.yaml's and the one the test adds), bob's default one.
    assert sorted(commands) == ["alice-macbook", "alice-mbp", "bob-mac"]
    control_url = local["config"]["tailnet"]["controlUrl"]
    assert control_url.startswith("https://")
    for mac_name, command in commands.items():
        assert command.startswith(f"tailscale up --login-server={control_url} --auth-key=")
        assert command.endswith(f" --hostname={mac_name}")
    assert outputs["macs"]["alice-mbp"] == {"owner": "alice@", "shares": ["alice"]}
    # One Headscale user per owner, and the tag owner the share nodes register under.
    assert {u["name"] for u in headscale.cli_json("users", "list")} == {"admin", "alice", "bob"}
    # The share nodes' keys (the status page's node, when on, has one of its own under the same user).
    share_keys = [k for k in keys_of(headscale, "admin") if "tag:tm-status" not in k["acl_tags"]]
    assert sorted(tuple(sorted(k["acl_tags"])) for k in share_keys) == [
        ("tag:timemachine", "tag:tm-alice"),
        ("tag:timemachine", "tag:tm-bob"),
    ]
    assert not any(k.get("reusable") or k.get("ephemeral") for k in share_keys)
    days = local["config"]["tailnet"]["keyExpiryDays"]
    for key in share_keys:
        left = key["expiration"]["seconds"] - time.time()
        assert (days - 1) * 86400 < left <= days * 86400, key["expiration"]
    # The Macs' keys: their owners', untagged, single-use, one day.
    join_keys = keys_of(headscale, "alice")
    assert len(join_keys) == 2 and not any(k.get("reusable") or k.get("acl_tags") for k in join_keys)
    for key in join_keys:
        assert 23 * 3600 < key["expiration"]["seconds"] - time.time() <= 24 * 3600, key["expiration"]
    # Both share nodes registered with their keys over HTTPS (trusting the stack's root from their
    # volume) and came online under their tags.
    nodes = headscale.wait_online(["tm-alice", "tm-bob"])
    caddy = local["client"].containers.get(CADDY)
    assert caddy.attrs["RestartCount"] == 0, caddy.logs(tail=80).decode()
    assert node_tags(nodes["tm-alice"]) == ["tag:timemachine", "tag:tm-alice"]
    assert all(k.get("used") for k in keys_of(headscale, "admin"))
    # Key material is in the state only as secrets, the CA's and the server's keys included: each of
    # the keys Headscale has is there in full.
    export, full = stack.export(), state_keys(stack)
    assert all(any(key_matches(k["key"], key) for key in full) for k in share_keys + join_keys)
    assert not any(key in export for key in full)
    assert all(key in stack.export(show_secrets=True) for key in full)
    assert "PRIVATE KEY" not in export and "PRIVATE KEY" in stack.export(show_secrets=True)


def test_the_root_the_macs_trust_is_a_stack_output_and_a_profile(local):
    outputs = local["stack"].outputs()
    ca = outputs["controlCaCertificate"]
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    (root,) = plistlib.loads(outputs["controlCaProfile"].encode())["PayloadContent"]
    assert root["PayloadType"] == "com.apple.security.root" and root["PayloadContent"] == der(ca)
    # Headscale serves a certificate for the control name that chains to it.
    served = local["client"].containers.get(HEADSCALE).exec_run(["cat", "/var/lib/headscale/tls/server.crt"])
    assert served.exit_code == 0
    store = verification.Store([x509.load_pem_x509_certificate(ca.encode())])
    verifier = verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName("headscale.internal"))
    verifier.verify(x509.load_pem_x509_certificate(served.output), [])
    assert outputs["headscale"]["tls"] == "internal" and outputs["headscale"]["derp"] == "embedded"


def test_no_container_and_no_client_carries_a_debug_variable(local):
    """A Mac has no TS_DEBUG_* knob: nothing here may lean on one (the share nodes, the control
    server, the clients standing in for Macs)."""
    client = local["client"]
    envs = {
        name: client.containers.get(name).attrs["Config"]["Env"]
        for name in (CADDY, HEADSCALE, names.samba_container(names.DEFAULT_PREFIX, "alice"))
    }
    envs["client image"] = client.images.get(local["images"]["client"]).attrs["Config"]["Env"]
    for name, env in envs.items():
        assert not [e for e in env if e.startswith("TS_DEBUG")], (name, env)
    caddy = dict(e.split("=", 1) for e in envs[CADDY])
    assert caddy["SSL_CERT_DIR"] == "/etc/ssl/certs:/data/trust"
    trusted = client.containers.get(CADDY).exec_run(["cat", "/data/trust/control-ca.pem"]).output.decode()
    assert trusted == stack_ca(local)


def test_owner_joins_with_the_join_command_and_backs_up_to_her_share(local):
    alice = mac(local, "alice-macbook")
    assert alice.status()["Self"]["UserID"] == int(
        {u["name"]: u["id"] for u in local["headscale"].cli_json("users", "list")}["alice"]
    )
    alice.ping_direct("tm-alice")
    alice.forward(FORWARD, "tm-alice", 445)
    payload = os.urandom(16 * MiB)
    write_file(alice.ip, "alice", "joined.bin", payload, FORWARD)
    assert read_file(alice.ip, "alice", "joined.bin", FORWARD) == payload
    on_disk = (local["storage"] / "alice" / "joined.bin").read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == hashlib.sha256(payload).hexdigest()


def key_used(local, user: str, command: str) -> bool:
    """Whether Headscale has the key in `command` as used."""
    key = next(a.split("=", 1)[1] for a in shlex.split(command) if a.startswith("--auth-key="))
    (found,) = [k for k in keys_of(headscale_of(local), user) if key_matches(k["key"], key)]
    return bool(found.get("used"))


def test_a_mac_that_does_not_trust_the_stack_ca_refuses_to_join(local):
    """alice's second Mac before its profile is installed: its join fails on the certificate, and
    the key stays unused (the next test enrols that Mac with it)."""
    untrusting = new_client(local, "alice-mbp-untrusting", trust=None)
    command = join_command(local, "alice-mbp")
    code, output = untrusting.join(command, check=False, timeout=15)
    logs = untrusting.container.logs().decode(errors="replace")
    assert code != 0, output
    assert "certificate signed by unknown authority" in output + logs, (output + logs)[-3000:]
    assert not key_used(local, "alice", command)
    assert "alice-mbp" not in headscale_of(local).nodes()


def impostor_certificates() -> dict[str, str]:
    """The impostor's TLS identities: its own CA and a certificate for the control name, and a cert
    for another name from another CA (a stand-in for any public CA a Mac trusts)."""
    own = issue_authority("headscale.internal", "impostor CA")
    own_server = issue_server("headscale.internal", own.certificate, own.key)
    other = issue_authority("evil.example", "another trusted CA")
    other_server = issue_server("evil.example", other.certificate, other.key)
    return {
        "own-ca": own.certificate,
        "own.pem": own_server.certificate + own_server.key,
        "other-ca": other.certificate,
        "other.pem": other_server.certificate + other_server.key,
    }


IMPOSTOR_SCRIPT = """
for spec in "8443 own" "9443 other"; do set -- $spec
  socat -d -d OPENSSL-LISTEN:$1,reuseaddr,fork,cert=/imp/$2.pem,verify=0 SYSTEM:'cat >> /imp/received-'$1 \
    2>> /imp/socat-$1.log &
done
socat -d -d TCP-LISTEN:8080,reuseaddr,fork SYSTEM:'cat >> /imp/received-8080' 2>> /imp/socat-8080.log &
wait
"""


def redirect_control(client, headscale_ip: str, impostor_ip: str) -> None:
    """What ARP spoofing achieves: the client's connections to the control server's address go to
    the impostor (its TLS port 8443; port 80, where a client also tries the Noise protocol, to its
    plain recorder)."""
    for port, to in ((8080, 8443), (80, 8080)):
        run(
            client.container,
            "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", headscale_ip, "--dport", str(port),
            "-j", "DNAT", "--to-destination", f"{impostor_ip}:{to}",
        )  # fmt: skip


def test_an_impostor_at_the_control_servers_address_receives_no_key(local):
    """An impostor with its own certificate answers in Headscale's place (the victim's traffic to
    Headscale's address is redirected to it). bob's Mac, trusting the stack's root, refuses its
    certificate: the impostor receives no request at all, so no key; bob's key stays unused. Positive
    controls: a client that trusts the impostor's CA does send it a request, and one that trusts a CA
    with a certificate for another name would too if the control URL were an address — why the
    stack refuses https:// addresses."""
    files = impostor_certificates()
    impostor = new_client(local, "impostor", trust=None)
    run(impostor.container, "mkdir", "-p", "/imp")
    for name, text in files.items():
        upload(impostor.container, f"/imp/{name}", text)
    impostor.container.exec_run(["sh", "-c", IMPOSTOR_SCRIPT], detach=True)
    time.sleep(1)
    victim = new_client(local, "bob-mac-victim", net_admin=True)
    redirect_control(victim, local["headscale"].ip, impostor.ip)
    command = join_command(local, "bob-mac")
    code, output = victim.join(command, check=False, timeout=15)
    assert code != 0, output

    def received(port: int) -> str:
        return run(impostor.container, "sh", "-c", f"cat /imp/received-{port} 2>/dev/null; true")[1]

    handshake = run(impostor.container, "cat", "/imp/socat-8443.log")[1]
    record = {port: received(port) for port in (8443, 8080)}
    assert record == {8443: "", 8080: ""}, f"the impostor received: {record!r}"
    assert "SSL_accept" in handshake, handshake  # the victim hung up in the handshake, sending nothing
    assert not key_used(local, "bob", command) and "bob-mac" not in headscale_of(local).nodes()
    # Positive control 1: a client that trusts the impostor's CA sends it the request for the key.
    fooled = new_client(local, "fooled", trust=files["own-ca"] + files["other-ca"], net_admin=True)
    redirect_control(fooled, local["headscale"].ip, impostor.ip)
    run(
        fooled.container, "tailscale", "up", "--login-server=https://headscale.internal:8080",
        "--auth-key=hskey-auth-NOTAKEY", check=False, timeout=10,
    )  # fmt: skip
    assert "GET /key" in received(8443), "the recorder records what a client sends it"
    # Positive control 2: at an address, a certificate for any other name from a trusted CA passes.
    run(
        fooled.container, "tailscale", "up", "--reset", f"--login-server=https://{impostor.ip}:9443",
        "--auth-key=hskey-auth-NOTAKEY", check=False, timeout=10,
    )  # fmt: skip
    assert "GET /key" in received(9443), "an address is not checked against the certificate's name"
    for container in (impostor.container, victim.container, fooled.container):
        local["made"].remove(container)
        container.remove(force=True, v=True)


def test_another_owner_cannot_reach_the_share(local):
    bob = mac(local, "bob-mac")
    bob.ping_direct("tm-bob")
    assert "tm-alice" not in bob.peers()
    failed, why = bob.nc_fails("tm-alice", 445)
    assert failed, why
    failed, why = bob.nc_fails("tm-bob", 445)
    assert not failed, why


def block_udp(client) -> None:
    """No UDP in or out of the client but on loopback (Docker's DNS): no direct path to any peer,
    no STUN; only TCP to the control server and its DERP relay."""
    for rule in (
        ["-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"],
        ["-A", "OUTPUT", "-p", "udp", "-j", "DROP"],
        ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
        ["-A", "INPUT", "-p", "udp", "-j", "DROP"],
    ):
        run(client.container, "iptables", *rule)


def test_a_second_mac_of_the_owner_enrols_with_its_own_key_and_backs_up_over_the_relay(local):
    """alice's second Mac (its own key, the one the untrusting client could not use) with every UDP
    packet dropped: the embedded DERP relay over TLS, with the stack's certificate, carries its backup."""
    mbp = new_client(local, "alice-mbp", net_admin=True)
    block_udp(mbp)
    mbp.join(join_command(local, "alice-mbp"))
    local["macs"]["alice-mbp"] = mbp
    nodes = headscale_of(local).wait_online(["alice-mbp", "alice-macbook"])
    assert nodes["alice-mbp"]["user"]["name"] == "alice" and nodes["alice-mbp"]["id"] != nodes["alice-macbook"]["id"]
    _, pong = run(mbp.container, "tailscale", "ping", "--c", "3", "tm-alice", check=False, timeout=60)
    assert "via DERP(headscale)" in pong, pong
    peer = mbp.peers()["tm-alice"]
    assert peer["Relay"] == "headscale" and not peer.get("CurAddr"), peer
    mbp.forward(FORWARD, "tm-alice", 445)
    payload = os.urandom(8 * MiB)
    write_file(mbp.ip, "alice", "relayed.bin", payload, FORWARD)
    assert (
        hashlib.sha256(read_file(mbp.ip, "alice", "relayed.bin", FORWARD)).digest() == hashlib.sha256(payload).digest()
    )
    assert (local["storage"] / "alice" / "relayed.bin").read_bytes() == payload
    # Still no direct path: every byte went through the relay.
    assert not mbp.peers()["tm-alice"].get("CurAddr")


def test_embedded_headscale_runs_with_least_privilege_and_its_limits(local):
    """Read back from the engine and the kernel: no capability, no new privileges, a read-only root
    (its config and policy came in the environment), the default memory and pids limits."""
    container = local["client"].containers.get(HEADSCALE)
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"] and host["ReadonlyRootfs"] is True
    assert set(host["Tmpfs"]) == {"/etc/headscale", "/var/run/headscale", "/tmp"}
    assert host["Memory"] == 256 * 1024**2 and host["PidsLimit"] == 256
    code, out = container.exec_run(["cat", "/proc/1/status"])
    status = dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"].strip() == "1", status
    code, out = container.exec_run(["touch", "/probe-write"])
    assert code != 0 and "Read-only file system" in out.decode(), out
    # The CLI the stack runs in it finds the config the entrypoint wrote.
    code, out = container.exec_run(["headscale", "users", "list", "-o", "json"])
    assert code == 0 and "alice" in out.decode(), out


def test_the_stacks_headscale_calls_wait_for_a_busy_server_as_long_as_they_say(local):
    """The program's CLI calls carry their own deadline (HEADSCALE_CLI_TIMEOUT, not the 5 s default,
    which one key create missed at 100 shares): the real CLI in the container honours it, so a
    deadline too short to reach the server fails, and the program's own deadline answers."""
    container = local["client"].containers.get(HEADSCALE)
    code, out = container.exec_run(["headscale", "users", "list"], environment={"HEADSCALE_CLI_TIMEOUT": "1ns"})
    assert code != 0 and "deadline exceeded" in out.decode().lower(), out
    # A value the CLI could not read would be a zero deadline, failing as the one above.
    code, out = container.exec_run(["headscale", "users", "list", "-o", "json"], environment=CLI_ENVIRONMENT)
    assert code == 0 and "alice" in out.decode(), out


def test_a_second_up_changes_nothing(local):
    local["stack"].preview_json("--expect-no-changes")
    local["stack"].up("--expect-no-changes")


class Backup(threading.Thread):
    """alice's Mac writing `size` bytes to her share over the tailnet, in 8 MiB writes; paced at
    PACE bytes/s until the change under test is done, so the change happens mid-backup."""

    PACE = 12 * MiB

    def __init__(self, local, name: str, size: int):
        super().__init__(daemon=True)
        self.client, self.name, self.path = local["macs"]["alice-macbook"], name, local["storage"] / "alice" / name
        self.payload = os.urandom(size)
        self.error: BaseException | None = None
        self.finished = 0.0
        self.change_done = threading.Event()

    def run(self) -> None:
        smb = GuestClient(self.client.ip, FORWARD)
        try:
            with smbclient.open_file(smb.path("alice", self.name), mode="wb", **smb.kw()) as f:
                view, began = memoryview(self.payload), time.monotonic()
                for start in range(0, len(view), 8 * MiB):
                    f.write(view[start : start + 8 * MiB])
                    ahead = (start + 8 * MiB) / self.PACE - (time.monotonic() - began)
                    if ahead > 0 and not self.change_done.is_set():
                        self.change_done.wait(ahead)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            smb.close()
            self.finished = time.monotonic()

    def wait_started(self, at_least: int = 64 * MiB, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not (self.path.exists() and self.path.stat().st_size >= at_least):
            assert self.is_alive() and time.monotonic() < deadline, self.error
            time.sleep(0.2)

    def check(self, changed_at: float) -> None:
        self.change_done.set()
        self.join(600)
        assert self.error is None, f"the backup broke: {self.error!r}"
        assert self.finished > changed_at, "the write ended before the change: it proves nothing; write more"
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(self.payload).hexdigest(), "the backup's bytes differ"


def node_ip(headscale: Headscale, node: str) -> list[str]:
    return headscale.nodes()[node]["ip_addresses"]


def test_adding_a_share_during_a_backup_mints_one_key_and_interrupts_nothing(local):
    stack, config, client = local["stack"], local["config"], local["client"]
    config["shares"].append({"name": "dave", "owner": "dave@"})
    stack.write_config(config)
    steps = plan(stack.preview_json().json())
    keys = {name for name, op in steps.items() if name.endswith("-key") or name.startswith("join-")}
    assert keys == {"dave-key", "join-dave-mac"}, steps
    assert steps["dave-key"] == steps["join-dave-mac"] == steps["headscale-user-dave"] == "create"
    untouched = [
        n
        for n in steps
        if n.startswith(("alice", "bob", "headscale-user-alice", "headscale-user-bob"))
        or n in ("join-alice-macbook", "join-alice-mbp", "join-bob-mac", "headscale-user-admin")
    ]
    assert not untouched, {n: steps[n] for n in untouched}
    # Besides dave's own resources: the config loaded into the running Caddy, the policy loaded
    # into the running Headscale, and the one pids-limit resource and the one readiness wait of
    # every Samba container, which now name dave's too (the wait checks only his); no Samba, Caddy
    # or Headscale container is replaced. The status container is (its share list is in its
    # command; it keeps nothing), with its pids limit.
    others = {n: op for n, op in steps.items() if "dave" not in n and op != "same"}
    status = {n: others.pop(n) for n in list(others) if n.startswith("status-collector")}
    assert others == {
        "proxy-config": "update",
        "headscale-policy": "update",
        "samba-pids": "update",
        "samba-ready": "update",
    }, others
    assert set(status) <= {"status-collector", "status-collector-pids"} and "status-collector" in status, status
    headscale_id = headscale_of(local).container.id
    caddy, alice_ip = client.containers.get(CADDY).id, node_ip(headscale_of(local), "tm-alice")
    samba_alice = client.containers.get(names.samba_container(names.DEFAULT_PREFIX, "alice")).id
    before = {k["id"] for k in keys_of(headscale_of(local), "admin")}

    backup = Backup(local, "during-add.bin", 1024 * MiB)
    backup.start()
    backup.wait_started()
    stack.up()
    backup.check(changed_at=time.monotonic())

    headscale = headscale_of(local)
    assert headscale.container.id == headscale_id and headscale.container.attrs["RestartCount"] == 0
    minted = [k for k in keys_of(headscale, "admin") if k["id"] not in before]
    assert [sorted(k["acl_tags"]) for k in minted] == [["tag:timemachine", "tag:tm-dave"]]
    container = client.containers.get(CADDY)
    assert container.id == caddy and container.attrs["RestartCount"] == 0, container.logs(tail=80).decode()
    headscale.wait_online(["tm-alice", "tm-bob", "tm-dave"])
    assert node_ip(headscale, "tm-alice") == alice_ip
    # The pids-limit update set dave's container's limit and left alice's running with hers.
    for share in ("alice", "dave"):
        samba = client.containers.get(names.samba_container(names.DEFAULT_PREFIX, share))
        assert samba.attrs["HostConfig"]["PidsLimit"] == SambaConfig().process_limit, (share, samba.attrs["HostConfig"])
        assert samba.attrs["RestartCount"] == 0
    assert client.containers.get(names.samba_container(names.DEFAULT_PREFIX, "alice")).id == samba_alice
    # Only the reloaded policy lets dave reach tm-dave (the one before had no rule for him).
    dave = mac(local, "dave-mac")
    failed, why = dave.nc_fails("tm-dave", 445)
    assert not failed, why


def test_removing_a_share_during_a_backup_takes_its_node_off_and_interrupts_nothing(local):
    stack, config, client = local["stack"], local["config"], local["client"]
    config["shares"] = [s for s in config["shares"] if s["name"] != "dave"]
    stack.write_config(config)
    caddy = client.containers.get(CADDY).id
    backup = Backup(local, "during-remove.bin", 1024 * MiB)
    backup.start()
    backup.wait_started()
    stack.up()
    backup.check(changed_at=time.monotonic())
    assert client.containers.get(CADDY).id == caddy
    # The removed share's device is deleted with its key: no stale tm-dave is left on the tailnet.
    assert "tm-dave" not in headscale_of(local).nodes(), "the removed node's device was left behind"
    failed, why = local["macs"]["dave-mac"].nc_fails("tm-dave", 445)
    assert failed, why
    headscale_of(local).wait_online(["tm-alice", "tm-bob"])


BREAK_FRAGMENTS = """
import timemachine.components.share as _share

_route_fragment = _share.route_fragment


def _broken(*args, **kwargs):
    fragment = _route_fragment(*args, **kwargs)
    for server in fragment["layer4"]["servers"].values():
        handler = server["routes"][0]["handle"][0]
        handler["upstreams"] = [{"dail": upstream["dial"]} for upstream in handler["upstreams"]]
    return fragment


_share.route_fragment = _broken
"""


def test_a_config_caddy_rejects_fails_the_update_and_leaves_the_running_one(local):
    stack, client = local["stack"], local["client"]
    container = client.containers.get(CADDY)
    caddy_id, running = container.id, caddy_config_of(container)
    # A deliberately broken fragment: the program, with every route's upstream field misspelt.
    main = stack.project / "__main__.py"
    main.unlink()
    main.write_text(BREAK_FRAGMENTS + (ROOT / "__main__.py").read_text())
    try:
        failed = stack.up(check=False)
    finally:
        main.unlink()
        main.symlink_to(ROOT / "__main__.py")
    assert failed.code != 0
    assert "Caddy rejected the new config and keeps running the previous one" in failed.output, failed.output[-3000:]
    assert "dail" in failed.output, "Caddy's own error names the bad field"
    container = client.containers.get(CADDY)
    assert container.id == caddy_id and caddy_config_of(container) == running
    # The running config still serves alice over the tailnet, and the state still holds it.
    payload = os.urandom(MiB)
    write_file(local["macs"]["alice-macbook"].ip, "alice", "after-rejected.bin", payload, FORWARD)
    assert (local["storage"] / "alice" / "after-rejected.bin").read_bytes() == payload
    stack.preview_json("--expect-no-changes")


def test_an_existing_headscale_user_is_adopted_and_never_deleted(local):
    stack, config = local["stack"], local["config"]
    headscale = headscale_of(local)
    headscale.cli("users", "create", "erin")
    erin_id = {u["name"]: u["id"] for u in headscale.cli_json("users", "list")}["erin"]
    config["shares"].append({"name": "erin", "owner": "erin@"})
    stack.write_config(config)
    stack.up()
    users = [r for r in stack.resources() if r["urn"].endswith("::headscale-user-erin")]
    assert users and users[0]["outputs"]["adopted"] is True and users[0]["outputs"]["user_id"] == str(erin_id)
    erin_key = next(k for k in keys_of(headscale_of(local), "admin") if "tag:tm-erin" in k["acl_tags"])
    # Removing the share deletes its resources: the adopted user stays, the share's key expires.
    config["shares"] = [s for s in config["shares"] if s["name"] != "erin"]
    stack.write_config(config)
    stack.up()
    headscale = headscale_of(local)
    assert "erin" in {u["name"] for u in headscale.cli_json("users", "list")}
    expired = next(k for k in keys_of(headscale, "admin") if k["id"] == erin_key["id"])
    assert expired["expiration"]["seconds"] <= time.time() + 5, expired


def caddy_health(client, status: str, timeout: float = 180) -> str:
    """Wait until Docker reports Caddy's health as `status`; the output of its last check."""
    deadline = time.monotonic() + timeout
    while True:
        health = client.containers.get(CADDY).attrs["State"]["Health"]
        output = health["Log"][-1]["Output"] if health["Log"] else ""
        if health["Status"] == status:
            return output
        assert time.monotonic() < deadline, f"Caddy is {health['Status']}, not {status}: {output}"
        time.sleep(2)


def test_a_node_that_lost_its_state_is_reported_and_rekeyed_under_its_hostname(local):
    stack, client = local["stack"], local["client"]
    healthy = caddy_health(client, "healthy")
    assert "tm-alice: registered" in healthy and "tm-bob: registered" in healthy, healthy
    before = headscale_of(local).nodes()["tm-alice"]
    # The failure: tm-alice's node state is lost (its part of Caddy's volume) and Caddy restarts.
    # Its single-use key is used: it cannot register again.
    caddy = client.containers.get(CADDY)
    assert caddy.exec_run(["rm", "-rf", "/data/tailscale/tm-alice"]).exit_code == 0
    caddy.restart(timeout=10)
    unhealthy = caddy_health(client, "unhealthy")
    assert "tm-alice: NOT REGISTERED" in unhealthy and "tm-bob: registered" in unhealthy, unhealthy
    # What made this failure silent: Pulumi's state has not changed.
    stack.preview_json("--expect-no-changes")
    # The recovery: the share's re-key command as the stack prints it.
    command = shlex.split(stack.outputs()["rekeyCommands"]["alice"])
    assert command[:4] == ["pulumi", "up", "--stack", "local"] and command[4] == "--replace", command
    stack.up(*command[4:])
    headscale = headscale_of(local)
    nodes = headscale.wait_online(["tm-alice", "tm-bob"])
    # The old device is gone and the new one has the share's own hostname (not tm-alice-<suffix>).
    assert sorted(name for name in nodes if name.startswith("tm-alice")) == ["tm-alice"], sorted(nodes)
    assert nodes["tm-alice"]["id"] != before["id"], "a new device, registered with the new key"
    # Every share's node and the status page's (on by default).
    assert caddy_health(client, "healthy").count(": registered") == len(local["config"]["shares"]) + 1
    # alice's Mac reaches her share again by its name, and the data written before is there.
    alice = local["macs"]["alice-macbook"]
    alice.ping_direct("tm-alice")
    payload = os.urandom(MiB)
    write_file(alice.ip, "alice", "after-rekey.bin", payload, FORWARD)
    joined = (local["storage"] / "alice" / "joined.bin").read_bytes()
    assert read_file(alice.ip, "alice", "joined.bin", FORWARD) == joined, "what she wrote before is there"
    assert (local["storage"] / "alice" / "after-rekey.bin").read_bytes() == payload
    stack.preview_json("--expect-no-changes")


def test_headscale_down_stops_the_update_with_a_clear_error_and_a_consistent_state(local):
    stack = local["stack"]
    key_urn = next(r["urn"] for r in stack.resources() if r["urn"].endswith("::bob-key"))
    old_id = next(r["id"] for r in stack.resources() if r["urn"] == key_urn)
    headscale_of(local).container.stop(timeout=10)
    try:
        # Re-keying one share (the recovery path for a node that lost its state) needs Headscale.
        failed = stack.up("--replace", key_urn, check=False)
        assert failed.code != 0
        assert f"the embedded Headscale container '{HEADSCALE}' is exited, not running" in failed.output
        assert f"docker start {HEADSCALE}" in failed.output
        assert [r["id"] for r in stack.resources() if r["urn"] == key_urn] == [old_id], "the old key stays"
    finally:
        headscale_of(local).container.start()
    stack.up("--replace", key_urn)
    new_id = next(r["id"] for r in stack.resources() if r["urn"] == key_urn)
    assert new_id != old_id
    stack.preview_json("--expect-no-changes")


def test_a_reinstalled_mac_gets_a_fresh_key_and_reads_back_what_it_wrote(local):
    """alice's MacBook wiped (its container and tailnet state gone): the printed enrol command mints a
    fresh key for it, the old device is removed as docs/operations.md says, and the new install
    joins with the new join command and reads back the backup the old one wrote."""
    stack, client = local["stack"], local["client"]
    old = local["macs"].pop("alice-macbook")
    old_command = join_command(local, "alice-macbook")
    local["made"].remove(old.container)
    old.container.remove(force=True, v=True)
    command = shlex.split(stack.outputs()["enrolCommands"]["alice-macbook"])
    assert command[:4] == ["pulumi", "up", "--stack", "local"] and command[4] == "--replace", command
    assert command[5].endswith("::join-alice-macbook")
    stack.up(*command[4:])
    new_command = join_command(local, "alice-macbook")
    assert new_command != old_command
    old_key = next(a.split("=", 1)[1] for a in shlex.split(old_command) if a.startswith("--auth-key="))
    (old_listed,) = [k for k in keys_of(headscale_of(local), "alice") if key_matches(k["key"], old_key)]
    assert old_listed["expiration"]["seconds"] <= time.time() + 5, "the old key is expired"
    headscale = headscale_of(local)
    old_node = headscale.nodes()["alice-macbook"]
    headscale.cli("nodes", "delete", "--identifier", str(old_node["id"]), "--force")
    reinstalled = mac(local, "alice-macbook")
    nodes = headscale.wait_online(["alice-macbook"])
    assert nodes["alice-macbook"]["id"] != old_node["id"] and nodes["alice-macbook"]["user"]["name"] == "alice"
    reinstalled.ping_direct("tm-alice")
    reinstalled.forward(FORWARD, "tm-alice", 445)
    written = (local["storage"] / "alice" / "joined.bin").read_bytes()
    read = read_file(reinstalled.ip, "alice", "joined.bin", FORWARD)
    assert hashlib.sha256(read).hexdigest() == hashlib.sha256(written).hexdigest()
    assert client.containers.get(CADDY).attrs["RestartCount"] == 0
    stack.preview_json("--expect-no-changes")


def test_destroy_stops_at_the_protected_headscale_volume(local):
    stack, client = local["stack"], local["client"]
    for container in local["made"]:
        container.remove(force=True, v=True)
    local["made"].clear()
    with pytest.raises(PulumiError) as stopped:
        stack.run("destroy", "--yes", "--skip-preview", *stack.stack_args())
    assert "protect" in str(stopped.value)
    assert client.volumes.get(names.headscale_volume(names.DEFAULT_PREFIX)), "Headscale's state is kept"
    left = {step["urn"].split("::")[-1] for step in json.loads(stack.export())["deployment"]["resources"]}
    assert "headscale-data" in left
