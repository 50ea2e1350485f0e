"""Security rebuilds (images.rebuild) and the Caddy image's module patches, without an engine: the
label moves every local image's tag and only that, every Dockerfile lets it miss the package
layer's cache, and each patch matches a module version the build names."""

from __future__ import annotations

import re

import pytest

from tests.support.goproxy import L4
from timemachine.components.images import (
    IMAGES_DIR,
    REBUILD_ARG,
    context_digest,
    image_build_args,
    local_image_name,
)
from timemachine.components.status import STATUS_SOURCES
from timemachine.config.loader import ConfigError, load

KINDS = {"samba": (), "caddy": (), "headscale": (), "status": STATUS_SOURCES}
CADDY_ARGS = {"GOPROXY": "https://goproxy.example.com"}
PATCHES = IMAGES_DIR / "caddy" / "patches"


def names(rebuild: str) -> dict[str, str]:
    return {
        kind: local_image_name(kind, CADDY_ARGS if kind == "caddy" else None, sources, rebuild=rebuild)
        for kind, sources in KINDS.items()
    }


def test_every_image_the_stack_builds_has_a_folder_here():
    assert {p.name for p in IMAGES_DIR.iterdir() if (p / "Dockerfile").is_file()} == set(KINDS)


def test_a_new_label_gives_every_local_image_a_new_tag_and_keeps_its_name():
    plain, dated, later = names(""), names("2026-12-01"), names("2027-01-05")
    for kind in KINDS:
        assert len({plain[kind], dated[kind], later[kind]}) == 3, kind
        assert {n.rsplit(":", 1)[0] for n in (plain[kind], dated[kind], later[kind])} == {
            f"tailscale-timemachine/{kind}"
        }
    assert names("2026-12-01") == dated, "a tag is a function of sources, args and label"


def test_without_a_label_a_tag_is_what_it_was_before_rebuilds_existed():
    for kind, sources in KINDS.items():
        args = CADDY_ARGS if kind == "caddy" else None
        assert local_image_name(kind, args, sources) == (
            f"tailscale-timemachine/{kind}:{context_digest(IMAGES_DIR / kind, args, sources)}"
        )


def test_the_label_is_one_more_build_arg_and_the_only_change():
    assert image_build_args(CADDY_ARGS, "") == CADDY_ARGS
    assert image_build_args(None, "") == {}
    assert image_build_args(CADDY_ARGS, "2026-12-01") == {**CADDY_ARGS, REBUILD_ARG: "2026-12-01"}
    # images.rebuild wins over a REBUILD among proxy.buildArgs.
    assert image_build_args({REBUILD_ARG: "old"}, "new") == {REBUILD_ARG: "new"}
    assert local_image_name("caddy", CADDY_ARGS, rebuild="x") == local_image_name(
        "caddy", {**CADDY_ARGS, REBUILD_ARG: "x"}
    )


def package_stages(dockerfile: str) -> list[str]:
    """The stages (FROM to the next FROM) that install Debian packages."""
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    return [stage for stage in stages if "apt-get install" in stage]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_package_install_misses_the_cache_on_a_new_label_and_upgrades_the_base(kind):
    dockerfile = (IMAGES_DIR / kind / "Dockerfile").read_text()
    stages = package_stages(dockerfile)
    assert stages, f"images/{kind} installs no package"
    for stage in stages:
        # Instructions, continuation lines joined.
        instructions = re.sub(r"\\\n", " ", stage).splitlines()
        declared = next(i for i, line in enumerate(instructions) if line.strip() == f"ARG {REBUILD_ARG}")
        install = next(i for i, line in enumerate(instructions) if "apt-get install" in line)
        assert declared < install, f"images/{kind}: ARG {REBUILD_ARG} after the package install"
        run = instructions[install]
        assert f"${{{REBUILD_ARG}" in run, f"images/{kind}: the install's RUN does not use {REBUILD_ARG}"
        assert run.index("apt-get update") < run.index("apt-get upgrade") < run.index("apt-get install")


def load_images(images: object):
    return load(
        {"storageRoot": "/srv/tm", "tailnet": {"authKeys": "provided"}, "images": images, "shares": []}
    ).config.images


def test_the_label_is_any_short_printable_text_and_a_number_reads_as_its_text():
    assert load_images({}).rebuild == ""
    assert load_images({"rebuild": "2026-12-01"}).rebuild == "2026-12-01"
    assert load_images({"rebuild": "DSA-5999-1 openssl"}).rebuild == "DSA-5999-1 openssl"
    assert load_images('{"rebuild": 20261201}').rebuild == "20261201"


@pytest.mark.parametrize("bad", [" 2026-12-01", "2026-12-01 ", "a\nb", "x" * 65, True, ["2026"]])
def test_a_label_that_is_not_printable_text_is_refused_naming_the_key(bad):
    with pytest.raises(ConfigError) as error:
        load_images({"rebuild": bad})
    assert "images.rebuild:" in str(error.value)


def test_an_unknown_images_key_is_refused():
    with pytest.raises(ConfigError, match=r"images\.rebiuld: unknown key"):
        load_images({"rebiuld": "2026-12-01"})


def caddy_modules() -> list[str]:
    dockerfile = (IMAGES_DIR / "caddy" / "Dockerfile").read_text()
    match = re.search(r'^ARG CADDY_MODULES="([^"]+)"', dockerfile, re.M)
    assert match, "images/caddy pins its modules in CADDY_MODULES"
    return match.group(1).split()


def test_each_caddy_patch_is_for_a_module_version_the_image_pins_and_the_tests_build():
    patches = sorted(p.relative_to(PATCHES).as_posix().removesuffix(".patch") for p in PATCHES.rglob("*.patch"))
    assert patches == ["github.com/mholt/caddy-l4@v0.1.2"]
    # A patch for a version nobody builds would be a fix that silently stopped applying.
    assert set(patches) <= set(caddy_modules())
    # The tests' stacks pin caddy-l4 themselves (proxy.buildArgs): the same, patched version.
    assert L4 in patches


def test_the_caddy_l4_patch_says_what_it_fixes_and_where_that_came_from():
    text = (PATCHES / "github.com/mholt/caddy-l4@v0.1.2.patch").read_text()
    header = text[: text.index("diff --git")]
    assert "layer4/server.go:213" in header and "https://github.com/golang/go/pull/60823" in header
    # git apply reads the header as commentary only if no line of it looks like a diff.
    assert not re.search(r"^(---|\+\+\+|@@) ", header, re.M)
    touched = re.findall(r"^diff --git a/(\S+) b/\S+$", text, re.M)
    assert touched == ["layer4/connection.go", "layer4/connection_remoteaddr_test.go"]
