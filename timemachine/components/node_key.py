"""A tailnet node's auth key, the same kind for a share's node and the status page's: a single-use,
non-ephemeral, tagged key made by the Tailscale provider (managed) or in Headscale, or the one the
config provides."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tailscale as tailscale

from timemachine.config.models import TailnetConfig
from timemachine.dynamic.headscale import HeadscalePreAuthKey


@dataclass(frozen=True)
class NodeKey:
    # The key, secret wherever it travels.
    auth_key: pulumi.Output[str]
    # The key resource a re-key replaces (`pulumi up --replace <urn>`); None for a provided key (a new
    # value in the config re-keys).
    resource: tailscale.TailnetKey | HeadscalePreAuthKey | None

    @property
    def urn(self) -> pulumi.Output[str] | None:
        return self.resource.urn if self.resource is not None else None


def node_key(
    name: str,
    tags: list[str],
    tailnet: TailnetConfig,
    *,
    opts: pulumi.ResourceOptions,
    tailscale_description: str,
    headscale_description: str,
    headscale_user_id: pulumi.Input[str] | None = None,
    headscale_access: pulumi.Input[dict] | None = None,
    provided_key: str | None = None,
) -> NodeKey:
    """The resource `<name>-key` (`opts`: its parent or aliases) as tailnet.authKeys says. The
    descriptions are inputs of deployed keys: a changed one would replace (re-key) every node, so
    each caller keeps its own."""
    if tailnet.auth_keys == "managed":
        key = tailscale.TailnetKey(
            f"{name}-key",
            reusable=False,
            ephemeral=False,
            preauthorized=True,
            tags=tags,
            expiry=tailnet.key_expiry_days * 86400,
            description=tailscale_description[:50],
            opts=opts,
        )
        # The provider marks `key` secret through additional_secret_outputs; wrapping it again keeps
        # it secret even where that option is not honoured (mocks, older engines).
        return NodeKey(pulumi.Output.secret(key.key), key)
    if tailnet.auth_keys == "headscale":
        assert headscale_user_id is not None and headscale_access is not None
        headscale_key = HeadscalePreAuthKey(
            f"{name}-key",
            user_id=headscale_user_id,
            tags=tags,
            expiry_days=tailnet.key_expiry_days,
            reusable=False,
            description=headscale_description,
            access=headscale_access,
            # A re-key (`pulumi up --replace` of this key) removes the old device before the new key
            # exists, so the node registers again under its own hostname.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        return NodeKey(pulumi.Output.secret(headscale_key.key), headscale_key)
    # The config check guarantees a provided key for every node that needs one.
    assert provided_key is not None
    return NodeKey(pulumi.Output.secret(provided_key), None)
