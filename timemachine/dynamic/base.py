"""The one base of the stack's dynamic resources: a provider whose check, diff, create, update, delete
and read share one diff rule and one error form, and a resource with a type name of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

# Where the engine keeps the provider of a dynamic resource: a pickle of the provider object that
# names its class by module path (see Provider).
PROVIDER_KEY = "__provider"
# The one type every dynamic resource of this stack had before each got its own (issue 26).
UNTYPED = "pulumi-python:dynamic:Resource"
# Each resource's type is pulumi-python:dynamic/timemachine:<type_name>.
TYPE_MODULE = "timemachine"

T = TypeVar("T")


class ResourceError(Exception):
    """What failed and the fix, in one message: `could not <verb> <what>: <cause and fix>`."""


@dataclass(frozen=True)
class PropertyDiff:
    changes: list[str]  # the properties that differ
    replaces: list[str]  # those of them that replace the resource
    stables: list[str]  # the properties that do not differ


def partial_diff(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    excluded_props: Iterable[str] = (),
    replace_props: Iterable[str] = (),
) -> PropertyDiff:
    """The properties of `old` and `new` that differ, those of them in `replace_props`, and those
    that do not; `excluded_props` (and the provider itself) are left out."""
    skip = {*excluded_props, PROVIDER_KEY}
    names = sorted((set(old) | set(new)) - skip)
    changes = [name for name in names if old.get(name) != new.get(name)]
    replacing = set(replace_props)
    return PropertyDiff(
        changes=changes,
        replaces=[name for name in changes if name in replacing],
        stables=[name for name in names if name not in changes],
    )


class Provider(ResourceProvider):
    """A subclass says what its resource is (`subject`), how it is made, changed and removed
    (`make`, `change`, `remove`) and what is really there (`observe`); the base does the rest.

    Its class is pickled into the state by module path and name (PROVIDER_KEY), and the engine
    deletes, reads and re-plans a resource with the one stored when the resource was last created
    or updated. So a provider's module path and class name are part of every deployed stack: one
    moved or renamed keeps its old path importable (components/ holds those from before the
    timemachine/ package). A provider that differs only by that path is no change: as an update,
    the preview would take the resource's computed outputs (a Headscale user's id) from its inputs
    and show what depends on them (that user's keys) as replaced."""

    # The SDK stores the pickled provider (PROVIDER_KEY) as a secret unless told otherwise, for
    # providers that capture secrets. These capture nothing (made without arguments, no instance
    # state: the pickle is the class path), and each secret costs the engine an encryption on every
    # snapshot it serialises, during a preview too: about 9 % of a 100-share preview
    # (docs/benchmarks.md). A provider that did capture a secret Output would still be stored secret.
    serialize_as_secret_always = False
    # The properties whose change replaces the resource; any other change updates it in place.
    replace_props: ClassVar[tuple[str, ...]] = ()
    # Never diffed: outputs the provider fills in, and inputs that only say how a new one is made.
    excluded_props: ClassVar[tuple[str, ...]] = ()

    def subject(self, props: Mapping[str, Any]) -> str:
        """The resource for people, e.g. "Headscale user 'alice'"."""
        raise NotImplementedError

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Make it (idempotent: what exists already is taken as made); its id and outputs."""
        raise NotImplementedError

    def change(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        """Bring it to `news`; its outputs. By default it is made again under the same id."""
        return self.make(news)[1]

    def remove(self, id_: str, props: dict[str, Any]) -> None:
        """Take it away; what is already gone counts as removed. By default nothing is removed."""

    def observe(self, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        """Its properties as found (`props`: as the state has them); None when it is gone, so that
        `pulumi refresh` drops it and the next `pulumi up` makes it again."""
        return dict(props)

    def _step(self, verb: str, props: Mapping[str, Any], step: Callable[[], T]) -> T:
        try:
            return step()
        except Exception as error:  # noqa: BLE001 - the engine shows one message per failed step
            raise ResourceError(f"could not {verb} {self.subject(props)}: {error}") from None

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        found = partial_diff(olds, news, self.excluded_props, self.replace_props)
        return DiffResult(
            changes=bool(found.changes), replaces=found.replaces, stables=found.stables, delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        id_, outs = self._step("create", props, lambda: self.make(props))
        return CreateResult(id_=id_, outs=outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._step("update", news, lambda: self.change(id_, olds, news)))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self._step("delete", props, lambda: self.remove(id_, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        found = self._step("read", props, lambda: self.observe(id_, props))
        if found is None:
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs={key: value for key, value in found.items() if key != PROVIDER_KEY})


class Resource(pulumi.dynamic.Resource):
    """A dynamic resource with a type of its own: `class CaddyConfig(Resource, type_name="CaddyConfig")`
    is `pulumi-python:dynamic/timemachine:CaddyConfig`, so previews and URNs say what it is. Each is
    aliased to the one type all had before, so a deployed stack keeps them (no create, no delete)."""

    def __init_subclass__(cls, *, type_name: str, **kwargs: Any) -> None:
        super().__init_subclass__(module=TYPE_MODULE, name=type_name, **kwargs)

    def __init__(
        self,
        provider: Provider,
        name: str,
        props: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
        secret_outputs: Iterable[str] = (),
    ):
        own = pulumi.ResourceOptions(
            aliases=[pulumi.Alias(type_=UNTYPED)], additional_secret_outputs=list(secret_outputs) or None
        )
        super().__init__(provider, name, props, pulumi.ResourceOptions.merge(own, opts))
