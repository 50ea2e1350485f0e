"""The Headscale objects the program makes in any Headscale (users, pre-auth keys) and the policy it
loads into the embedded one: dynamic resources over the Headscale client (timemachine/headscale/api.py)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from timemachine.dynamic.in_place import InPlaceProvider
from timemachine.headscale.api import ContainerHeadscale, HeadscaleError, UserExists, UserHasNodes, connect
from timemachine.headscale.config import HEADSCALE_POLICY_PATH, HEADSCALE_STATE


def _fail(what: str, error: HeadscaleError) -> Exception:
    # A provider error ends this resource's step only; the engine records everything done before.
    return Exception(f"{what}: {error}")


class _UserProvider(ResourceProvider):
    """A Headscale user per owner. An existing user of that name is adopted, never deleted."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        headscale = connect(props["access"])
        try:
            try:
                user_id, adopted = headscale.create_user(props["name"]), False
            except UserExists:
                user_id, adopted = headscale.users()[props["name"]], True
        except HeadscaleError as error:
            raise _fail(f"Headscale user {props['name']!r} not created", error) from None
        return CreateResult(id_=user_id, outs={**props, "user_id": user_id, "adopted": adopted})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = ["name"] if olds.get("name") != news.get("name") else []
        changed = replaces or (["access"] if olds.get("access") != news.get("access") else [])
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**olds, "access": news["access"]})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("adopted"):
            return
        try:
            connect(props["access"]).destroy_user(props["user_id"])
        except UserHasNodes:
            # Devices are still registered to this person: removing their identity is not this
            # stack's decision. `headscale users destroy` does it once they are gone.
            return
        except HeadscaleError as error:
            raise _fail(f"Headscale user {props['name']!r} not deleted", error) from None


class _PreAuthKeyProvider(ResourceProvider):
    """A pre-auth key; deleting the resource expires the key in Headscale."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        try:
            made = connect(props["access"]).create_key(
                props["user_id"], list(props.get("tags") or []), int(props["expiry_days"]), bool(props["reusable"])
            )
        except HeadscaleError as error:
            raise _fail(f"pre-auth key for {props['description']} not created", error) from None
        return CreateResult(id_=made.id, outs={**props, "key": made.key, "expiration": made.expiration})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        fixed = ("user_id", "tags", "expiry_days", "reusable")
        replaces = [name for name in fixed if olds.get(name) != news.get(name)]
        changed = replaces or [name for name in ("access", "description") if olds.get(name) != news.get(name)]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**olds, "access": news["access"], "description": news["description"]})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        headscale = connect(props["access"])
        try:
            headscale.expire_key(props["user_id"], props["key"])
        except HeadscaleError as error:
            raise _fail(f"pre-auth key for {props['description']} not expired", error) from None
        if not props.get("tags"):
            # A person's join key: the Mac it registered is theirs, not the stack's.
            return
        # A share node's key: the device it registered goes with it, so a removed share leaves no
        # stale device, and a re-keyed share (deleted before its new key is made) registers again
        # under its own hostname instead of `<hostname>-<suffix>`.
        try:
            for node_id in headscale.nodes_of_key(id_):
                headscale.delete_node(node_id)
        except HeadscaleError as error:
            raise _fail(f"the device registered with the key for {props['description']} not removed", error) from None


class HeadscaleUser(pulumi.dynamic.Resource):
    user_id: pulumi.Output[str]

    def __init__(self, name: str, user: str, access: pulumi.Input[dict], opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            _UserProvider(), name, {"name": user, "access": access, "user_id": None, "adopted": None}, opts
        )


class HeadscalePreAuthKey(pulumi.dynamic.Resource):
    key: pulumi.Output[str]
    expiration: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        user_id: pulumi.Input[str],
        tags: list[str],
        expiry_days: int,
        reusable: bool,
        description: str,
        access: pulumi.Input[dict],
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "user_id": user_id,
            "tags": sorted(tags),
            "expiry_days": expiry_days,
            "reusable": reusable,
            "description": description,
            "access": access,
            "key": None,
            "expiration": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["key"])
        super().__init__(_PreAuthKeyProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))


def load_policy(props: dict[str, Any]) -> None:
    """Write the policy into the running Headscale, check it with Headscale's own parser, then
    SIGHUP: Headscale reloads its policy file without a restart. A policy Headscale refuses is
    an error and the running one stays."""
    container = ContainerHeadscale(props["container"], props.get("docker_host"))
    candidate = f"{HEADSCALE_STATE}/policy.next.hujson"
    container.write(candidate, props["policy"])
    container.run_plain("policy", "check", "--file", candidate)
    container.exec_plain("mv", candidate, HEADSCALE_POLICY_PATH)
    since = container.signal("SIGHUP")
    container.wait_log("reloading ACL policy", since)


class _PolicyProvider(InPlaceProvider):
    fields = ("container", "container_id", "policy", "docker_host")
    failure = "tailnet policy not loaded into Headscale"

    def apply(self, props: dict[str, Any]) -> None:
        load_policy(props)


class HeadscalePolicy(pulumi.dynamic.Resource):
    def __init__(
        self,
        name: str,
        *,
        container: str,
        container_id: pulumi.Input[str],
        policy: str,
        docker_host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {"container": container, "container_id": container_id, "policy": policy, "docker_host": docker_host}
        super().__init__(_PolicyProvider(), name, props, opts)
