"""Pydantic models of the stack config: the one place where user input is checked."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from cryptography import x509
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from timemachine.planning import names
from timemachine.planning.durations import parse_duration
from timemachine.planning.ports import STATUS_PORT

# A tailnet identity: a login (alice@example.com; Headscale names users alice@), a group, an
# autogroup, or a tag.
LOGIN = re.compile(r"[^@\s:]+@[^@\s]*")
GROUP = re.compile(r"(group|autogroup):[\w.-]+")
# Tailscale tag names start with a letter (it refuses tag:2024mac).
TAG = re.compile(r"tag:[a-z]([a-z0-9-]*[a-z0-9])?")
OWNER = re.compile("|".join(p.pattern for p in (LOGIN, GROUP, TAG)))
DEFAULT_TAG_OWNERS = ("autogroup:admin",)
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_DNS_LABEL = 63
# A Samba container's hostname, tm-<share>-samba, must fit the kernel's host name limit (64 bytes
# with its terminating NUL).
MAX_HOSTNAME = 63
SAMBA_HOSTNAME = "tm-{}-samba"
# Provided auth keys: one token, no spaces; Tailscale's always start with tskey-auth-.
AUTH_KEY = re.compile(r"[A-Za-z0-9_-]{16,}")
QUOTA_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
QUOTA_PATTERN = re.compile(r"^\s*([0-9]+)\s*([KMGT])?B?\s*$", re.IGNORECASE)
# Docker object names: what `docker network create` accepts.
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# namePrefix: a DNS-ish label starting with a letter. Docker limits no container or network name's
# length; a local volume's name is a directory name (255 bytes). 32 keeps the longest derived name,
# <prefix>-<share>-samba-state with a share of MAX_HOSTNAME - 9 characters, at 99.
NAME_PREFIX = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
MAX_NAME_PREFIX = 32


class ConfigModel(BaseModel):
    # camelCase keys in YAML (Pulumi's convention), snake_case in Python; a typo is an error.
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


def _parse_quota(value: object) -> object:
    """Turn '1T' / '500G' / 1024 into bytes; anything else is left for the int check to reject."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 500G or 1T")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = QUOTA_PATTERN.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a size (a whole number with K, M, G or T, e.g. 500G or 1T)")
        number, unit = match.groups()
        # A bare number is bytes.
        return int(number) * (QUOTA_UNITS[unit.upper()] if unit else 1)
    raise ValueError("must be a size such as 500G or 1T")


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be greater than zero (omit quota for an unlimited share)")
    return value


Quota = Annotated[int, BeforeValidator(_parse_quota), AfterValidator(_positive)]


def _not_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must not be negative (0 for none)")
    return value


# A size that may be zero (storage.reserve).
Size = Annotated[int, BeforeValidator(_parse_quota), AfterValidator(_not_negative)]


def _tag(value: str) -> str:
    if not TAG.fullmatch(value):
        raise ValueError(
            f'{value!r} is not a tailnet tag (write it as "tag:<name>": a letter first, then lowercase a-z, 0-9, "-")'
        )
    return value


Tag = Annotated[str, AfterValidator(_tag)]


def _duration_seconds(value: object) -> object:
    """A duration as seconds: a number of seconds, or text such as '3d', '72h', '90m'."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 3d, 72h or 90m")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"{value!r} is not a duration greater than zero (e.g. 3d, 72h, 90m)")
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("must be a duration such as 3d, 72h or 90m")


# Seconds; given as seconds or with a unit (planning/durations.py).
Duration = Annotated[float, BeforeValidator(_duration_seconds)]
DEFAULT_STALE_AFTER_SECONDS = 3 * 86400.0

MEMORY_PATTERN = re.compile(r"^\s*([0-9]+)\s*([MG])i?B?\s*$", re.IGNORECASE)
MIN_MEMORY_MIB = 32
MIN_PROCESSES = 8


def _memory_mib(value: object) -> object:
    """A container memory limit ('512M', '1G') as MiB, the unit the docker provider takes."""
    if isinstance(value, str) and (match := MEMORY_PATTERN.match(value)):
        number, unit = match.groups()
        return int(number) * (1024 if unit.upper() == "G" else 1)
    raise ValueError(f"{value!r} is not a memory size: a whole number with M or G, e.g. 512M or 1G")


def _enough_memory(value: int) -> int:
    if value < MIN_MEMORY_MIB:
        raise ValueError(f"{value}M is too little for any of the stack's containers; give at least {MIN_MEMORY_MIB}M")
    return value


def _enough_processes(value: int) -> int:
    if value < MIN_PROCESSES:
        raise ValueError(
            f"{value} processes is too few for any of the stack's containers; give at least {MIN_PROCESSES}"
        )
    return value


# Container limits (components/hardening.py): memory in MiB, processes (the cgroup pids limit).
MemoryLimit = Annotated[int, BeforeValidator(_memory_mib), AfterValidator(_enough_memory)]
ProcessLimit = Annotated[int, Field(strict=True), AfterValidator(_enough_processes)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class NetworkConfig(ConfigModel):
    # Unset: derived from namePrefix (StackConfig.network_name).
    name: str | None = None
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("172.24.0.0/24")
    # No route off the machine for the Samba network (Docker's `internal`); unset: StackConfig.internal.
    internal: bool | None = None

    @field_validator("name")
    @classmethod
    def _docker_name(cls, value: str | None) -> str | None:
        if value is not None and not DOCKER_NAME.match(value):
            raise ValueError(f"{value!r} is not a Docker network name (letters, digits, '_', '.', '-')")
        return value

    @field_validator("subnet", mode="before")
    @classmethod
    def _network_address(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return ipaddress.IPv4Network(value)
            except ValueError as exc:  # AddressValueError and NetmaskValueError included
                if "host bits" in str(exc):
                    strict = ipaddress.IPv4Network(value, strict=False)
                    raise ValueError(f"{value!r} has host bits set; write the network address, {strict}") from None
                raise ValueError(f"{value!r} is not an IPv4 subnet ({exc}); e.g. 172.24.0.0/24") from None
        return value

    @field_validator("subnet")
    @classmethod
    def _room(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        # network, gateway, proxy and broadcast addresses leave nothing below a /29.
        if value.prefixlen > 29:
            raise ValueError(f"{value} is too small; use a /29 or larger (e.g. a /24)")
        return value


HEADSCALE_USER = re.compile(r"[a-z][a-z0-9._-]*@")
# The Headscale releases the stack builds (images/headscale), oldest first: an upgrade goes through
# each minor version in turn (docs/operations.md).
HEADSCALE_VERSIONS = ("v0.27.1", "v0.28.0", "v0.29.3")
HeadscaleVersion = Literal["v0.27.1", "v0.28.0", "v0.29.3"]
# New stacks get the newest; a deployed stack whose config names none keeps the release it runs
# (headscale/versions.py kept_version) and moves one minor version per `pulumi up`.
DEFAULT_HEADSCALE_VERSION: HeadscaleVersion = "v0.29.3"


class HeadscaleConfig(ConfigModel):
    # The stack runs Headscale itself (images/headscale) at tailnet.controlUrl.
    embedded: bool = False
    image: str = ""
    # The embedded Headscale's release (the policy is rendered for it too; with an external Headscale,
    # the release that runs there). A deployed stack moves one minor version per `pulumi up`.
    version: HeadscaleVersion = DEFAULT_HEADSCALE_VERSION
    # Its address on the stack's network; default: the address below the proxy's.
    ip: ipaddress.IPv4Address | None = None
    # Host ports published for Headscale's HTTP listener (control + DERP) and its STUN server.
    port: int = Field(default=8080, ge=1, le=65535)
    stun_port: int = Field(default=3478, ge=1, le=65535)
    memory_limit: MemoryLimit = 256
    process_limit: ProcessLimit = 256
    # Its certificate for an https:// controlUrl: internal, from a CA the stack makes (its root is a
    # stack output each Mac trusts); acme, Let's Encrypt for a public name (TLS-ALPN-01 on port 443).
    tls: Literal["internal", "acme"] = "internal"
    acme_email: str | None = None
    # The relay for Macs without a direct path: embedded, Headscale's own DERP behind its TLS
    # listener (works offline, wherever the control URL is reached); public, Tailscale's DERP map.
    derp: Literal["embedded", "public"] = "embedded"
    # The host address its published ports bind to: loopback unless the operator names the LAN
    # address Macs reach it at (or 0.0.0.0 for every interface).
    bind_address: ipaddress.IPv4Address = ipaddress.IPv4Address("127.0.0.1")


def is_loopback(host: str) -> bool:
    """A host name or address that never leaves the machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _certificates(value: str | None) -> str | None:
    """PEM text with at least one X.509 certificate."""
    if value is None:
        return None
    try:
        found = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValueError("is not a PEM certificate; give the CA's -----BEGIN CERTIFICATE----- text") from None
    if not found:
        raise ValueError("holds no certificate; give the CA's -----BEGIN CERTIFICATE----- text")
    return value.strip() + "\n"


