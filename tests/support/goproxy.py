"""A Go module proxy for the Caddy build in the tests, serving only caddy-tailscale.

The Go module proxy reachable here refuses github.com/tailscale/caddy-tailscale, so the tests serve
its source from ../shared/vendor (read at test time, never copied into the repository) under the
commit's own pseudo-version, and the build falls through to the public proxy for every other
module. The production Dockerfile keeps its newer pin; the test stack sets `proxy.buildArgs`.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.docker_engine import ENGINE
from tests.support.project import ROOT

VENDOR = Path(ROOT.parent / "shared" / "vendor")
MODULE = "github.com/tailscale/caddy-tailscale"
VERSION = "v0.0.0-20251225051618-413764819c5e"
TARBALL = "caddy-tailscale-413764819c5e.tar.gz"
L4 = "github.com/mholt/caddy-l4@v0.1.2"
# Fixed, so the build args (and with them Docker's layer cache and the image tag) are the same
# in every run.
PORT = 38765


def vendor_dir() -> Path:
    return Path(os.environ.get("TM_VENDOR_DIR", VENDOR))


def write_module_tree(root: Path) -> None:
    """The GOPROXY protocol's files for one module version: list, .info, .mod, .zip."""
    files: dict[str, bytes] = {}
    with tarfile.open(vendor_dir() / TARBALL) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[member.name.removeprefix("./")] = tar.extractfile(member).read()  # type: ignore[union-attr]
    at = root / MODULE / "@v"
    at.mkdir(parents=True, exist_ok=True)
    (at / "list").write_text(VERSION + "\n")
    (at / f"{VERSION}.info").write_text(json.dumps({"Version": VERSION, "Time": "2025-12-25T05:16:18Z"}))
    (at / f"{VERSION}.mod").write_bytes(files["go.mod"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(f"{MODULE}@{VERSION}/{name}", files[name])
    (at / f"{VERSION}.zip").write_bytes(buffer.getvalue())


def machine_goproxy() -> str:
    """The module proxy this machine's Go uses (the builder image's Go is a copy of it)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    return subprocess.run([go, "env", "GOPROXY"], capture_output=True, text=True, check=True).stdout.strip()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _SharedPortServer(ThreadingHTTPServer):
    # Another test session or benchmark on the same engine serves the same files on the same fixed
    # port: both bind it (SO_REUSEPORT) instead of the later one failing, and either answers.
    allow_reuse_port = True


class GoProxy:
    """Serves the module tree on `host` (the private engine's bridge gateway, where build
    containers reach the host); anything else answers 404, so Go asks the next proxy."""

    def __init__(self, root: Path, host: str, port: int = PORT):
        write_module_tree(root)
        self.server = _SharedPortServer((host, port), partial(_Quiet, directory=str(root)))
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def build_args(self) -> dict[str, str]:
        """images/caddy's build args that take caddy-tailscale from here, the rest as usual."""
        return {
            "CADDY_MODULES": f"{L4} {MODULE}@{VERSION}",
            "GOPROXY": f"{self.url},{machine_goproxy()}",
            # The checksum database is not asked about a module served from here.
            "GONOSUMDB": MODULE,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_goproxy(client, folder: Path) -> GoProxy:
    """caddy-tailscale for the Caddy build, served on the private engine's bridge gateway."""
    # The Caddy Dockerfile's builder base, made from this machine's Go where no registry serves it.
    subprocess.run(["bash", str(ENGINE), "golang"], check=True, capture_output=True)
    ipam = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # The default bridge's gateway is its subnet's first host unless the engine says otherwise.
    gateway = ipam.get("Gateway") or str(next(ipaddress.IPv4Network(ipam["Subnet"]).hosts()))
    return GoProxy(folder, gateway)
