"""SharePassword: a share's Samba password (samba.auth: password), made once from the operating
system's random source and kept in the stack's state as a secret: every `pulumi up` after the first
keeps it, until the resource is replaced on purpose (`pulumi up --replace`)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from typing import Any

import pulumi

from timemachine.dynamic.base import Provider, Resource

# 24 random bytes (192 bits), URL-safe text: nothing a shell, smb.conf or a URL would need quoted.
PASSWORD_BYTES = 24


class SharePasswordProvider(Provider):
    # The provider's own output: never compared with the input (None).
    excluded_props = ("password",)
    replace_props = ("share",)

    def subject(self, props: Mapping[str, Any]) -> str:
        return f"the Samba password of share {props.get('share')!r}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # A new id with every new password: the share's container carries it, so a new password
        # restarts smbd with it.
        return uuid.uuid4().hex, {**props, "password": secrets.token_urlsafe(PASSWORD_BYTES)}

    def change(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        return {**news, "password": olds["password"]}


class SharePassword(Resource, type_name="SharePassword"):
    """`password`: the share's password (secret); the resource's id changes with it."""

    password: pulumi.Output[str]

    def __init__(self, name: str, *, share: str, opts: pulumi.ResourceOptions | None = None):
        props = {"share": share, "password": None}
        super().__init__(SharePasswordProvider(), name, props, opts, secret_outputs=["password"])