class TailnetConfig(ConfigModel):
    hostname_prefix: str = "tm-"
    tags: list[Tag] = Field(default_factory=lambda: ["tag:timemachine"])
    key_expiry_days: int = Field(default=90, ge=1, le=90)
    dns_suffix: str | None = None
    control_url: str | None = None
    # managed: the Tailscale API; provided: keys in the config; headscale: made by the program in Headscale.
    auth_keys: Literal["managed", "provided", "headscale"] = "managed"
    # Who may apply the tags; None: the default for Tailscale, a required choice for Headscale.
    tag_owners: list[str] | None = None
    headscale: HeadscaleConfig = HeadscaleConfig()
    # An external Headscale's API key (`headscale apikeys create`), for authKeys: headscale.
    headscale_api_key: SecretStr | None = None
    # Lifetime of the Macs' join keys (single-use, one per Mac), apart from the share nodes' keys.
    join_key_expiry_hours: int = Field(default=24, ge=1, le=2160)
    # An external control server's private CA (PEM), which the share nodes then trust.
    control_ca_certificate: Annotated[str | None, AfterValidator(_certificates)] = None
    # The one way to run an http:// controlUrl on a non-loopback address: it says what it allows.
    allow_keys_over_plain_http: bool = False

    @field_validator("hostname_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*|", value):
            raise ValueError(f'{value!r} must start a DNS label (lowercase a-z, 0-9, "-")')
        return value

    @field_validator("tag_owners")
    @classmethod
    def _tag_owners(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("is empty; give at least one owner, e.g. [autogroup:admin] or [admin@example.com]")
        for owner in value:
            if not OWNER.fullmatch(owner):
                raise ValueError(
                    f"{owner!r} is not a tag owner (a login alice@example.com, alice@ on Headscale, "
                    "group:…, autogroup:admin or tag:…)"
                )
        return value

    @property
    def self_hosted(self) -> bool:
        """A control server of one's own (Headscale) instead of Tailscale's."""
        return self.control_url is not None

    @property
    def control_host(self) -> str | None:
        """The controlUrl's host name or address."""
        return urlsplit(self.control_url).hostname if self.control_url else None

    @property
    def plain_http(self) -> bool:
        return (self.control_url or "").startswith("http://")

    @property
    def effective_tag_owners(self) -> list[str]:
        return self.tag_owners if self.tag_owners is not None else list(DEFAULT_TAG_OWNERS)

    @property
    def key_user(self) -> str | None:
        """The Headscale user the share nodes register under: the first user among the tag owners."""
        users = [owner for owner in self.tag_owners or [] if HEADSCALE_USER.fullmatch(owner)]
        return users[0].removesuffix("@") if users else None

    @field_validator("dns_suffix")
    @classmethod
    def _suffix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip(".").lower()
        labels = value.split(".")
        if not all(DNS_LABEL.match(label) and len(label) <= MAX_DNS_LABEL for label in labels):
            raise ValueError(f"{value!r} is not a DNS name (e.g. example-tailnet.ts.net)")
        return value

    @field_validator("control_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://headscale.example.com)")
        return value.rstrip("/") if value else value


BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Caddy's memory limit when proxy.memoryLimit is unset (docs/benchmarks.md, "Scale"): idle, each
# registered tsnet node added 9.4 MiB of RSS (10 → 50 nodes, scripts/bench_scale.py), so a flat 512M
# would stop Caddy — every user's share — at about 50 nodes. A base for the data path plus 12 MiB
# per node, rounded up to a power of two: headroom for nodes that carry backups, and a limit that
# changes rarely as shares are added (a change is an in-place `docker update`, no restart). Never
# below the 512M that small stacks always had.
PROXY_MEMORY_FLOOR_MIB = 512
PROXY_MEMORY_BASE_MIB = 128
PROXY_MEMORY_PER_NODE_MIB = 12


# The least Caddy was measured to take, idle (docs/benchmarks.md, "Scale"): its data path's peak
# (52.4 MiB, scripts/measure_limits.py, rounded up) and the RSS each idle registered node added from
# 10 to 100 nodes (2.54 MiB, the least-squares slope of scripts/bench_scale.py at 0b2b7e5, with a
# roomy limit; 336.7 MiB at 100 nodes, 470.9 at 50); its threads, 10 to 14 up to 100 nodes, and the
# health check's few processes. A limit set below these is refused: Caddy, every user's share,
# would be killed as its nodes come up.
PROXY_NEED_BASE_MIB = 64
PROXY_NEED_HALF_MIB_PER_NODE = 5
PROXY_NEED_PROCESSES = 32
PROXY_NEED_NODES_PER_PROCESS = 16


def proxy_memory_mib(nodes: int) -> int:
    """Caddy's default memory limit (MiB) for `nodes` tailnet nodes."""
    wanted = PROXY_MEMORY_BASE_MIB + PROXY_MEMORY_PER_NODE_MIB * nodes
    return max(PROXY_MEMORY_FLOOR_MIB, 1 << (wanted - 1).bit_length())


def proxy_memory_need_mib(nodes: int) -> int:
    """The least memory (MiB) Caddy was measured to take, idle, for `nodes` tailnet nodes."""
    return PROXY_NEED_BASE_MIB + -(-PROXY_NEED_HALF_MIB_PER_NODE * nodes // 2)


def proxy_process_need(nodes: int) -> int:
    """The least pids limit Caddy was measured to need for `nodes` tailnet nodes."""
    return PROXY_NEED_PROCESSES + nodes // PROXY_NEED_NODES_PER_PROCESS


class ProxyConfig(ConfigModel):
    # Bridge by default: host mode's tsnet nodes bind their sockets to the host's default-route
    # interface (no CAP_NET_ADMIN) and cannot be tested on a tailnet here (docs/known-limits.md).
    network_mode: Literal["host", "bridge"] = "bridge"
    first_node_port: int = 41641
    # Bridge mode: publish each node's UDP port on the host, for direct paths from peers behind
    # hard NATs. Docker cannot publish a port on a running container, so with this on, adding or
    # removing a share recreates Caddy (every node restarts); off, nodes traverse Docker's NAT.
    publish_node_ports: bool = False
    # `pulumi up` waits until Caddy is healthy and every node has registered with the control
    # server, and fails naming the nodes that did not. Off only where nodes cannot reach one.
    wait_for_nodes: bool = True
    image: str = ""
    # Build args for images/caddy, e.g. GOPROXY for a company module proxy or other module pins.
    build_args: dict[str, str] = Field(default_factory=dict)
    # Caddy's data path peaked at 52 MiB RSS, 7 threads (scripts/measure_limits.py); each tsnet node
    # adds about 9.4 MiB (scripts/bench_scale.py). Unset, the limit follows the number of nodes
    # (proxy_memory_mib, applied by StackConfig); this default is its floor. An explicit value wins.
    memory_limit: MemoryLimit = PROXY_MEMORY_FLOOR_MIB
    process_limit: ProcessLimit = 256
    # How many Caddy containers serve the nodes (timemachine/planning/shards.py): a crash of one is
    # an outage for its shares only. Shard 0 is the one Caddy of a stack without shards.
    shards: int = Field(default=1, ge=1)

    def memory_limit_for(self, nodes: int) -> int:
        """One shard's memory limit (MiB) for the `nodes` it serves: memoryLimit when set, else
        derived (proxy_memory_mib). With one shard StackConfig has already derived it."""
        return self.memory_limit if "memory_limit" in self.model_fields_set else proxy_memory_mib(nodes)

    @field_validator("build_args")
    @classmethod
    def _arg_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in value if not BUILD_ARG.match(name))
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: not a Dockerfile ARG name (letters, digits, '_'), e.g. GOPROXY"
            )
        return value


