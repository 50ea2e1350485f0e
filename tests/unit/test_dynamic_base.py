"""The dynamic-resource base (timemachine/dynamic/base.py): the diff rule, the provider moved to
another module, the error form, what each read reports, and each resource's own type with its alias
to the old one, as the program declares them under the mock monitor."""

from __future__ import annotations

import base64
import importlib
import io
import tarfile
from datetime import UTC, datetime, timedelta
from typing import Any

import dill
import pytest
import yaml
from pulumi.dynamic.dynamic import serialize_provider

from tests.support.project import ROOT
from tests.support.pulumi_runner import RecordingMonitor, run_program
from timemachine.dynamic import caddy_config, headscale, process_limit, samba_ready, share_quota, share_storage
from timemachine.dynamic.base import PROVIDER_KEY, UNTYPED, Provider, ResourceError, partial_diff
from timemachine.engine import client, containers, polling
from timemachine.headscale.api import FoundKey, NotFound

OLD_PICKLE = "old: components.caddy_reload._CaddyConfigProvider"
NEW_PICKLE = "new: timemachine.dynamic.caddy_config._CaddyConfigProvider"


def test_partial_diff_reports_changes_replaces_and_stables():
    old = {"name": "alice", "access": {"container": "tm-headscale"}, "user_id": "1", "tags": ["a"], PROVIDER_KEY: "x"}
    new = {"name": "alice", "access": {"url": "http://hs"}, "user_id": None, "tags": ["a", "b"], PROVIDER_KEY: "y"}
    diff = partial_diff(old, new, excluded_props=["user_id"], replace_props=["tags", "name"])
    assert diff.changes == ["access", "tags"]
    assert diff.replaces == ["tags"]
    assert diff.stables == ["name"]


def test_partial_diff_sees_a_property_only_one_side_has():
    assert partial_diff({"a": 1}, {"a": 1, "b": 2}).changes == ["b"]
    assert partial_diff({"a": 1, "b": 2}, {"a": 1}).changes == ["b"]
    # Numbers cross the engine as floats.
    assert partial_diff({"limit": 256.0}, {"limit": 256}).changes == []


class Recorder(Provider):
    """A provider that records what the base asks of it."""

    replace_props = ("where",)
    excluded_props = ("made_id",)

    def __init__(self, fail: Exception | None = None, found: dict | None = None, gone: bool = False):
        super().__init__()
        self.calls: list[str] = []
        self.fail, self.found, self.gone = fail, found, gone

    def subject(self, props) -> str:
        return f"the thing {props.get('name')!r}"

    def make(self, props):
        self.calls.append("make")
        if self.fail:
            raise self.fail
        return "id-1", {**props, "made_id": "id-1"}

    def remove(self, id_, props):
        self.calls.append("remove")
        if self.fail:
            raise self.fail

    def observe(self, id_, props):
        self.calls.append("observe")
        return None if self.gone else {**props, **(self.found or {})}


def props(**values: Any) -> dict[str, Any]:
    return {"name": "alice", "where": "/srv", "made_id": None, PROVIDER_KEY: NEW_PICKLE, **values}


def test_a_provider_that_moved_module_is_no_change():
    """Only a resource's properties are diffed: a provider stored under an older module path (a
    stack deployed before) plans nothing, so the preview keeps its outputs and what depends on them."""
    provider = Recorder()
    diff = provider.diff("id-1", props(made_id="id-1", **{PROVIDER_KEY: OLD_PICKLE}), props())
    assert diff.changes is False and diff.replaces == []


def test_the_same_provider_and_properties_plan_no_change():
    diff = Recorder().diff("id-1", props(made_id="id-1"), props())
    assert diff.changes is False and diff.replaces == []


def test_a_replace_property_replaces_and_others_update():
    provider = Recorder()
    assert provider.diff("id-1", props(), props(where="/mnt")).replaces == ["where"]
    updated = provider.diff("id-1", props(), props(name="bob"))
    assert updated.changes is True and updated.replaces == []
    outs = provider.update("id-1", props(), props(name="bob")).outs
    assert outs is not None and outs["made_id"] == "id-1"
    assert provider.calls == ["make"]


