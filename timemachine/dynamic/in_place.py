"""A dynamic-resource provider for what the stack applies to a running container (Caddy's config,
Headscale's policy): updated in place, never replaced, so the container is never restarted."""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult


class InPlaceProvider(ResourceProvider):
    # The inputs whose change means applying again.
    fields: tuple[str, ...] = ()
    # Put before the error's own text; empty: the error says it all.
    failure = ""

    def apply(self, props: dict[str, Any]) -> None:
        raise NotImplementedError

    def _apply(self, props: dict[str, Any]) -> None:
        try:
            self.apply(props)
        except Exception as error:  # noqa: BLE001 - the engine shows one message per failed step
            raise Exception(f"{self.failure}: {error}" if self.failure else str(error)) from None

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._apply(props)
        return CreateResult(id_=props["container"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [name for name in self.fields if olds.get(name) != news.get(name)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._apply(news)
        return UpdateResult(outs=news)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # The container goes with the stack; nothing to take back from it.
        return
