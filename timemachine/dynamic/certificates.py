"""The control plane's certificates (the stack's own CA and the server certificate it signs) and the
files a container reads at start put on its volume before it exists: dynamic resources over
timemachine/headscale/tls.py and a short-lived container of the image that uses the volume."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import DiffResult, UpdateResult

from timemachine.dynamic.base import Provider, Resource
from timemachine.engine.client import docker_client
from timemachine.engine.containers import read_tree, upload
from timemachine.headscale.tls import due_for_renewal, fingerprint, issue_authority, issue_server

# Where the short-lived container sees the volume.
VOLUME_MOUNT = "/volume"


class ControlCertificatesProvider(Provider):
    """A root CA constrained to the control host and the server certificate it signs, made here and
    kept in the state (the keys as secrets); nothing outside the state holds them but the files the
    stack writes. A new host replaces both (the root names the host: every Mac trusts the new one).
    Each `pulumi up` within RENEW_DAYS of the server certificate's end issues a new one from the same
    root: the preview shows it as an update, and the Headscale container that serves it is replaced."""

    replace_props = ("host",)
    # Outputs, and the root's name, which only says how a new root is made.
    excluded_props = ("authority_name", "ca_certificate", "ca_key", "certificate", "key", "not_after", "fingerprint")

    def subject(self, props) -> str:
        return f"the control server's certificates for {props.get('host')!r}"

    def _server(self, props: dict[str, Any], ca_certificate: str, ca_key: str) -> dict[str, Any]:
        server = issue_server(props["host"], ca_certificate, ca_key)
        return {
            **props,
            "ca_certificate": ca_certificate,
            "ca_key": ca_key,
            "certificate": server.certificate,
            "key": server.key,
            "not_after": server.not_after,
            "fingerprint": fingerprint(server.certificate),
        }

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        authority = issue_authority(props["host"], props["authority_name"])
        outs = self._server(props, authority.certificate, authority.key)
        return fingerprint(authority.certificate), outs

    def change(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        return self._server({**news, "authority_name": olds["authority_name"]}, olds["ca_certificate"], olds["ca_key"])

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        found = super().diff(id_, olds, news)
        if found.replaces or not due_for_renewal(olds.get("certificate")):
            return found
        return DiffResult(
            changes=True,
            replaces=[],
            stables=[name for name in found.stables or [] if name not in ("ca_certificate", "ca_key")],
            delete_before_replace=False,
        )

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if due_for_renewal(olds.get("certificate")):
            return UpdateResult(outs=self._step("renew", news, lambda: self.change(id_, olds, news)))
        return super().update(id_, olds, news)


class ControlCertificates(Resource, type_name="ControlCertificates"):
    ca_certificate: pulumi.Output[str]
    ca_key: pulumi.Output[str]
    certificate: pulumi.Output[str]
    key: pulumi.Output[str]
    not_after: pulumi.Output[str]
    fingerprint: pulumi.Output[str]

    def __init__(self, name: str, *, host: str, authority_name: str, opts: pulumi.ResourceOptions | None = None):
        props = {
            "host": host,
            "authority_name": authority_name,
            "ca_certificate": None,
            "ca_key": None,
            "certificate": None,
            "key": None,
            "not_after": None,
            "fingerprint": None,
        }
        super().__init__(ControlCertificatesProvider(), name, props, opts, secret_outputs=["ca_key", "key"])


def _with_volume(props: dict[str, Any], act):
    """`act(container)` on a created, never started container of `image` with the volume at
    VOLUME_MOUNT (Docker writes into a volume of a stopped container), removed afterwards."""
    client = docker_client(props.get("docker_host") or None)
    container = client.containers.create(
        props["image"],
        command=["true"],
        entrypoint=[],
        network_disabled=True,
        volumes={props["volume"]: {"bind": VOLUME_MOUNT, "mode": "rw"}},
        labels={"timemachine.role": "volume-files"},
    )
    try:
        return act(container)
    finally:
        container.remove(force=True)


def _folders(paths: list[str]) -> dict[str, int]:
    folders: dict[str, int] = {}
    for path in paths:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folders["/".join(parts[:depth])] = 0o700
    return folders


class VolumeFilesProvider(Provider):
    """Files (path on the volume → text) written with `mode` before the container that reads them is
    made; written again on any change. Read: the files as found on the volume (a file gone or edited
    shows as a change the next `pulumi up` writes back)."""

    replace_props = ("volume",)
    excluded_props = ("image", "docker_host")

    def subject(self, props) -> str:
        return f"the files {', '.join(sorted(props.get('files') or {}))} on volume {props.get('volume')!r}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        files = {path: (text, int(props["mode"])) for path, text in props["files"].items()}
        _with_volume(props, lambda container: upload(container, VOLUME_MOUNT, files, _folders(list(files))))
        return props["volume"], props

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        def look(container) -> dict[str, str]:
            found = {}
            for path in props["files"]:
                tree = read_tree(container, f"{VOLUME_MOUNT}/{path}")
                if tree is not None and "" in tree:
                    found[path] = tree[""].decode(errors="replace")
            return found

        return {**props, "files": _with_volume(props, look)}


class VolumeFiles(Resource, type_name="VolumeFiles"):
    def __init__(
        self,
        name: str,
        *,
        volume: pulumi.Input[str],
        image: pulumi.Input[str],
        files: pulumi.Input[dict[str, str]],
        mode: int = 0o600,
        secret: bool = False,
        docker_host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {"volume": volume, "image": image, "files": files, "mode": mode, "docker_host": docker_host or ""}
        super().__init__(VolumeFilesProvider(), name, props, opts, secret_outputs=["files"] if secret else ())
