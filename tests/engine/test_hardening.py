"""Least privilege, read back from the engine: only the proxy's address reaches smbd, and every
container `pulumi up` made runs with its capabilities, no-new-privileges, a read-only root and
its memory and process limits, as the kernel applies them inside the container."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
from smbprotocol.exceptions import SMBException

from tests.support.deploy import stack_label
from tests.support.smb import aapl_query
from timemachine.config.models import SambaConfig
from timemachine.planning import names

pytestmark = pytest.mark.engine

# Linux capability numbers (linux/capability.h) of the ones the stack grants.
CAP_BITS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_SETGID": 6, "CAP_SETUID": 7}
SAMBA_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETGID", "CAP_SETUID"}
# The engine tier's stack sets no limits: the defaults of timemachine/config/models.py.
SAMBA_PIDS = SambaConfig().process_limit
assert SAMBA_PIDS < 200, "the fork bomb below must exceed it"
EXPECTED = {  # role → (capabilities, tmpfs mounts, memory MiB, pids)
    "samba": (SAMBA_CAPS, {"/etc/samba", "/run", "/var/cache/samba", "/tmp"}, 256, SAMBA_PIDS),
    "proxy": (set(), {"/run", "/tmp"}, 512, 256),
}


def smbclient_from(client, image: str, ip: str, share: str, **network) -> tuple[int, str]:
    """Samba's smbclient, as a guest, listing `share` at `ip` from a throwaway container."""
    container = client.containers.create(
        image,
        entrypoint=["smbclient", "--no-pass", "-U", "guest%", f"//{ip}/{share}", "-c", "ls"],
        name=f"tm-probe-{uuid.uuid4().hex[:6]}",
        **network,
    )
    try:
        container.start()
        status = container.wait(timeout=60)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True)


def test_only_the_proxy_address_gets_an_smb_session(deployed):
    client, ip = deployed["client"], deployed["ips"]["alice"]
    samba = client.containers.get(names.samba_container(deployed["prefix"], "alice"))
    caddy = client.containers.get(names.caddy_container(deployed["prefix"]))
    subnet = ipaddress.IPv4Network(deployed["config"]["network"]["subnet"])
    other = next(str(a) for a in list(subnet.hosts())[1:-1] if str(a) not in deployed["ips"].values())
    # The proxy's network namespace (the Caddy container's address): a guest session and a listing.
    status, out = smbclient_from(client, samba.image.id, ip, "alice", network_mode=f"container:{caddy.id}")
    assert status == 0 and "blocks available" in out, out
    # Any other container on the Samba network: smbd drops the connection before a session.
    status, out = smbclient_from(
        client,
        samba.image.id,
        ip,
        "alice",
        network=deployed["network"],
        networking_config={deployed["network"]: client.api.create_endpoint_config(ipv4_address=other)},
    )
    assert status != 0 and "blocks available" not in out, out
    assert f"Denied connection from {other}" in samba.logs(tail=200).decode()
    # The host (the network's gateway), which in bridge mode is not the proxy either.
    with pytest.raises((SMBException, OSError, ValueError)):
        aapl_query(ip, "alice")


def of_role(deployed, role: str) -> list:
    """The running containers of the deployed stack with `role` (samba, proxy)."""
    labels = [f"timemachine.role={role}", stack_label(deployed["stack"])]
    return deployed["client"].containers.list(filters={"label": labels})


def read_status(container) -> dict[str, str]:
    code, out = container.exec_run(["cat", "/proc/1/status"])
    assert code == 0, out
    return dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)


def cgroup_value(container, path: str) -> str:
    code, out = container.exec_run(["cat", f"/sys/fs/cgroup/{path}"])
    assert code == 0, out
    return out.decode().strip()


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_container_runs_with_least_privilege_and_its_limits(deployed, role):
    caps, tmpfs, memory_mib, pids = EXPECTED[role]
    containers = of_role(deployed, role)
    assert containers, f"no {role} container"
    for container in containers:
        host = container.attrs["HostConfig"]
        # What the engine was told.
        assert host["CapDrop"] == ["ALL"] and set(host["CapAdd"] or []) == caps, (container.name, host["CapAdd"])
        assert "no-new-privileges:true" in host["SecurityOpt"], container.name
        assert set(host["Tmpfs"]) == tmpfs, container.name
        assert host["Memory"] == memory_mib * 1024**2 and host["PidsLimit"] == pids, container.name
        assert host["RestartPolicy"]["Name"] == "unless-stopped", container.name
        assert not any(m["Source"].endswith("docker.sock") for m in container.attrs["Mounts"]), container.name
        # What the kernel applies to the container's main process.
        status = read_status(container)
        effective = int(status["CapEff"], 16)
        assert effective == sum(1 << CAP_BITS[c] for c in caps), (container.name, status["CapEff"])
        assert int(status["CapBnd"], 16) == effective, (container.name, status["CapBnd"])
        assert status["NoNewPrivs"].strip() == "1", container.name
        assert int(cgroup_value(container, "memory/memory.limit_in_bytes")) == memory_mib * 1024**2
        assert int(cgroup_value(container, "pids/pids.max")) == pids, container.name


@pytest.mark.parametrize(
    "role",
    [
        "samba",
        "proxy",
    ],
)
def test_root_filesystem_is_read_only(deployed, role):
    for container in of_role(deployed, role):
        assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True, container.name
        code, out = container.exec_run(["touch", "/probe-write"])
        assert code != 0 and "Read-only file system" in out.decode(), (container.name, out)


def test_process_limit_stops_a_fork_bomb_in_a_samba_container(deployed):
    """The pids limit binds the container's root processes (an nproc ulimit would not: the kernel
    exempts root)."""
    samba = deployed["client"].containers.get(names.samba_container(deployed["prefix"], "bob"))
    code, out = samba.exec_run(["sh", "-c", "for i in $(seq 200); do sleep 5 & done 2>&1; wait"])
    assert "fork" in out.decode().lower() or code != 0, out
    assert int(cgroup_value(samba, "pids/pids.max")) == SAMBA_PIDS
    assert int(cgroup_value(samba, "pids/pids.current")) <= SAMBA_PIDS
