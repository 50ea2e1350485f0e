"""Real SMB clients for the tests: smbprotocol sessions (guest, no signing) and the AAPL query macOS sends."""

from __future__ import annotations

import struct
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import smbclient
from smbprotocol.connection import Connection
from smbprotocol.create_contexts import SMB2CreateContextRequest
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    DirectoryAccessMask,
    FileAttributes,
    ImpersonationLevel,
    Open,
    ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

# Apple's AAPL create context (as implemented by Samba's vfs_fruit; libcli/smb/smb2_create_ctx.h).
AAPL_SERVER_QUERY = 1
AAPL_SERVER_CAPS, AAPL_VOLUME_CAPS, AAPL_MODEL_INFO = 0x1, 0x2, 0x4  # what the query asks for
# Client and server capabilities.
AAPL_READ_DIR_ATTR, AAPL_OSX_COPYFILE, AAPL_UNIX_BASED, AAPL_NFS_ACE = 0x1, 0x2, 0x4, 0x8
AAPL_CLIENT_CAPS = AAPL_READ_DIR_ATTR | AAPL_OSX_COPYFILE | AAPL_UNIX_BASED  # what macOS announces
AAPL_FULL_SYNC = 0x4  # volume capability
MiB = 1024 * 1024


@dataclass
class AaplReply:
    reply_bitmap: int
    server_caps: int
    volume_caps: int
    model: str


def parse_aapl_reply(blob: bytes) -> AaplReply:
    command, _reserved, bitmap = struct.unpack_from("<IIQ", blob, 0)
    assert command == AAPL_SERVER_QUERY, f"AAPL reply command {command}"
    offset, server_caps, volume_caps, model = 16, 0, 0, ""
    if bitmap & AAPL_SERVER_CAPS:
        (server_caps,) = struct.unpack_from("<Q", blob, offset)
        offset += 8
    if bitmap & AAPL_VOLUME_CAPS:
        (volume_caps,) = struct.unpack_from("<Q", blob, offset)
        offset += 8
    if bitmap & AAPL_MODEL_INFO:
        _pad, length = struct.unpack_from("<II", blob, offset)
        model = blob[offset + 8 : offset + 8 + length].decode("utf-16-le")
    return AaplReply(bitmap, server_caps, volume_caps, model)


@contextmanager
def guest_tree(host: str, share: str, port: int = 445):
    """A guest session (any unknown user maps to guest) and a tree connect, on a fresh connection."""
    connection = Connection(uuid.uuid4(), host, port, require_signing=False)
    connection.connect(timeout=10)
    try:
        session = Session(connection, username="guest", password="", require_encryption=False, auth_protocol="ntlm")
        session.connect()
        tree = TreeConnect(session, rf"\\{host}\{share}")
        # Secure negotiate needs a signing key, which a guest session never has.
        tree.connect(require_secure_negotiate=False)
        yield session, tree
    finally:
        connection.disconnect(True)


def aapl_query(host: str, share: str, port: int = 445, client_caps: int = AAPL_CLIENT_CAPS) -> tuple[AaplReply, bool]:
    """Open the share root with an AAPL server query as macOS does; return the reply and whether
    the session is a guest's."""
    with guest_tree(host, share, port) as (session, tree):
        request = SMB2CreateContextRequest()
        request["buffer_name"] = b"AAPL"
        request["buffer_data"] = struct.pack(
            "<IIQQ", AAPL_SERVER_QUERY, 0, AAPL_SERVER_CAPS | AAPL_VOLUME_CAPS | AAPL_MODEL_INFO, client_caps
        )
        root = Open(tree, "")
        contexts = root.create(
            ImpersonationLevel.Impersonation,
            DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.FILE_READ_ATTRIBUTES,
            FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
            ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
            CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_DIRECTORY_FILE,
            create_contexts=[request],
        )
        root.close()
        blobs = [c for c in contexts or [] if isinstance(c, bytes)]
        assert len(blobs) == 1, f"expected one AAPL reply context, got {contexts!r}"
        # smbprotocol drops every key of a guest (or anonymous) session: no session key means guest.
        return parse_aapl_reply(blobs[0]), session.session_key is None


class GuestClient:
    """smbprotocol's high-level client on its own connection pool, as a guest without signing."""

    def __init__(self, host: str, port: int = 445):
        self.host, self.port = host, port
        self.cache: dict = {}
        # Secure negotiate needs a signing key, which a guest session never has.
        smbclient.ClientConfig(require_secure_negotiate=False)
        smbclient.register_session(
            host,
            username="guest",
            password="",
            port=port,
            connection_cache=self.cache,
            auth_protocol="ntlm",
            require_signing=False,
            encrypt=False,
        )

    def path(self, share: str, *parts: str) -> str:
        return "\\".join([rf"\\{self.host}", share, *parts])

    def kw(self) -> dict:
        return {"port": self.port, "connection_cache": self.cache}

    def close(self) -> None:
        smbclient.reset_connection_cache(connection_cache=self.cache)


def write_file(host: str, share: str, name: str, data: bytes, port: int = 445) -> None:
    """One guest session that writes `name` on the share."""
    client = GuestClient(host, port)
    try:
        with smbclient.open_file(client.path(share, name), mode="wb", **client.kw()) as f:
            f.write(data)
    finally:
        client.close()


def read_file(host: str, share: str, name: str, port: int = 445) -> bytes:
    """One guest session that reads `name` from the share."""
    client = GuestClient(host, port)
    try:
        with smbclient.open_file(client.path(share, name), mode="rb", **client.kw()) as f:
            return f.read()
    finally:
        client.close()
