"""The dynamic providers' pickles carry no secret (so the base stores them plainly, which a preview's
snapshots serialise on every step): each provider is made without arguments and pickles to its
class path alone (the SDK would still store secret one that captured a secret Output)."""

from __future__ import annotations

import base64
import importlib
import pickle
import pkgutil

import pytest
from pulumi.dynamic.dynamic import serialize_provider

import timemachine.dynamic
from tests.support.pulumi_runner import run_program
from tests.support.stack_configs import generated
from timemachine.dynamic.base import PROVIDER_KEY, Provider


def providers() -> list[type[Provider]]:
    for module in pkgutil.iter_modules(timemachine.dynamic.__path__):
        importlib.import_module(f"timemachine.dynamic.{module.name}")
    found, todo = [], list(Provider.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    # Only the program's own (tests define providers of their own).
    own = [cls for cls in found if cls.__module__.startswith("timemachine.")]
    return sorted(own, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


@pytest.mark.parametrize("cls", providers(), ids=lambda cls: cls.__qualname__)
def test_each_provider_pickles_to_its_class_path_alone(cls):
    provider = cls()
    assert vars(provider) == {}, "a provider's state would be pickled into every resource"
    assert not cls.serialize_as_secret_always
    loaded = pickle.loads(base64.b64decode(serialize_provider(provider)))
    assert type(loaded) is cls and vars(loaded) == {}


def test_the_program_stores_the_providers_plainly_and_its_secrets_secret():
    config = generated(2, network={"name": "tm", "subnet": "10.77.0.0/24"})
    config["tailnet"] = {"dnsSuffix": "corp.ts.net", "authKeys": "provided"}
    config["shares"] = [dict(s, authKey=f"tskey-auth-{s['name']}-{'0' * 40}") for s in config["shares"]]
    run = run_program(config)
    dynamic = [r for r in run.resources if r.type.startswith("pulumi-python:dynamic")]
    assert dynamic and all(PROVIDER_KEY in r.raw_inputs and not r.secret_at(PROVIDER_KEY) for r in dynamic)
    (proxy_config,) = [r for r in dynamic if r.type.endswith(":CaddyConfig")]
    assert proxy_config.secret_at("keys"), "the nodes' keys stay secret"