@pytest.mark.parametrize(
    ("step", "verb"),
    [
        (lambda p: p.create(props()), "create"),
        (lambda p: p.update("id-1", props(), props(name="bob")), "update"),
        (lambda p: p.delete("id-1", props()), "delete"),
    ],
)
def test_every_failure_has_one_form_what_failed_and_the_cause_with_its_fix(step, verb):
    provider = Recorder(fail=RuntimeError("the disk is not mounted: mount it at /srv"))
    with pytest.raises(ResourceError) as failed:
        step(provider)
    name = "bob" if verb == "update" else "alice"
    assert str(failed.value) == f"could not {verb} the thing {name!r}: the disk is not mounted: mount it at /srv"
    # One message, no chained traceback of the cause.
    assert failed.value.__suppress_context__


def test_read_reports_what_is_found_or_an_empty_id_when_gone():
    found = Recorder(found={"where": "/elsewhere"}).read("id-1", props())
    assert found.outs is not None
    assert found.id == "id-1" and found.outs["where"] == "/elsewhere" and PROVIDER_KEY not in found.outs
    gone = Recorder(gone=True).read("id-1", props())
    assert gone.id == "" and gone.outs == {}


def stored_provider(module: str, name: str) -> bytes:
    """A provider as the engine stores it (dill, protocol 4: the class by module path and name, no state)."""
    text = b""
    for part in (module, name):
        text += b"\x8c" + bytes([len(part)]) + part.encode() + b"\x94"
    return b"\x80\x04" + text + b"\x93\x94)\x81\x94."


PROVIDERS = {
    "caddy_config._CaddyConfigProvider": ("components.caddy_reload", "_CaddyConfigProvider"),
    "headscale._UserProvider": ("components.headscale", "_UserProvider"),
    "headscale._PreAuthKeyProvider": ("components.headscale", "_PreAuthKeyProvider"),
    "headscale._PolicyProvider": ("components.headscale", "_PolicyProvider"),
    "share_storage._ShareStorageProvider": ("components.storage", "_ShareStorageProvider"),
    "process_limit._ProcessLimitProvider": ("components.hardening", "_ProcessLimitProvider"),
}


@pytest.mark.parametrize(("current", "before"), PROVIDERS.items(), ids=list(PROVIDERS))
def test_providers_stored_by_stacks_before_the_package_load_as_the_current_ones(current, before):
    """What a stack deployed at fbd6010 has in its state, and one deployed since 185d2b8 (the same
    module path and name as now), load as the current provider."""
    module, name = f"timemachine.dynamic.{current}".rsplit(".", 1)
    expected = getattr(importlib.import_module(module), name)
    assert type(dill.loads(stored_provider(*before))) is expected
    assert type(dill.loads(stored_provider(module, name))) is expected
    assert base64.b64decode(serialize_provider(expected())).endswith(stored_provider(module, name)[2:])


def test_providers_pickle_by_reference_and_the_same_every_time():
    """The state holds the provider as a pickle; it must not differ between runs (a diff every time)
    and names the class by module path (what a moved module breaks, see the base's docstring)."""
    for provider in (
        caddy_config._CaddyConfigProvider(),
        headscale._UserProvider(),
        headscale._PreAuthKeyProvider(),
        headscale._PolicyProvider(),
        share_storage._ShareStorageProvider(),
        share_quota._ShareQuotaProvider(),
        process_limit._ProcessLimitProvider(),
        process_limit._ProcessLimitsProvider(),
        samba_ready._SambaReadyProvider(),
    ):
        pickled = serialize_provider(provider)
        assert pickled == serialize_provider(type(provider)())
        assert type(provider).__module__.encode() in base64.b64decode(pickled)
        assert len(base64.b64decode(pickled)) < 200, "the class is pickled by reference, not by value"


class FakeHeadscale:
    def __init__(self, users: dict[str, str], key: FoundKey | None = None, missing_user: bool = False):
        self._users, self.key, self.missing_user = users, key, missing_user
        self.expired: list[str] = []

    def users(self) -> dict[str, str]:
        return self._users

    def find_key(self, user_id: str, key_id: str) -> FoundKey | None:
        if self.missing_user:
            raise NotFound("user not found")
        return self.key

    def expire_key(self, user_id: str, key_id: str, key: str) -> None:
        if self.missing_user:
            raise NotFound("user not found")
        self.expired.append(key)

    def nodes_of_key(self, key_id: str) -> dict[str, str]:
        return {}

    def destroy_user(self, user_id: str) -> None:
        raise NotFound("user not found")


def user_props() -> dict[str, Any]:
    return {"name": "alice", "access": {"container": "tm-headscale"}, "user_id": "7", "adopted": False}


@pytest.mark.parametrize(
    ("users", "gone"),
    [({"alice": "7", "bob": "8"}, False), ({"bob": "8"}, True), ({"alice": "9"}, True)],
    ids=["there", "deleted", "made-again-by-hand"],
)
def test_a_headscale_user_deleted_out_of_band_reads_as_gone(monkeypatch, users, gone):
    monkeypatch.setattr(headscale, "connect", lambda _access: FakeHeadscale(users))
    read = headscale._UserProvider().read("7", user_props())
    assert (read.id == "") is gone


def test_deleting_a_headscale_user_that_is_gone_counts_as_done(monkeypatch):
    monkeypatch.setattr(headscale, "connect", lambda _access: FakeHeadscale({}))
    headscale._UserProvider().delete("7", user_props())


def key_props(expiration: str) -> dict[str, Any]:
    return {
        "user_id": "7",
        "tags": ["tag:timemachine", "tag:tm-alice"],
        "expiry_days": 90,
        "reusable": False,
        "description": "share node tm-alice",
        "access": {"container": "tm-headscale"},
        "key": "hskey-auth-x",
        "expiration": expiration,
    }


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


LATER = stamp(datetime.now(UTC) + timedelta(days=80))
EARLIER = stamp(datetime.now(UTC) - timedelta(hours=1))


@pytest.mark.parametrize(
    ("found", "outcome"),
    [
        (FoundKey(used=True, expiration=LATER), "same"),
        (FoundKey(used=False, expiration=LATER + ".000000001"), "same"),
        (FoundKey(used=True, expiration=EARLIER), "expired"),
        (FoundKey(used=False, expiration=EARLIER), "gone"),
        (None, "gone"),
    ],
    ids=["used", "unused", "used-then-expired", "expired-unused", "deleted"],
)
def test_a_pre_auth_key_reads_as_gone_only_when_it_can_register_nothing(monkeypatch, found, outcome):
    monkeypatch.setattr(headscale, "connect", lambda _access: FakeHeadscale({}, found))
    read = headscale._PreAuthKeyProvider().read("3", key_props(LATER))
    if outcome == "gone":
        assert read.id == ""
    else:
        assert read.id == "3" and read.outs is not None
        assert read.outs["expiration"] == (LATER if outcome == "same" else EARLIER)


def test_a_pre_auth_key_of_a_deleted_user_is_gone_and_deleting_it_counts_as_done(monkeypatch):
    monkeypatch.setattr(headscale, "connect", lambda _access: FakeHeadscale({}, missing_user=True))
    provider = headscale._PreAuthKeyProvider()
    assert provider.read("3", key_props(LATER)).id == ""
    provider.delete("3", key_props(LATER))


def test_caddy_config_read_compares_what_caddy_runs_by_meaning():
    loaded = '{\n  "apps": {"layer4": {}},\n  "admin": {"listen": "unix//run/caddy-admin.sock"}\n}\n'
    # Caddy's autosave: the same config, compact, its keys sorted.
    assert (
        caddy_config._running_config('{"admin":{"listen":"unix//run/caddy-admin.sock"},"apps":{"layer4":{}}}', loaded)
        == loaded
    )
    changed = '{"admin":{"listen":"unix//run/caddy-admin.sock"},"apps":{}}'
    assert caddy_config._running_config(changed, loaded) == changed
    assert caddy_config._running_config(None, loaded) == ""


LOCAL = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
OWN_TYPES = {
    "proxy-config": "CaddyConfig",
    "proxy-caddy-pids": "ProcessLimit",
    "headscale-headscale-pids": "ProcessLimit",
    "headscale-policy": "HeadscalePolicy",
    "headscale-user-admin": "HeadscaleUser",
    "headscale-user-alice": "HeadscaleUser",
    "alice-key": "HeadscalePreAuthKey",
    "join-alice-macbook": "HeadscalePreAuthKey",
    "headscale-certificates": "ControlCertificates",
    "headscale-tls": "VolumeFiles",
    "proxy-control-ca": "VolumeFiles",
    "alice-storage": "ShareStorage",
    "storage": "StorageCapacity",
    # Every share's Samba container's pids limit, in one resource.
    "samba-pids": "ProcessLimits",
    # `pulumi up` waits for every new Samba container, in one resource.
    "samba-ready": "SambaReady",
    # The status container and its page's node (on by default).
    "status-collector-pids": "ProcessLimit",
    "status-page-key": "HeadscalePreAuthKey",
}


def test_each_dynamic_resource_has_its_own_type_aliased_to_the_old_one(monkeypatch):
    aliases: dict[str, list] = {}
    original = RecordingMonitor.RegisterResource

    def spy(self, request):
        aliases[request.name] = list(request.aliases)
        return original(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", spy)
    run = run_program(LOCAL)
    dynamic = {r.name: r.type for r in run.resources if r.type.startswith("pulumi-python:")}
    assert dynamic == {name: f"pulumi-python:dynamic/timemachine:{kind}" for name, kind in OWN_TYPES.items()}
    stack_and_project = "::".join(run.named("alice-samba").urn.split("::")[:2])
    former_share = f"{stack_and_project}::timemachine:index:TimeMachineShare::alice"
    for name in dynamic:
        specs = {(alias.spec.type, alias.spec.parentUrn) for alias in aliases[name]}
        # The alias keeps the name and parent and names the type every one of them had before.
        assert (UNTYPED, "") in specs, name
        assert not any(alias.spec.name for alias in aliases[name]), name
        if name.startswith("alice-"):
            # A share's resources were under its component before: there, with either type.
            assert specs == {(UNTYPED, ""), ("", former_share), (UNTYPED, former_share)}, name
        else:
            assert specs == {(UNTYPED, "")}, name
    # The secrets still travel as outputs the engine encrypts.
    assert run.named("proxy-config").secret_at("keys")


# --- the engine plumbing every dynamic resource uses (timemachine/engine/) -------------------------


def test_the_engine_is_docker_host_else_docker_host_env_and_ssh_uses_the_ssh_client(monkeypatch):
    import docker

    made: list[dict] = []

    class Client:
        def __init__(self, **options):
            made.append(options)

        @classmethod
        def from_env(cls, **options):
            made.append({"from_env": True, **options})
            return cls.__new__(cls)

    monkeypatch.setattr(docker, "DockerClient", Client)
    monkeypatch.setattr(docker, "from_env", Client.from_env)
    monkeypatch.setenv("DOCKER_HOST", "ssh://backup@nas")
    client.docker_client(None, timeout=5)
    client.docker_client("tcp://10.0.0.2:2375")
    client.docker_client("ssh://root@other")
    assert made == [
        {"from_env": True, "timeout": 5, "use_ssh_client": True},
        {"base_url": "tcp://10.0.0.2:2375"},
        {"base_url": "ssh://root@other", "use_ssh_client": True},
    ]


def test_an_engine_that_does_not_answer_is_named_with_the_fix(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(client.EngineUnavailable, match=r"unix:///nonexistent/docker.sock: .*docker:host"):
        client.docker_client(None)


def test_tar_archive_carries_dirs_then_files_with_their_modes():
    data = containers.tar_archive({"keys/tm-alice": ("secret", 0o600)}, {"keys": 0o700})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [(m.name, m.isdir(), m.mode, m.uid) for m in tar.getmembers()]
        assert tar.extractfile("keys/tm-alice").read() == b"secret"  # type: ignore[union-attr]
    assert members == [("keys", True, 0o700, 0), ("keys/tm-alice", False, 0o600, 0)]


def test_poll_returns_the_last_result_and_whether_it_was_ready():
    answers = iter([1, 2, 3])
    assert polling.poll(lambda: next(answers), lambda n: n == 2, seconds=5, interval=0) == (2, True)
    assert polling.poll(lambda: 7, lambda n: n == 2, seconds=0, interval=0) == (7, False)
