"""The embedded Headscale's release as the program declares it (issue 24): one image per release, the
release on its container's label, the policy's `tests` from 0.29, and the upgrade path of a deployed
stack — one minor version per run; a skipped one (or a step back) stops the program before any
resource is declared, with the step to take."""

from __future__ import annotations

import copy
import json

import pulumi
import pytest
import yaml

from tests.support.project import ROOT
from tests.support.pulumi_runner import ProgramRun, run_program
from timemachine.components.images import local_image_name
from timemachine.config.models import DEFAULT_HEADSCALE_VERSION

LOCAL = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
TAILNET = "tailscale-timemachine:tailnet"


def at(version: str | None) -> dict:
    config = copy.deepcopy(LOCAL)
    headscale = dict(config[TAILNET].get("headscale") or {})
    if version is not None:
        headscale["version"] = version
    config[TAILNET] = {**config[TAILNET], "headscale": headscale}
    return config


def labels(run: ProgramRun) -> dict[str, str]:
    return {item["label"]: item["value"] for item in run.named("headscale-headscale").inputs["labels"]}


def config_yaml(run: ProgramRun) -> dict:
    envs = dict(e.split("=", 1) for e in run.named("headscale-headscale").inputs["envs"])
    return yaml.safe_load(envs["HEADSCALE_CONFIG_YAML"])


def test_each_release_is_its_own_image_built_with_the_version_as_build_arg():
    images = {}
    for version in ("v0.27.1", "v0.28.0", "v0.29.3"):
        run = run_program(at(version))
        image = run.named("headscale-image").inputs
        assert image["build"]["args"] == {"HEADSCALE_VERSION": version}
        assert image["imageName"] == local_image_name("headscale", {"HEADSCALE_VERSION": version})
        assert run.named("headscale-headscale").inputs["image"] == image["imageName"]
        assert labels(run)["timemachine.headscale-version"] == version
        assert ("randomize_client_port" in config_yaml(run)) is (version != "v0.29.3")
        images[version] = image["imageName"]
    assert len(set(images.values())) == 3
    assert labels(run_program(at(None)))["timemachine.headscale-version"] == DEFAULT_HEADSCALE_VERSION


def test_the_embedded_policy_has_tests_from_0_29():
    assert "tests" not in json.loads(run_program(at("v0.28.0")).outputs["tailnetPolicy"])
    policy = json.loads(run_program(at("v0.29.3")).outputs["tailnetPolicy"])
    shares = {f"tag:tm-{s['name']}:445": s["owner"] for s in LOCAL["tailscale-timemachine:shares"]}
    on_shares = [t for t in policy["tests"] if t.get("accept", [""])[0].endswith(":445")]
    assert {t["accept"][0]: t["src"] for t in on_shares} == shares
    for test in on_shares:
        assert sorted(test.get("deny", [])) == sorted(s for s, owner in shares.items() if owner != test["src"])


def test_a_deployed_stack_moves_one_minor_version_per_run():
    on_27 = run_program(at("v0.27.1"))
    on_28 = run_program(at("v0.28.0"), deployed=on_27)
    assert labels(on_28)["timemachine.headscale-version"] == "v0.28.0"
    assert run_program(at("v0.29.3"), deployed=on_28).resources
    # Staying where it is: nothing to refuse.
    assert run_program(at("v0.27.1"), deployed=on_27).resources


@pytest.mark.parametrize(
    ("deployed", "wanted", "says"),
    [
        ("v0.27.1", "v0.29.3", r"v0\.29\.3 skips a minor version of the deployed v0\.27\.1.*version to v0\.28\.0"),
        ("v0.27.1", "v0.29.3", r"v0\.27\.1 → v0\.28\.0 → v0\.29\.3"),
        ("v0.29.3", "v0.28.0", r"older than the deployed v0\.29\.3.*version\s+to v0\.29\.3"),
        ("v0.28.0", "v0.27.1", r"v0\.27\.1 is older than the deployed v0\.28\.0"),
    ],
)
def test_a_skipped_minor_or_a_step_back_stops_before_any_resource(deployed, wanted, says):
    first = run_program(at(deployed))
    with pytest.raises(pulumi.RunError, match=says):
        run_program(at(wanted), deployed=first)


def test_a_stack_deployed_before_the_label_is_taken_for_0_27_1():
    first = run_program(at("v0.27.1"))
    for resource in first.resources:
        if resource.name == "headscale-headscale":
            resource.inputs["labels"] = [
                item for item in resource.inputs["labels"] if item["label"] != "timemachine.headscale-version"
            ]
    with pytest.raises(pulumi.RunError, match="deployed v0.27.1"):
        run_program(at("v0.29.3"), deployed=first)
    kept = run_program(at(None), deployed=first)
    assert labels(kept)["timemachine.headscale-version"] == "v0.27.1"
    assert run_program(at("v0.28.0"), deployed=first).resources


@pytest.mark.parametrize(("deployed", "step"), [("v0.27.1", "v0.28.0"), ("v0.28.0", "v0.29.3")])
def test_a_deployed_stack_whose_config_names_no_release_keeps_its_own_and_is_told_the_next_step(deployed, step):
    first = run_program(at(deployed))
    kept = run_program(at(None), deployed=first)
    assert labels(kept)["timemachine.headscale-version"] == deployed
    assert kept.named("headscale-image").inputs["build"]["args"] == {"HEADSCALE_VERSION": deployed}
    assert [w for w in kept.warnings if f"keeps the Headscale {deployed}" in w and f"version {step}" in w], (
        kept.warnings
    )
    # A new stack, and one already on the default, get the default without a word.
    fresh = run_program(at(None))
    assert labels(fresh)["timemachine.headscale-version"] == DEFAULT_HEADSCALE_VERSION == "v0.29.3"
    again = run_program(at(None), deployed=fresh)
    assert not [w for w in again.warnings if "tailnet.headscale.version" in w]