# How a Mac logs in to its share. guest: no password, the tailnet alone decides who connects (a
# guest session cannot sign). password: the share's own generated password and mandatory SMB
# signing, for a Mac that insists on signed sessions (docs/security.md, which to choose).
SambaAuth = Literal["guest", "password"]


class SambaConfig(ConfigModel):
    image: str = ""
    # Every share's login unless the share sets its own (shares[].auth).
    auth: SambaAuth = "guest"
    model: NonEmpty = "TimeCapsule8,119"
    data_uid: int = Field(default=1000, ge=1, le=65533)
    # Per share container, sized for one Time Machine client from scripts/measure_limits.py: smbd
    # peaked at 64 MiB RSS (4 processes, 5 threads) during a 1 GiB backup; 4x that, and room for
    # the few connections a Mac opens plus the healthcheck's. The pids limit counts smbd's I/O
    # threads too, up to `aio max threads` (16) per connection: scripts/bench_smbd_load.py with
    # many requests in flight (docs/benchmarks.md).
    memory_limit: MemoryLimit = 256
    process_limit: ProcessLimit = 128


# Section names smb.conf gives a meaning of their own (loadparm): a share named `global` would be
# read as the [global] section (its `hosts allow`/`hosts deny` gone), `homes` becomes every user's
# home directory, `printers` a print queue. `print$` and `ipc$` are special too, and `$` is not in a
# DNS label anyway; they are listed so the message says why.
SAMBA_RESERVED_SECTIONS = ("global", "homes", "printers", "print$", "ipc$")


