"""A real tailnet on the private engine: Headscale (images/headscale) as control server over HTTPS
with its embedded DERP behind the same TLS (a certificate from a test CA, for the name
HEADSCALE_NAME, which Docker's DNS gives it on each network it joins), and tailscale v1.102.5 clients
(tests/images/tailnet-client) in userspace networking, with no debug variable: each trusts the CA
through its system trust store (update-ca-certificates), as a Mac trusts the stack's profile.
Everything sits on `internal` Docker networks; log upload is off."""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import yaml

from tests.support.containers import remove_containers, upload
from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet
from tests.support.project import ROOT
from tests.support.pulumi_runner import run_program
from timemachine.components.images import context_digest
from timemachine.config.loader import load
from timemachine.config.models import DEFAULT_HEADSCALE_VERSION
from timemachine.headscale.tls import issue_authority, issue_server
from timemachine.headscale.versions import has_client_port_setting, keys_by_id

HEADSCALE_CONTEXT = ROOT / "images" / "headscale"
CLIENT_CONTEXT = ROOT / "tests" / "images" / "tailnet-client"
POLICY_PATH = "/etc/headscale/policy.hujson"
CONFIG_PATH = "/etc/headscale/config.yaml"
TLS_CERT = "/etc/headscale/tls.crt"
TLS_KEY = "/etc/headscale/tls.key"
PORT = 8080
# The test Headscale's name: every network it joins resolves it (a Docker alias); `.test` is reserved.
HEADSCALE_NAME = "headscale.tailnet.test"
# The test CA (constrained to HEADSCALE_NAME) and the certificate the test Headscale serves.
TEST_CA = issue_authority(HEADSCALE_NAME, "tailnet tier test CA")
TEST_SERVER = issue_server(HEADSCALE_NAME, TEST_CA.certificate, TEST_CA.key)
# Where a client's trust store takes an extra CA (Debian's ca-certificates).
CLIENT_CA_PATH = "/usr/local/share/ca-certificates/tailnet-test-ca.crt"


# The release the tests' own Headscale runs: the stack's default.
HEADSCALE_VERSION = DEFAULT_HEADSCALE_VERSION


def build(client, context: Path, repository: str, build_args: dict[str, str] | None = None) -> str:
    """Build a Dockerfile folder once per content and build args (Docker's layer cache keeps the Go
    builds)."""
    tag = f"{repository}:{context_digest(context, build_args)}"
    try:
        client.images.get(tag)
    except Exception:  # noqa: BLE001 - ImageNotFound: build it
        client.images.build(path=str(context), tag=tag, rm=True, timeout=3600, buildargs=build_args)
    return tag


def build_headscale(client, version: str = HEADSCALE_VERSION) -> str:
    """images/headscale at `version`, one image per release."""
    return build(client, HEADSCALE_CONTEXT, "tailscale-timemachine/headscale", {"HEADSCALE_VERSION": version})


def headscale_config(tls: bool = True, version: str = HEADSCALE_VERSION) -> str:
    """Offline Headscale `version`: HTTPS at HEADSCALE_NAME, embedded DERP only (no DERP map fetched)
    behind the same TLS, no log upload; `tls` False: no certificate files (for its CLI alone)."""
    files = {"tls_cert_path": TLS_CERT, "tls_key_path": TLS_KEY} if tls else {}
    # 0.29 refuses the key (the setting moved into the policy).
    client_port = {"randomize_client_port": False} if has_client_port_setting(version) else {}
    return yaml.safe_dump(
        {
            "server_url": f"https://{HEADSCALE_NAME}:{PORT}",
            **files,
            "listen_addr": f"0.0.0.0:{PORT}",
            "metrics_listen_addr": "127.0.0.1:9090",
            "grpc_listen_addr": "127.0.0.1:50443",
            "noise": {"private_key_path": "/var/lib/headscale/noise_private.key"},
            "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
            "derp": {
                "server": {
                    "enabled": True,
                    "region_id": 999,
                    "region_code": "headscale",
                    "region_name": "Headscale DERP",
                    "stun_listen_addr": "0.0.0.0:3478",
                    "private_key_path": "/var/lib/headscale/derp_server_private.key",
                    "automatically_add_embedded_derp_region": True,
                },
                "urls": [],
                "paths": [],
                "auto_update_enabled": False,
                "update_frequency": "24h",
            },
            "disable_check_updates": True,
            "database": {"type": "sqlite", "sqlite": {"path": "/var/lib/headscale/db.sqlite", "write_ahead_log": True}},
            "log": {"level": "info", "format": "text"},
            "policy": {"mode": "file", "path": POLICY_PATH},
            "dns": {
                "magic_dns": True,
                "base_domain": "tailnet.internal",
                "override_local_dns": False,
                "nameservers": {"global": []},
            },
            "unix_socket": "/var/run/headscale/headscale.sock",
            "unix_socket_permission": "0770",
            "logtail": {"enabled": False},
            **client_port,
        }
    )


