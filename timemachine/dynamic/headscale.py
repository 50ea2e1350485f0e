"""The Headscale objects the program makes in any Headscale (users, pre-auth keys) and the policy it
loads into the embedded one: dynamic resources over the Headscale client (timemachine/headscale/api.py)."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from timemachine.dynamic.base import Provider, Resource
from timemachine.headscale.api import (
    ContainerHeadscale,
    NotFound,
    UserExists,
    UserHasNodes,
    connect,
    field,
    same_instant,
)
from timemachine.headscale.config import HEADSCALE_POLICY_PATH, HEADSCALE_STATE
from timemachine.tailnet.policy import applicable_tests


class _UserProvider(Provider):
    """A Headscale user per owner. An existing user of that name is adopted, never deleted. Read:
    gone when Headscale has no user of that name and id any more (deleted out of band: the next
    `pulumi up` makes it again, or adopts one made by hand)."""

    replace_props = ("name",)
    excluded_props = ("user_id", "adopted")

    def subject(self, props) -> str:
        return f"Headscale user {props.get('name')!r}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        headscale = connect(props["access"])
        try:
            user_id, adopted = headscale.create_user(props["name"]), False
        except UserExists:
            user_id, adopted = headscale.users()[props["name"]], True
        return user_id, {**props, "user_id": user_id, "adopted": adopted}

    def change(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        return {**olds, "access": news["access"]}

    def remove(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("adopted"):
            return
        headscale = connect(props["access"])
        if str(props["user_id"]) not in headscale.users().values():
            return  # deleted already
        try:
            headscale.destroy_user(props["user_id"])
        except UserHasNodes:
            # Devices are still registered to this person: removing their identity is not this
            # stack's decision. `headscale users destroy` does it once they are gone.
            return

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        found = connect(props["access"]).users().get(props["name"])
        return dict(props) if found == str(props["user_id"]) else None


class _PreAuthKeyProvider(Provider):
    """A pre-auth key; deleting the resource expires the key in Headscale. Read: gone when Headscale
    has no such key any more (its user deleted), or it expired unused (the next `pulumi up` makes a
    usable one); a used key stays what it is, expired or not: the node it registered keeps its
    identity, and a new key would register another."""

    replace_props = ("user_id", "tags", "expiry_days", "expiry_hours", "reusable")
    excluded_props = ("key", "expiration")

    def subject(self, props) -> str:
        return f"the pre-auth key for {props.get('description')}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # A Mac's join key lives hours (expiry_hours); a share node's key days (expiry_days).
        hours = int(props.get("expiry_hours") or 24 * int(props["expiry_days"]))
        made = connect(props["access"]).create_key(
            props["user_id"], list(props.get("tags") or []), hours, bool(props["reusable"])
        )
        return made.id, {**props, "key": made.key, "expiration": made.expiration}

    def change(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        return {**olds, "access": news["access"], "description": news["description"]}

    def remove(self, id_: str, props: dict[str, Any]) -> None:
        headscale = connect(props["access"])
        try:
            headscale.expire_key(props["user_id"], id_, props["key"])
        except NotFound:
            pass  # its user is gone, and the key with it
        if not props.get("tags"):
            # A person's join key: the Mac it registered is theirs, not the stack's.
            return
        # A share node's key: the device it registered goes with it, so a removed share leaves no
        # stale device, and a re-keyed share (deleted before its new key is made) registers again
        # under its own hostname instead of `<hostname>-<suffix>`.
        for node_id in headscale.nodes_of_key(id_):
            try:
                headscale.delete_node(node_id)
            except NotFound:
                continue

    def observe(self, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = connect(props["access"]).find_key(props["user_id"], id_)
        except NotFound:
            return None
        if found is None or (found.expired and not found.used):
            return None
        # Expired early (`headscale preauthkeys expire`) shows as its new expiration.
        same = same_instant(found.expiration, props.get("expiration") or "")
        return {**props, "expiration": props.get("expiration") if same else found.expiration}


class HeadscaleUser(Resource, type_name="HeadscaleUser"):
    user_id: pulumi.Output[str]

    def __init__(self, name: str, user: str, access: pulumi.Input[dict], opts: pulumi.ResourceOptions | None = None):
        props = {"name": user, "access": access, "user_id": None, "adopted": None}
        super().__init__(_UserProvider(), name, props, opts)


class HeadscalePreAuthKey(Resource, type_name="HeadscalePreAuthKey"):
    key: pulumi.Output[str]
    expiration: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        user_id: pulumi.Input[str],
        tags: list[str],
        expiry_days: int | None = None,
        expiry_hours: int | None = None,
        reusable: bool,
        description: str,
        access: pulumi.Input[dict],
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "user_id": user_id,
            "tags": sorted(tags),
            "expiry_days": expiry_days,
            # Only a join key has it: a share node's key keeps the props it was made with.
            **({"expiry_hours": expiry_hours} if expiry_hours is not None else {}),
            "reusable": reusable,
            "description": description,
            "access": access,
            "key": None,
            "expiration": None,
        }
        super().__init__(_PreAuthKeyProvider(), name, props, opts, secret_outputs=["key"])


def devices(container: ContainerHeadscale) -> tuple[set[str], set[str]]:
    """Who has a device in Headscale: the users with an untagged one (`alice@`, and their e-mail),
    and the tags some device carries (0.28 and later: `tags`, a tagged device's identity)."""
    users: set[str] = set()
    tags: set[str] = set()
    for node in container.nodes():
        what = f"node {field(node, ('id',), 'a node')}"
        carried = field(node, ("tags",), what, default=None) or []
        if carried:
            tags.update(carried)
            continue
        user = field(node, ("user",), what, default=None) or {}
        users.add(f"{field(user, ('name',), f'the user of {what}')}@")
        if user.get("email"):
            users.add(user["email"])
    return users, tags


def policy_for_devices(container: ContainerHeadscale, policy: str) -> str:
    """The policy as it is loaded now: its `tests` narrowed to those Headscale can evaluate with the
    devices it has (tailnet/policy.py, applicable_tests); a policy without tests as it is."""
    parsed = json.loads(policy)
    if "tests" not in parsed:
        return policy
    users, tags = devices(container)
    return json.dumps(applicable_tests(parsed, users, tags), indent=2, sort_keys=True)


def load_policy(props: dict[str, Any]) -> str:
    """Write the policy into the running Headscale, check it with Headscale's own parser (0.29: and
    its `tests`, against its users and devices), then SIGHUP: Headscale reloads its policy file
    without a restart. A policy Headscale refuses is an error and the running one stays. Returns the
    text loaded."""
    container = ContainerHeadscale(props["container"], props.get("docker_host"))
    text = policy_for_devices(container, props["policy"])
    candidate = f"{HEADSCALE_STATE}/policy.next.hujson"
    container.write(candidate, text)
    container.run_plain("policy", "check", "--file", candidate)
    container.exec_plain("mv", candidate, HEADSCALE_POLICY_PATH)
    since = container.signal("SIGHUP")
    container.wait_log("reloading ACL policy", since)
    return text


class _PolicyProvider(Provider):
    """Updated in place, never replaced: Headscale is never restarted for it. Read: the policy file
    on Headscale's volume, as found; it differs from the stack's when edited by hand, or when tests
    that waited for a device can now be loaded (`pulumi up --refresh` loads them)."""

    # What was written (the policy with the tests Headscale could evaluate then): an output.
    excluded_props = ("loaded",)

    def subject(self, props) -> str:
        return f"the tailnet policy in {props.get('container')!r}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return props["container"], {**props, "loaded": load_policy(props)}

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        container = ContainerHeadscale(props["container"], props.get("docker_host"))
        found = container.read(HEADSCALE_POLICY_PATH)
        if found is None:
            return {**props, "container_id": "", "policy": "", "loaded": ""}
        container_id, text = found
        try:
            expected = policy_for_devices(container, props["policy"])
        except Exception:  # noqa: BLE001 - Headscale stopped: what it would load cannot be known; the file is what it is
            expected = props.get("loaded", props["policy"])
        policy = props["policy"] if text == expected else (text or "")
        return {**props, "container_id": container_id, "policy": policy, "loaded": text or ""}


class HeadscalePolicy(Resource, type_name="HeadscalePolicy"):
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
        props = {
            "container": container,
            "container_id": container_id,
            "policy": policy,
            "docker_host": docker_host,
            "loaded": None,
        }
        super().__init__(_PolicyProvider(), name, props, opts)
