"""SMB sessions with a password (samba.auth: password), signed or deliberately not, and the AAPL
query macOS sends, over such a session."""

from __future__ import annotations

import struct
import uuid
from contextlib import contextmanager, suppress

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

from tests.support.smb import (
    AAPL_CLIENT_CAPS,
    AAPL_MODEL_INFO,
    AAPL_SERVER_CAPS,
    AAPL_SERVER_QUERY,
    AAPL_VOLUME_CAPS,
    AaplReply,
    parse_aapl_reply,
)


@contextmanager
def user_tree(host: str, share: str, port: int, user: str, password: str, *, sign: bool = True):
    """A session as `user` and a tree connect, on a fresh connection. `sign=False`: a client that
    does not sign even though the server requires it (smbprotocol would follow the server, as
    every real client does; this is the client the server must refuse)."""
    connection = Connection(uuid.uuid4(), host, port, require_signing=sign)
    connection.connect(timeout=10)
    try:
        if not sign:
            connection.require_signing = False
        session = Session(connection, username=user, password=password, require_encryption=False, auth_protocol="ntlm")
        session.connect()
        tree = TreeConnect(session, rf"\\{host}\{share}")
        tree.connect()
        yield session, tree
    finally:
        # An unsigned logoff is refused too; the connection goes either way.
        with suppress(Exception):
            connection.disconnect(True)


def aapl_query_as(
    host: str, share: str, port: int, user: str, password: str, client_caps: int = AAPL_CLIENT_CAPS
) -> tuple[AaplReply, bool]:
    """Open the share root with an AAPL server query as macOS does, in a signed session as `user`;
    return the reply and whether the session is signed."""
    with user_tree(host, share, port, user, password) as (session, tree):
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
        return parse_aapl_reply(blobs[0]), bool(session.signing_required and session.signing_key)


class UserClient:
    """smbprotocol's high-level client on its own connection pool, as `user` with signing."""

    def __init__(self, host: str, port: int, user: str, password: str):
        self.host, self.port = host, port
        self.cache: dict = {}
        smbclient.register_session(
            host,
            username=user,
            password=password,
            port=port,
            connection_cache=self.cache,
            auth_protocol="ntlm",
            require_signing=True,
            encrypt=False,
        )

    def path(self, share: str, *parts: str) -> str:
        return "\\".join([rf"\\{self.host}", share, *parts])

    def kw(self) -> dict:
        return {"port": self.port, "connection_cache": self.cache}

    def read(self, share: str, name: str) -> bytes:
        with smbclient.open_file(self.path(share, name), mode="rb", **self.kw()) as f:
            return f.read()

    def write(self, share: str, name: str, data: bytes) -> None:
        with smbclient.open_file(self.path(share, name), mode="wb", **self.kw()) as f:
            f.write(data)

    def close(self) -> None:
        smbclient.reset_connection_cache(connection_cache=self.cache)