class CommandFailed(AssertionError):
    pass


def run(container, *command: str, check: bool = True, timeout: int | None = None) -> tuple[int, str]:
    cmd = list(command) if timeout is None else ["timeout", str(timeout), *command]
    code, output = container.exec_run(cmd, demux=False)
    text = (output or b"").decode(errors="replace")
    if check and code != 0:
        raise CommandFailed(f"{' '.join(command)} exited {code}: {text[-2000:]}")
    return code, text


@dataclass
class Headscale:
    container: Any
    ip: str
    users: dict[str, int] = field(default_factory=dict)
    # The CA its certificate chains to (PEM): what clients and the stack's nodes must trust.
    ca_pem: str = TEST_CA.certificate
    control_url: str = f"https://{HEADSCALE_NAME}:{PORT}"

    @property
    def url(self) -> str:
        return self.control_url

    def attach(self, network: str, ip: str) -> None:
        """Join `network` at `ip`, reachable there by its name (HEADSCALE_NAME)."""
        self.container.client.networks.get(network).connect(self.container, ipv4_address=ip, aliases=[HEADSCALE_NAME])

    def cli(self, *args: str, check: bool = True) -> str:
        return run(self.container, "headscale", *args, check=check)[1]

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "-o", "json"))

    @property
    def version(self) -> str:
        """The release it runs, as `headscale version` says."""
        return self.cli("version").strip().splitlines()[0].removeprefix("headscale version").strip()

    def keys(self, user_id: int | str) -> list[dict]:
        """The pre-auth keys made for a user (0.28 and later list every key: filtered here)."""
        if not keys_by_id(self.version):
            return self.cli_json("preauthkeys", "list", "--user", str(user_id)) or []
        return [
            k
            for k in self.cli_json("preauthkeys", "list") or []
            if str((k.get("user") or {}).get("id")) == str(user_id)
        ]

    def user(self, name: str) -> int:
        if name not in self.users:
            self.cli("users", "create", name)
            self.users = {u["name"]: int(u["id"]) for u in self.cli_json("users", "list")}
        return self.users[name]

    def preauth_key(self, user: str, tags: list[str] | None = None) -> str:
        args = ["preauthkeys", "create", "-u", str(self.user(user)), "--expiration", "2h"]
        if tags:
            args += ["--tags", ",".join(tags)]
        return self.cli_json(*args)["key"]

    def load_policy(self, policy_text: str) -> None:
        """Check the policy with Headscale's own parser, write it, restart Headscale to read it."""
        upload(self.container, "/tmp/candidate.hujson", policy_text)
        self.cli("policy", "check", "-f", "/tmp/candidate.hujson")
        upload(self.container, POLICY_PATH, policy_text)
        self.container.restart(timeout=10)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run(self.container, "headscale", "users", "list", check=False)[0] == 0:
                return
            time.sleep(0.5)
        raise CommandFailed(f"Headscale not ready: {self.container.logs(tail=40).decode()}")

    def nodes(self) -> dict[str, dict]:
        return {n["given_name"]: n for n in self.cli_json("nodes", "list") or []}

    def wait_online(self, names: list[str], timeout: float = 180) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        nodes: dict = {}
        while time.monotonic() < deadline:
            nodes = self.nodes()
            if all(nodes.get(n, {}).get("online") for n in names):
                return nodes
            time.sleep(1)
        raise CommandFailed(f"nodes {names} not online after {timeout}s: {json.dumps(nodes)[:3000]}")


def key_matches(listed: str, key: str) -> bool:
    """A key as Headscale lists it is `key`: 0.28 lists only its prefix (`hskey-auth-<prefix>-***`)."""
    return listed == key or (listed.endswith("-***") and key.startswith(listed[:-3]))


def node_tags(node: dict) -> list[str]:
    """A node's tags as Headscale lists them: `tags` from 0.28 (its identity), `forced_tags` before."""
    return sorted(node.get("tags") or node.get("forced_tags") or [])


def start_headscale(
    client, image: str, network: str, ip: str, server_ip: str, policy_text: str, version: str = HEADSCALE_VERSION
) -> Headscale:
    """Headscale (`image`, of release `version`) attached to `network` at `ip` as HEADSCALE_NAME (its
    certificate's name), serving https://HEADSCALE_NAME:8080 to every node; `server_ip`: where the
    stack's nodes will reach it (attach() puts it there)."""
    container = client.containers.create(
        image,
        name=f"tm-test-headscale-{uuid.uuid4().hex[:6]}",
        network=network,
        networking_config={network: client.api.create_endpoint_config(ipv4_address=ip, aliases=[HEADSCALE_NAME])},
    )
    upload(container, CONFIG_PATH, headscale_config(version=version))
    upload(container, TLS_CERT, TEST_SERVER.certificate)
    upload(container, TLS_KEY, TEST_SERVER.key, mode=0o600)
    upload(container, POLICY_PATH, policy_text)
    container.start()
    headscale = Headscale(container, server_ip)
    headscale.wait_ready()
    return headscale