class ShareConfig(ConfigModel):
    name: str
    owner: str
    quota: Quota | None = None
    ip: ipaddress.IPv4Address | None = None
    # Only with `authKeys: provided`; set it with `pulumi config set --secret --path 'shares[N].authKey'`.
    auth_key: SecretStr | None = None
    # This share's login (guest | password); unset: samba.auth.
    auth: SambaAuth | None = None
    # With authKeys: headscale, the owner's Macs that back up here, one join key each (a tailnet
    # hostname each); unset: one Mac, <owner>-mac.
    macs: list[str] | None = None
    # The status container counts a Mac's backups as stale when the last one completed longer ago.
    stale_after: Duration = DEFAULT_STALE_AFTER_SECONDS
    # The Caddy shard (0..proxy.shards-1) that serves this share's node when it is first deployed;
    # unset: the shard with the fewest nodes. A deployed share stays on its shard.
    proxy_shard: int | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DNS_LABEL.match(value) or len(value) > MAX_DNS_LABEL:
            raise ValueError(
                f'{value!r} is not a DNS label (lowercase a-z, 0-9, "-"; '
                f"at most {MAX_DNS_LABEL} characters with the prefix)"
            )
        if value in SAMBA_RESERVED_SECTIONS:
            raise ValueError(
                f"{value!r} is a section name Samba reserves ({', '.join(SAMBA_RESERVED_SECTIONS)}): smb.conf "
                f"would read the share as that section; name it e.g. {value}-backup"
            )
        return value

    @field_validator("macs")
    @classmethod
    def _macs(cls, value: list[str] | None) -> list[str] | None:
        for mac in value or []:
            if not DNS_LABEL.match(mac) or len(mac) > MAX_DNS_LABEL:
                raise ValueError(
                    f'{mac!r} is not a Mac name: a DNS label (lowercase a-z, 0-9, "-"), e.g. alice-macbook; '
                    "it becomes the Mac's tailnet hostname"
                )
        if value is not None and len(set(value)) != len(value):
            raise ValueError("names a Mac twice; list each Mac once")
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("is empty; give the owner's tailnet login (alice@example.com) or a group (group:…)")
        if not (LOGIN.fullmatch(value) or GROUP.fullmatch(value)):
            raise ValueError(
                f"{value!r} is not a tailnet login (user@example.com; alice@ for a Headscale user) or group (group:…)"
            )
        return value


# How a share's quota is kept (docs/configuration.md, storage). auto: by the filesystem where it can
# (btrfs: a subvolume per share with a qgroup limit), else only told to the Mac, with a warning at
# every `pulumi up` that changes it; required: refuse to deploy where the filesystem cannot enforce
# it; advisory: only told to the Mac (fruit:time machine max size), nothing on the disk changes.
QuotaEnforcement = Literal["auto", "required", "advisory"]
# Kept free beyond the sum of the quotas: room for the filesystem's own metadata and for shares
# without a quota.
DEFAULT_RESERVE = 1024**3


class StorageConfig(ConfigModel):
    """The backup disk: where the shares' directories are and how their quotas are kept."""

    # The storage root (the mount point of the backup disk, with the marker file); the older
    # top-level key storageRoot says the same (StackConfig._root_from_storage).
    root: str | None = None
    quota_enforcement: QuotaEnforcement = "auto"
    reserve: Size = DEFAULT_RESERVE


