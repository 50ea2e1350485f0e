"""SMB as the deployed proxy sends it, where no control server answers: the deployed Caddy config in
a second Caddy that shares the deployed Caddy's network namespace, on plain TCP listeners."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.caddy_rewrite import without_tailnet
from tests.support.containers import upload
from tests.support.network import wait_port
from timemachine.caddy.config import CADDY_CONFIG_PATH
from timemachine.planning import names


def caddy_config_of(container) -> str:
    """The config `pulumi up` loaded into the running Caddy (kept on its volume once Caddy accepted it)."""
    bits, _ = container.get_archive(CADDY_CONFIG_PATH)
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read().decode()  # type: ignore[union-attr]


@contextmanager
def proxy_path(
    client,
    shares: list[str] | None = None,
    *,
    name_prefix: str = names.DEFAULT_PREFIX,
    hostname_prefix: str = "tm-",
) -> Iterator[dict[str, tuple[str, int]]]:
    """SMB as the proxy sends it: the deployed Caddy config in a second Caddy from the deployed image
    that shares the deployed Caddy container's network namespace (so smbd sees the proxy's address,
    the only one its `hosts allow` admits), each `tailscale/<node>:445` listener replaced by a TCP
    port on that address (no control server here). Yields share → (host, port) for the test runner.
    `name_prefix`: the stack's namePrefix (whose Caddy container); `hostname_prefix`: its
    tailnet.hostnamePrefix."""
    caddy = client.containers.get(names.caddy_container(name_prefix))
    host = next(iter(caddy.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    text = caddy_config_of(caddy)
    deployed = sorted(json.loads(text)["apps"]["layer4"]["servers"])
    ports = {share: 14450 + i for i, share in enumerate(deployed)}
    config = json.loads(without_tailnet(text, {hostname_prefix + s: f"0.0.0.0:{p}" for s, p in ports.items()}))
    # The deployed Caddy's admin endpoint is in the same namespace.
    config["admin"] = {"disabled": True}
    side = client.containers.create(
        caddy.image.id,
        ["caddy", "run", "--config", CADDY_CONFIG_PATH],
        name=f"{name_prefix}-proxy-path-{uuid.uuid4().hex[:6]}",
        network_mode=f"container:{caddy.id}",
    )
    try:
        upload(side, CADDY_CONFIG_PATH, json.dumps(config))
        side.start()
        for port in ports.values():
            wait_port(host, port)
        yield {share: (host, port) for share, port in ports.items() if shares is None or share in shares}
    finally:
        side.remove(force=True, v=True)