@dataclass
class Client:
    """A tailnet client container (the Mac's stand-in) with a TCP forwarder to one tailnet peer."""

    container: Any
    ip: str
    name: str

    def up(self, login_server: str, key: str) -> None:
        run(
            self.container,
            "tailscale",
            "up",
            f"--login-server={login_server}",
            f"--authkey={key}",
            f"--hostname={self.name}",
            "--accept-dns=false",
            timeout=120,
        )

    def join(self, command: str, check: bool = True, timeout: int = 120) -> tuple[int, str]:
        """Run a stack's join command as a Mac's owner would (naming this machine unless it does)."""
        args = shlex.split(command)
        if not any(a.startswith("--hostname") for a in args):
            args.append(f"--hostname={self.name}")
        return run(self.container, *args, "--accept-dns=false", check=check, timeout=timeout)

    def status(self) -> dict:
        return json.loads(run(self.container, "tailscale", "status", "--json")[1])

    def peers(self) -> dict[str, dict]:
        return {p["HostName"]: p for p in (self.status().get("Peer") or {}).values()}

    def tailnet_ip(self) -> str:
        return self.status()["Self"]["TailscaleIPs"][0]

    def forward(self, port: int, peer: str, peer_port: int) -> None:
        """Listen on this container's `port`; each connection is piped to peer:peer_port through
        this client's own tailnet identity (`tailscale nc`)."""
        self.container.exec_run(
            ["socat", f"TCP-LISTEN:{port},fork,reuseaddr", f"EXEC:tailscale nc {peer} {peer_port}"], detach=True
        )
        # socat starts in the background: a connection made before it listens is refused (seen on a
        # loaded machine), so return once the port is listening.
        deadline = time.monotonic() + 20
        while run(self.container, "sh", "-c", f"ss -Hltn 'sport = :{port}' | grep -q .", check=False)[0] != 0:
            if time.monotonic() > deadline:
                raise CommandFailed(f"socat is not listening on {port} in {self.container.name}")
            time.sleep(0.2)

    def nc_fails(self, peer: str, port: int, seconds: int = 15) -> tuple[bool, str]:
        """Try to open peer:port over the tailnet; (True, why) when it cannot be opened."""
        code, text = run(self.container, "sh", "-c", f"echo | tailscale nc {peer} {port}", check=False, timeout=seconds)
        return code != 0, text

    def ping_direct(self, peer: str, timeout: float = 90) -> str:
        """Wait for a direct (not relayed) path to peer; returns tailscale ping's last line."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            _, text = run(self.container, "tailscale", "ping", "--c", "5", peer, check=False, timeout=30)
            if " via " in text and "DERP" not in text.strip().splitlines()[-1]:
                return text
            time.sleep(1)
        raise CommandFailed(f"no direct path to {peer}: {text}")


def start_client(
    client,
    image: str,
    network: str,
    ip: str,
    name: str,
    trust: str | None = TEST_CA.certificate,
    net_admin: bool = False,
) -> Client:
    """A client container on `network` at `ip`; `trust`: a CA (PEM) added to its system trust store
    with update-ca-certificates before tailscaled starts (None: the system's CAs only);
    `net_admin`: for a test that changes its packet filter."""
    container = client.containers.create(
        image,
        # The trust store first, as a Mac has the profile installed before it joins.
        command=["sh", "-c", 'update-ca-certificates >/dev/null && exec "$@"', "client", *CLIENT_COMMAND],
        name=f"tm-test-{name}-{uuid.uuid4().hex[:6]}",
        network=network,
        networking_config={network: client.api.create_endpoint_config(ipv4_address=ip)},
        cap_add=["NET_ADMIN"] if net_admin else None,
    )
    if trust is not None:
        upload(container, CLIENT_CA_PATH, trust)
    container.start()
    # `tailscale status --json` exits 0 once tailscaled answers (logged out: BackendState NeedsLogin)
    # and 1 while it does not ("failed to connect to local tailscaled"). Many clients starting at
    # once on 2 cores (bench_scale's 50 Macs) take longer than one alone.
    deadline = time.monotonic() + 90
    while (answer := run(container, "tailscale", "status", "--json", check=False))[0] != 0:
        if time.monotonic() > deadline:
            raise CommandFailed(f"tailscaled in {container.name} did not answer in 90 s: {answer[1][-500:]}")
        time.sleep(0.5)
    return Client(container, ip, name)


@contextmanager
def hosts_entry(name: str, ip: str, hosts: Path = Path("/etc/hosts")) -> Iterator[None]:
    """`name` resolving to `ip` on this machine (as an operator's DNS would), for a program that runs
    here and calls the control server by its name; the line is removed afterwards."""
    line = f"{ip} {name}  # tailscale-timemachine test {uuid.uuid4().hex[:8]}\n"
    with hosts.open("a") as file:
        file.write(line)
    try:
        yield
    finally:
        hosts.write_text("".join(kept for kept in hosts.read_text().splitlines(keepends=True) if kept != line))


# The client image's own command (tests/images/tailnet-client).
CLIENT_COMMAND = [
    "tailscaled",
    "--tun=userspace-networking",
    "--socks5-server=127.0.0.1:1055",
    "--statedir=/var/lib/tailscale",
    "--no-logs-no-support",
]


def free_addresses(config: dict, count: int) -> list[str]:
    """Addresses in the stack's subnet that are neither a share's, the status container's, the
    gateway nor a Caddy shard's."""
    loaded = load(config)
    taken = {str(ip) for ip in [*loaded.ips.values(), loaded.status_ip, *loaded.proxy_ips] if ip is not None}
    hosts = list(ipaddress.IPv4Network(config["network"]["subnet"]).hosts())[1:-1]
    return [str(ip) for ip in reversed(hosts) if str(ip) not in taken][:count]


@contextmanager
def deployed_tailnet(
    client,
    pulumi_env: dict,
    goproxy,
    images: dict,
    work: Path,
    shares: list[dict],
    node_tags: dict[str, list[str]],
    users: dict[str, str],
    name_prefix: str = "tm-tailnet",
    proxy: dict | None = None,
) -> Iterator[dict]:
    """Headscale with users and keys, the program's own policy loaded, the stack deployed by the
    real engine on an internal network (bridge mode, controlUrl = Headscale, `name_prefix` for its
    Docker names, `proxy` keys beside the tests' own), one logged-in client per entry of `users`
    (client name → Headscale user); everything removed afterwards."""
    storage = work / "storage"
    storage.mkdir(parents=True)
    network = f"{name_prefix}-{uuid.uuid4().hex[:6]}"
    subnet = unique_subnet(client)
    # The control network: Headscale's home while the stack's network does not exist yet.
    control_subnet = unique_subnet(client, exclude={subnet})
    provisional = stack_config(
        storage,
        network,
        subnet,
        goproxy.build_args(),
        shares,
        internal=True,
        control_url=f"https://{HEADSCALE_NAME}:{PORT}",
    )
    provisional["proxy"].update(proxy or {})
    addresses = free_addresses({**provisional, "shares": [dict(s, authKey="0" * 48) for s in shares]}, 2 + len(users))
    hs_ip, spare_ip, client_ips = addresses[0], addresses[1], addresses[2:]
    control_ip = str(list(ipaddress.IPv4Network(control_subnet).hosts())[9])
    made: list = []
    with ExitStack() as cleanup:
        control_net = client.networks.create(
            f"{name_prefix}-control-{uuid.uuid4().hex[:6]}",
            driver="bridge",
            internal=True,
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=control_subnet)]),
        )
        cleanup.callback(control_net.remove)
        # Headscale and the clients sit on the stack's network: gone before it is destroyed.
        cleanup.callback(remove_containers, made)
        # The server URL and DERP address every node is given: Headscale's address on the stack's
        # network, which it joins once `pulumi up` has made that network.
        headscale = start_headscale(client, images["headscale"], control_net.name, control_ip, hs_ip, "{}")
        made.append(headscale.container)
        keys = {s["name"]: headscale.preauth_key("admin", node_tags[s["name"]]) for s in shares}
        config = stack_config(
            storage,
            network,
            subnet,
            goproxy.build_args(),
            shares,
            name_prefix=name_prefix,
            internal=True,
            control_url=headscale.url,
        )
        config["proxy"].update(proxy or {})
        # The nodes trust the test CA as the stack lets them trust an external control server's.
        config["tailnet"]["controlCaCertificate"] = headscale.ca_pem
        # The program's own policy, as a mock run of __main__.py renders it; checked against the
        # deployed stack's output below.
        policy = run_program({**config, "shares": [dict(s, authKey=keys[s["name"]]) for s in shares]}).outputs[
            "tailnetPolicy"
        ]
        headscale.load_policy(policy)
        deployment = cleanup.enter_context(
            deployed_stack(client, pulumi_env, work / "stack", "tailnet", config, keys=keys, wait=False, made=made)
        )
        stack = deployment.stack
        if json.loads(stack.outputs()["tailnetPolicy"]) != json.loads(policy):
            raise CommandFailed("the deployed stack's tailnetPolicy differs from the one loaded")
        headscale.attach(network, hs_ip)
        nodes = headscale.wait_online([f"tm-{s['name']}" for s in shares])
        clients = {}
        for (name, user), ip in zip(users.items(), client_ips, strict=True):
            c = start_client(client, images["client"], network, ip, f"{name}-mac")
            made.append(c.container)
            c.up(headscale.url, headscale.preauth_key(user))
            clients[name] = c
        headscale.wait_online([f"{name}-mac" for name in users])
        yield {
            "stack": stack,
            "prefix": name_prefix,
            "config": config,
            "keys": keys,
            "headscale": headscale,
            "clients": clients,
            "nodes": nodes,
            "storage": storage,
            "network": network,
            "client": client,
            "policy": policy,
            "spare_ip": spare_ip,
        }