class StatusConfig(ConfigModel):
    """The status container (backup health: /metrics and a status page) and its tailnet node."""

    # On by default: a backup server that cannot say whether backups happen is trusted blindly.
    enabled: bool = True
    image: str = ""
    # Its address on the stack's network; default: the highest free host below the embedded
    # Headscale's default address (planning/ipplan.py, status_address).
    ip: ipaddress.IPv4Address | None = None
    port: int = Field(default=STATUS_PORT, ge=1, le=65535)
    # Collect (walk the shares, probe each smbd) at most this often, however often it is scraped.
    collect_interval: Duration = 60.0
    # The page on the tailnet: a node of its own in the stack's Caddy, reachable by the admins only.
    # Unset: on where the stack can give its node a key and knows its admins (StackConfig.status_page),
    # otherwise off, and `pulumi up` says why (the metrics stay on).
    page: bool | None = None
    # Its node's hostname; default <tailnet.hostnamePrefix>status.
    hostname: str | None = None
    # Who may open the page; default: the users and groups among the tag owners.
    admins: list[str] | None = None
    # Only with `authKeys: provided`: the page node's key (pulumi config set --secret --path status.authKey).
    auth_key: SecretStr | None = None
    # The collector (Python) walks every share and runs up to 4 smbclient probes at once (each
    # about 20 MiB): room for both.
    memory_limit: MemoryLimit = 256
    process_limit: ProcessLimit = 64

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and (not DNS_LABEL.match(value) or len(value) > MAX_DNS_LABEL):
            raise ValueError(f'{value!r} is not a DNS label (lowercase a-z, 0-9, "-"), e.g. tm-status')
        return value

    @field_validator("admins")
    @classmethod
    def _admins(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("is empty; give at least one login or group, or omit it (default: the tag owners)")
        for admin in value:
            if not (LOGIN.fullmatch(admin) or GROUP.fullmatch(admin)):
                raise ValueError(
                    f"{admin!r} is not a tailnet login (alice@example.com; alice@ on Headscale) or group (group:…)"
                )
        return value


# images.rebuild: printable text without spaces at the ends (a date, say), as a Docker build arg
# carries it into every build's log.
REBUILD = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")
MAX_REBUILD = 64


def _rebuild_text(value: object) -> object:
    # `pulumi config set --path images.rebuild 20261201` stores a number; it is the same label.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class ImagesConfig(ConfigModel):
    """The images the stack builds itself (images/: samba, caddy, headscale, status)."""

    # Any label, e.g. the date of a Debian security advisory: changing it gives every image the stack
    # builds a new tag, so `pulumi up` builds them again with the day's packages (the layer that
    # installs them is not reused) and replaces the containers that run them; data stays
    # (docs/operations.md, security rebuilds). Empty: images change only with their sources.
    rebuild: Annotated[str, BeforeValidator(_rebuild_text)] = ""

    @field_validator("rebuild")
    @classmethod
    def _rebuild(cls, value: str) -> str:
        if value and (len(value) > MAX_REBUILD or not REBUILD.match(value)):
            raise ValueError(
                f"{value!r} is not a rebuild label: printable text of at most {MAX_REBUILD} characters, "
                "no spaces at either end, e.g. 2026-12-01"
            )
        return value


class StackConfig(ConfigModel):
    # storage.root, or this older key: either one (the loader names whichever was given).
    storage_root: str
    storage: StorageConfig = StorageConfig()
    # Every Docker object name derives from it (components/names.py): two stacks on one engine need two.
    name_prefix: str = names.DEFAULT_PREFIX
    network: NetworkConfig = NetworkConfig()
    tailnet: TailnetConfig = TailnetConfig()
    proxy: ProxyConfig = ProxyConfig()
    samba: SambaConfig = SambaConfig()
    status: StatusConfig = StatusConfig()
    images: ImagesConfig = ImagesConfig()
    shares: list[ShareConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _root_from_storage(cls, data: object) -> object:
        """storage.root is the storage root when storageRoot is not given (both given: _storage_problems)."""
        if isinstance(data, dict):
            storage = data.get("storage")
            root = storage.get("root") if isinstance(storage, dict) else None
            if root is not None and data.get("storageRoot", data.get("storage_root")) is None:
                return {**data, "storageRoot": root}
        return data

    @model_validator(mode="before")
    @classmethod
    def _proxy_memory_from_nodes(cls, data: object) -> object:
        """proxy.memoryLimit unset: derived from the number of nodes Caddy serves (each share's, and
        one for the status page's), proxy_memory_mib."""
        if not isinstance(data, dict) or not isinstance(data.get("shares"), list):
            return data
        proxy = {} if data.get("proxy") is None else data["proxy"]
        if not isinstance(proxy, dict) or "memoryLimit" in proxy or "memory_limit" in proxy:
            return data
        if proxy.get("shards") not in (None, 1):
            # Each shard's limit follows its own nodes (ProxyConfig.memory_limit_for, in the program).
            return data
        return {**data, "proxy": {**proxy, "memoryLimit": f"{proxy_memory_mib(len(data['shares']) + 1)}M"}}

    @field_validator("storage_root")
    @classmethod
    def _storage_root(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is relative; give an absolute path such as /srv/timemachine")
        normal = posixpath.normpath(value)
        if normal != value or value.startswith("//"):
            raise ValueError(f"{value!r} is not normalised; write it as {normal!r}")
        if value == "/":
            raise ValueError("must not be / itself; give a directory such as /srv/timemachine")
        return value

    @field_validator("name_prefix")
    @classmethod
    def _name_prefix(cls, value: str) -> str:
        if not NAME_PREFIX.match(value) or len(value) > MAX_NAME_PREFIX:
            raise ValueError(
                f"{value!r} is not a name prefix (lowercase a-z, 0-9, '-', a letter first, at most "
                f"{MAX_NAME_PREFIX} characters); e.g. pulumi config set namePrefix tm-staging"
            )
        return value

    @property
    def status_hostname(self) -> str:
        """The status page's node: status.hostname, else <hostnamePrefix>status."""
        return self.status.hostname or self.tailnet.hostname_prefix + "status"

    @property
    def status_page(self) -> bool:
        """Whether the status page's node is declared: status.page, else on unless status_page_off_reason."""
        if not self.status.enabled:
            return False
        if self.status.page is not None:
            return self.status.page
        return self.status_page_off_reason is None

    @property
    def status_page_off_reason(self) -> str | None:
        """Why the page stays off when status.page is unset: what it would need and how to give it."""
        if not self.status.enabled or self.status.page is not None:
            return None
        if self.tailnet.auth_keys == "provided" and self.status.auth_key is None:
            return (
                "the status page is off: with tailnet.authKeys = provided its node needs a key of its own; run "
                "pulumi config set --secret --path status.authKey tskey-… to turn it on (the metrics are on)"
            )
        if not self.status_admins:
            return (
                "the status page is off: no user or group among tailnet.tagOwners may open it; set "
                "status.admins (e.g. [admin@example.com]) to turn it on (the metrics are on)"
            )
        return None

    @property
    def status_admins(self) -> list[str]:
        """Who may open the status page: status.admins, else the users and groups among the tag owners."""
        if self.status.admins is not None:
            return list(self.status.admins)
        return [o for o in self.tailnet.effective_tag_owners if LOGIN.fullmatch(o) or GROUP.fullmatch(o)]

    def auth_of(self, share: ShareConfig) -> SambaAuth:
        """How a Mac logs in to `share`: its own auth, else samba.auth."""
        return share.auth or self.samba.auth

    @property
    def network_name(self) -> str:
        """The Docker network's name: network.name, else derived from namePrefix."""
        return self.network.name or names.network(self.name_prefix)

    @property
    def internal(self) -> bool:
        """Whether the stack's network is Docker-internal. Unset, it is where the network mode allows:
        in host mode Caddy reaches the Samba containers from the host and needs no route through
        their network, unless the embedded Headscale must publish its ports (an internal network
        publishes nothing). In bridge mode Caddy's nodes reach the control server, DERP and the Macs
        through this network, so it stays routed (internal only for an offline tailnet, as in tests)."""
        if self.network.internal is not None:
            return self.network.internal
        return self.proxy.network_mode == "host" and not self.tailnet.headscale.embedded

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> StackConfig:
        # Problems found here carry their own paths; collect all, raise once.
        problems: list[tuple[tuple, str]] = []
        prefix = self.tailnet.hostname_prefix
        seen: dict[str, int] = {}
        for index, share in enumerate(self.shares):
            host = prefix + share.name
            if len(host) > MAX_DNS_LABEL:
                problems.append(
                    (
                        ("shares", index, "name"),
                        (
                            f"{share.name!r} is too long: the node hostname {host!r} has {len(host)} characters, "
                            f"a DNS label at most {MAX_DNS_LABEL}; shorten the name or tailnet.hostnamePrefix"
                        ),
                    )
                )
            if share.name in seen:
                problems.append(
                    (
                        ("shares", index, "name"),
                        f"{share.name!r} is already used by shares[{seen[share.name]}]; share names must be unique",
                    )
                )
            seen.setdefault(share.name, index)
            container_host = SAMBA_HOSTNAME.format(share.name)
            if len(container_host) > MAX_HOSTNAME:
                problems.append(
                    (
                        ("shares", index, "name"),
                        f"{share.name!r} is too long: its Samba container's hostname {container_host!r} has "
                        f"{len(container_host)} characters, at most {MAX_HOSTNAME}; use at most "
                        f"{MAX_HOSTNAME - len(SAMBA_HOSTNAME.format(''))} characters",
                    )
                )
            node_tag = "tag:" + host
            if not TAG.fullmatch(node_tag):
                problems.append(
                    (
                        ("shares", index, "name"),
                        f"the node's tag {node_tag!r} must start with a letter; start the name with one or set "
                        'tailnet.hostnamePrefix (e.g. "tm-")',
                    )
                )
            if share.auth_key is not None and self.tailnet.auth_keys == "provided":
                problems += [(("shares", index, "authKey"), why) for why in self._key_problems(share, index)]
            if self.tailnet.auth_keys == "provided" and share.auth_key is None:
                problems.append(
                    (
                        ("shares", index, "authKey"),
                        (
                            "missing: with tailnet.authKeys = provided every share needs its key; run "
                            f"pulumi config set --secret --path 'shares[{index}].authKey' tskey-…"
                        ),
                    )
                )
            if self.tailnet.auth_keys != "provided" and share.auth_key is not None:
                problems.append(
                    (
                        ("shares", index, "authKey"),
                        f"given, but tailnet.authKeys is {self.tailnet.auth_keys}; remove it or set "
                        "tailnet.authKeys to provided",
                    )
                )
        headscale = self.tailnet.self_hosted
        for index, share in enumerate(self.shares):
            if share.owner.endswith("@") and not headscale:
                problems.append(
                    (
                        ("shares", index, "owner"),
                        f"{share.owner!r} is a Headscale user name; without tailnet.controlUrl give the "
                        "full tailnet login (alice@example.com)",
                    )
                )
        if headscale and self.tailnet.tag_owners is None:
            problems.append(
                (
                    ("tailnet", "tagOwners"),
                    "missing: with tailnet.controlUrl (Headscale) give the users or groups who own the tags, "
                    "e.g. tagOwners: [admin@]; Headscale refuses autogroup:admin",
                )
            )
        for owner in (self.tailnet.tag_owners or []) if headscale else []:
            if not (LOGIN.fullmatch(owner) or owner.startswith("group:")):
                problems.append(
                    (
                        ("tailnet", "tagOwners"),
                        f"{owner!r}: Headscale (tailnet.controlUrl) accepts only users (admin@) and groups "
                        "(group:…) as tag owners",
                    )
                )
        # The validation context's `tailscale_api`: the tailscale provider's baseUrl when it is not
        # Tailscale's own API (config/loader.py), i.e. an API that serves keys for that control server.
        if (
            self.tailnet.auth_keys == "managed"
            and self.tailnet.control_url
            and not (info.context or {}).get("tailscale_api")
        ):
            problems.append(
                (
                    ("tailnet", "authKeys"),
                    (
                        "managed keys come from the Tailscale API, which a Headscale controlUrl does not serve; "
                        "set authKeys: headscale (the program makes the keys in Headscale) or provided"
                    ),
                )
            )
        problems += self._storage_problems()
        problems += self._headscale_problems()
        problems += self._control_plane_problems()
        problems += self._mac_problems()
        problems += self._status_problems()
        problems += self._shard_problems()
        problems += self._proxy_limit_problems()
        if self.proxy.network_mode == "bridge":
            last = self.proxy.first_node_port + self.network.subnet.num_addresses - 1
            if self.proxy.first_node_port < 1024 or last > 65535:
                problems.append(
                    (
                        ("proxy", "firstNodePort"),
                        (
                            f"bridge mode gives node ports {self.proxy.first_node_port}..{last} for subnet "
                            f"{self.network.subnet}; they must lie in 1024..65535 "
                            "(lower firstNodePort or use a smaller subnet)"
                        ),
                    )
                )
        if problems:
            raise CrossCheckError(problems)
        return self

    def _proxy_limit_problems(self) -> list[tuple[tuple, str]]:
        """proxy.memoryLimit and processLimit at least what Caddy was measured to need for the nodes
        of its busiest shard (at least an even share of them: pins only add to one), with the formula.
        A derived memory limit is always above it."""
        nodes = len(self.shares) + (1 if self.status_page else 0)
        per_shard = -(-nodes // self.proxy.shards)
        where = f"{per_shard} tailnet node(s)" + (
            f" (the fewest the busiest of {self.proxy.shards} shards can serve)" if self.proxy.shards > 1 else ""
        )
        problems: list[tuple[tuple, str]] = []
        need = proxy_memory_need_mib(per_shard)
        if self.proxy.memory_limit < need:
            problems.append(
                (
                    ("proxy", "memoryLimit"),
                    f"{self.proxy.memory_limit}M is below what Caddy needs for {where}: {PROXY_NEED_BASE_MIB} MiB "
                    f"+ {PROXY_NEED_HALF_MIB_PER_NODE / 2} MiB per node = {need} MiB, the least it was measured to "
                    f"take idle (docs/benchmarks.md); set it to at least {need}M, unset it to have it follow the "
                    f"shares ({proxy_memory_mib(per_shard)}M here), or raise proxy.shards",
                )
            )
        need = proxy_process_need(per_shard)
        if self.proxy.process_limit < need:
            problems.append(
                (
                    ("proxy", "processLimit"),
                    f"{self.proxy.process_limit} is below what Caddy needs for {where}: {PROXY_NEED_PROCESSES} + "
                    f"one per {PROXY_NEED_NODES_PER_PROCESS} nodes = {need}; set it to at least {need}, or unset it "
                    f"(the default is {ProxyConfig().process_limit})",
                )
            )
        return problems

    def _shard_problems(self) -> list[tuple[tuple, str]]:
        """proxy.shards: bridge mode only, no more shards than nodes, and pins naming a shard."""
        problems: list[tuple[tuple, str]] = []
        shards = self.proxy.shards
        nodes = len(self.shares) + (1 if self.status_page else 0)
        if shards > 1 and self.proxy.network_mode == "host":
            problems.append(
                (
                    ("proxy", "shards"),
                    f"{shards} shards in host mode: every Caddy would share the host's network namespace and smbd "
                    "would admit them all as the one gateway address; shards need bridge mode (run pulumi config "
                    "set --path proxy.networkMode bridge) or set proxy.shards to 1",
                )
            )
        elif shards > max(nodes, 1):
            what = f"{len(self.shares)} share(s)" + (" and the status page" if self.status_page else "")
            problems.append(
                (
                    ("proxy", "shards"),
                    f"{shards} shards for {nodes} tailnet node(s) ({what}) would leave a Caddy serving nothing; "
                    f"set proxy.shards to at most {max(nodes, 1)}",
                )
            )
        for index, share in enumerate(self.shares):
            if share.proxy_shard is not None and share.proxy_shard >= shards:
                problems.append(
                    (
                        ("shares", index, "proxyShard"),
                        f"shard {share.proxy_shard}, but proxy.shards is {shards} (shards 0..{shards - 1}); "
                        "pin a shard below it, or raise proxy.shards",
                    )
                )
        return problems

    def _storage_problems(self) -> list[tuple[tuple, str]]:
        """One storage root, and with quotaEnforcement: required a quota on every share."""
        problems: list[tuple[tuple, str]] = []
        storage = self.storage
        if storage.root is not None and storage.root != self.storage_root:
            problems.append(
                (
                    ("storage", "root"),
                    f"{storage.root!r} differs from storageRoot {self.storage_root!r}; give the storage root once, "
                    "as storage.root (pulumi config rm storageRoot)",
                )
            )
        if storage.quota_enforcement == "required":
            for index, share in enumerate(self.shares):
                if share.quota is None:
                    problems.append(
                        (
                            ("shares", index, "quota"),
                            f"missing: storage.quotaEnforcement is required, so share {share.name!r} needs a quota "
                            f"the filesystem enforces; run pulumi config set --path 'shares[{index}].quota' 500G "
                            "(or set storage.quotaEnforcement: auto)",
                        )
                    )
        return problems

    @property
    def total_quota(self) -> int:
        """The sum of the shares' quotas (those without one count nothing)."""
        return sum(share.quota or 0 for share in self.shares)

    def _status_problems(self) -> list[tuple[tuple, str]]:
        """The status page's node: a hostname of its own, admins, and a key where keys are provided."""
        status = self.status
        problems: list[tuple[tuple, str]] = []
        if not self.status_page:
            if status.auth_key is not None:
                problems.append((("status", "authKey"), "given, but there is no status page node; remove it"))
            return problems
        host = self.status_hostname
        if len(host) > MAX_DNS_LABEL or not TAG.fullmatch("tag:" + host):
            problems.append(
                (
                    ("status", "hostname"),
                    f"{host!r} cannot be a node's hostname and tag (a DNS label of at most {MAX_DNS_LABEL} "
                    "characters, a letter first); set status.hostname",
                )
            )
        for index, share in enumerate(self.shares):
            if self.tailnet.hostname_prefix + share.name == host:
                problems.append(
                    (
                        ("shares", index, "name"),
                        f"{share.name!r} gives the node {host!r}, the status page's; rename the share or set "
                        "status.hostname (e.g. tm-backup-status)",
                    )
                )
        if not self.status_admins:
            problems.append(
                (
                    ("status", "admins"),
                    "missing: no user or group among tailnet.tagOwners may open the status page; give the "
                    "admins, e.g. status.admins: [admin@example.com]",
                )
            )
        if self.tailnet.self_hosted:
            for admin in self.status_admins:
                if admin.startswith("autogroup:"):
                    problems.append(
                        (("status", "admins"), f"{admin!r}: Headscale accepts only users (admin@) and groups")
                    )
        if self.tailnet.auth_keys == "provided" and status.auth_key is None:
            problems.append(
                (
                    ("status", "authKey"),
                    "missing: with tailnet.authKeys = provided the status page's node needs its key; run "
                    "pulumi config set --secret --path status.authKey tskey-… (or set status.page: false)",
                )
            )
        if self.tailnet.auth_keys != "provided" and status.auth_key is not None:
            problems.append(
                (
                    ("status", "authKey"),
                    f"given, but tailnet.authKeys is {self.tailnet.auth_keys}; remove it or set tailnet.authKeys "
                    "to provided",
                )
            )
        return problems

    def _key_problems(self, share: ShareConfig, index: int) -> list[str]:
        """An empty or implausible provided key (e.g. from an unset variable) fails the whole Caddy
        config at runtime, every share with it: refuse it here."""
        assert share.auth_key is not None
        key = share.auth_key.get_secret_value()
        fix = f"set it with pulumi config set --secret --path 'shares[{index}].authKey' <key>"
        if not key.strip():
            return [f"is empty (an unset variable?); {fix}"]
        if key != key.strip() or not AUTH_KEY.fullmatch(key):
            return [f"is not an auth key (one token of letters, digits, '-', '_', 16 or more); {fix}"]
        if not self.tailnet.self_hosted and not key.startswith("tskey-auth-"):
            return [f"is not a Tailscale auth key (they start with tskey-auth-); {fix}"]
        return []

    def _headscale_problems(self) -> list[tuple[tuple, str]]:
        """authKeys: headscale and the embedded Headscale: what they need from the rest of the config."""
        tailnet = self.tailnet
        problems: list[tuple[tuple, str]] = []
        embedded = tailnet.headscale.embedded
        if tailnet.auth_keys == "headscale" or embedded:
            if tailnet.control_url is None:
                problems.append(
                    (
                        ("tailnet", "controlUrl"),
                        "missing: Headscale needs the URL Macs reach it at, e.g. https://headscale.internal:8080 "
                        "(see docs/configuration.md, tailnet)",
                    )
                )
        if embedded and tailnet.auth_keys != "headscale":
            problems.append(
                (
                    ("tailnet", "authKeys"),
                    f"is {tailnet.auth_keys}, but the embedded Headscale exists only once the stack is up; "
                    "set authKeys: headscale so the program makes the keys",
                )
            )
        if tailnet.auth_keys != "headscale":
            if tailnet.headscale_api_key is not None:
                problems.append(
                    (("tailnet", "headscaleApiKey"), "given, but only authKeys: headscale uses it; remove it")
                )
            return problems
        if not embedded and tailnet.headscale_api_key is None:
            problems.append(
                (
                    ("tailnet", "headscaleApiKey"),
                    "missing: an external Headscale makes keys only for an API key; run `headscale apikeys "
                    "create` there, then pulumi config set --secret --path tailnet.headscaleApiKey <key> "
                    "(or set tailnet.headscale.embedded: true)",
                )
            )
        if embedded and tailnet.headscale_api_key is not None:
            problems.append(
                (
                    ("tailnet", "headscaleApiKey"),
                    "given, but the embedded Headscale is reached through Docker and needs no API key; remove it",
                )
            )
        if tailnet.tag_owners is not None and tailnet.key_user is None:
            problems.append(
                (
                    ("tailnet", "tagOwners"),
                    "has no user: with authKeys: headscale the share nodes register under the first user "
                    "among the tag owners; add one, e.g. [admin@]",
                )
            )
        for index, share in enumerate(self.shares):
            if not HEADSCALE_USER.fullmatch(share.owner):
                problems.append(
                    (
                        ("shares", index, "owner"),
                        f"{share.owner!r}: with authKeys: headscale each owner becomes a Headscale user; "
                        "write it as a user name with a trailing @ (e.g. alice@; lowercase, starting with a letter)",
                    )
                )
        return problems

    def default_mac(self, share: ShareConfig) -> str:
        """The Mac a share without `macs` has: <owner>-mac."""
        return f"{share.owner.split('@')[0]}-mac"

    @property
    def macs(self) -> dict[str, tuple[str, list[str]]]:
        """With authKeys: headscale, each Mac that joins the tailnet → its owner and the shares it backs
        up to (in config order); empty otherwise."""
        if self.tailnet.auth_keys != "headscale":
            return {}
        found: dict[str, tuple[str, list[str]]] = {}
        for share in self.shares:
            for mac in share.macs if share.macs is not None else [self.default_mac(share)]:
                found.setdefault(mac, (share.owner, []))[1].append(share.name)
        return found

    def _control_plane_problems(self) -> list[tuple[tuple, str]]:
        """What would hand a join key or an API key to whoever answers in the control server's place."""
        tailnet = self.tailnet
        host = tailnet.control_host
        if tailnet.control_url is None or host is None:
            return []
        problems: list[tuple[tuple, str]] = []
        url = ("tailnet", "controlUrl")
        local = is_loopback(host)
        if tailnet.plain_http and tailnet.headscale_api_key is not None and not local:
            problems.append(
                (
                    ("tailnet", "headscaleApiKey"),
                    f"would be sent in clear to {tailnet.control_url}: anyone on the path reads it and owns the "
                    "Headscale; give controlUrl as https:// (or a loopback address, where nothing leaves the machine)",
                )
            )
        elif tailnet.plain_http and not local and not tailnet.allow_keys_over_plain_http:
            problems.append(
                (
                    url,
                    f"{tailnet.control_url} is plain HTTP: Macs fetch the server's key over it, so whoever answers at "
                    f"{host} in its place (ARP or DNS spoofing on the LAN) receives their join keys and joins as "
                    "their owners; use https:// (the embedded Headscale makes its own certificate), or accept that "
                    "risk with tailnet.allowKeysOverPlainHttp: true",
                )
            )
        if tailnet.control_url.startswith("https://") and is_address(host) and not local:
            problems.append(
                (
                    url,
                    f"{host} is an address: Tailscale clients check an address's certificate against their trust "
                    "store but not against the address, so a certificate for any name a Mac trusts would pass and "
                    "whoever answers at that address receives the join keys; give a DNS name that resolves to it "
                    "(e.g. https://headscale.internal:8080, in your LAN's DNS or each Mac's /etc/hosts)",
                )
            )
        embedded = tailnet.headscale.embedded
        if embedded and tailnet.control_ca_certificate is not None:
            problems.append(
                (
                    ("tailnet", "controlCaCertificate"),
                    "given, but the embedded Headscale's certificate comes from the stack's own CA; remove it",
                )
            )
        if tailnet.control_ca_certificate is not None and tailnet.plain_http:
            problems.append(
                (("tailnet", "controlCaCertificate"), "given, but controlUrl is http://: nothing to trust; remove it")
            )
        if embedded and tailnet.headscale.tls == "acme" and tailnet.plain_http:
            problems.append(
                (
                    ("tailnet", "headscale", "tls"),
                    "is acme, but controlUrl is http://; give the public name as https://hs.example.com",
                )
            )
        return problems

    def _mac_problems(self) -> list[tuple[tuple, str]]:
        problems: list[tuple[tuple, str]] = []
        nodes = {self.tailnet.hostname_prefix + share.name for share in self.shares}
        owners: dict[str, tuple[str, int]] = {}
        for index, share in enumerate(self.shares):
            if share.macs is not None and self.tailnet.auth_keys != "headscale":
                problems.append(
                    (
                        ("shares", index, "macs"),
                        f"given, but tailnet.authKeys is {self.tailnet.auth_keys}: only authKeys: headscale makes "
                        "join keys; elsewhere each Mac logs in with its owner's account. Remove it",
                    )
                )
                continue
            for mac in share.macs if share.macs is not None else [self.default_mac(share)]:
                if mac in nodes:
                    problems.append(
                        (("shares", index, "macs"), f"{mac!r} is a share node's hostname; give the Mac another name")
                    )
                owner, first = owners.setdefault(mac, (share.owner, index))
                if owner != share.owner:
                    problems.append(
                        (
                            ("shares", index, "macs"),
                            f"{mac!r} is already shares[{first}]'s Mac, owned by {owner}: a Mac joins as one owner; "
                            "give each Mac its own name",
                        )
                    )
        return problems


class CrossCheckError(ValueError):
    """Several located problems found after the per-field checks passed."""

    def __init__(self, problems: list[tuple[tuple, str]]):
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems
