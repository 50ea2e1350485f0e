"""A security rebuild (images.rebuild) as the program declares it: every image the stack builds gets a
new tag, every container and step that runs one follows it, and nothing else in the graph moves."""

from __future__ import annotations

import copy
import json

import yaml

from tests.support.project import ROOT
from tests.support.pulumi_runner import ProgramRun, run_program

LOCAL = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
IMAGE_T = "docker:index/image:Image"


def everything(rebuild: str | None) -> dict:
    """The local stack (embedded Headscale) with the status container: all four images built here."""
    config = copy.deepcopy(LOCAL)
    config["tailscale-timemachine:status"] = {"enabled": True}
    if rebuild is not None:
        config["tailscale-timemachine:images"] = {"rebuild": rebuild}
    return config


def images(run: ProgramRun) -> dict[str, str]:
    return {r.name: r.inputs["imageName"] for r in run.of_type("image:Image")}


def with_names_replaced(value, names: dict[str, str]):
    text = json.dumps(value, sort_keys=True)
    for old, new in names.items():
        text = text.replace(old, new)
    return json.loads(text)


def test_a_new_rebuild_label_moves_every_image_and_what_runs_it_and_nothing_else():
    before, after = run_program(everything(None)), run_program(everything("2026-12-01"))
    old, new = images(before), images(after)
    assert set(old) == {"samba-image", "caddy-image", "headscale-image", "status-image"}
    assert set(new) == set(old)
    for name in old:
        assert new[name] != old[name], f"{name} kept its tag"
        assert new[name].rsplit(":", 1)[0] == old[name].rsplit(":", 1)[0]
    renamed = {old[name]: new[name] for name in old}
    resources_after = {r.urn: r for r in after.resources}
    assert set(resources_after) == {r.urn for r in before.resources}, "the same resources, no more, no fewer"
    followers = set()
    for was in before.resources:
        now = resources_after[was.urn]
        expected = with_names_replaced(was.inputs, renamed)
        if was.type == IMAGE_T:
            # The one other change: the label reaches the build as REBUILD.
            expected["build"]["args"] = {**(expected["build"].get("args") or {}), "REBUILD": "2026-12-01"}
        assert now.inputs == expected, f"{was.name} changed beyond its image"
        # The SDK gathers the dependencies in a set: their order differs between runs and means nothing.
        assert (now.protect, now.retain_on_delete, sorted(now.depends_on)) == (
            was.protect,
            was.retain_on_delete,
            sorted(was.depends_on),
        ), was.name
        if now.inputs != was.inputs and was.type != IMAGE_T:
            followers.add(was.name)
    assert before.outputs == after.outputs
    # Every container runs its image under the new tag: the provider replaces it (image forces a
    # new container), and the volumes its data lives on stay as they were (protected or kept).
    containers = {c.name: c.inputs["image"] for c in after.of_type("container:Container")}
    assert set(containers) <= followers
    assert containers == {
        "alice-samba": new["samba-image"],
        "proxy-caddy": new["caddy-image"],
        "headscale-headscale": new["headscale-image"],
        "status-collector": new["status-image"],
    }
    volumes = {v.name: v for v in after.of_type("volume:Volume")}
    assert volumes["proxy-data"].protect and volumes["proxy-data"].retain_on_delete
    assert all(v.retain_on_delete for v in volumes.values()), "a replaced container's state volume is kept"


def test_without_a_label_the_tags_are_those_of_the_sources_alone():
    assert images(run_program(everything(None))) == images(run_program(everything("")))
    assert images(run_program(everything("2026-12-01"))) == images(run_program(everything("2026-12-01")))
    assert images(run_program(everything("2026-12-01"))) != images(run_program(everything("2027-01-05")))
