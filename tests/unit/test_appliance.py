"""The appliance image rule: TOIL_APPLIANCE_SELF, else TOIL_DOCKER_REGISTRY/TOIL_DOCKER_NAME:Toil's dockerTag."""

from __future__ import annotations

import importlib.util
import re

import pytest

from shared.appliance import (
    PINNED_DEFAULTS,
    ApplianceImageError,
    ImageReference,
    appliance_image,
    parse_image_reference,
    toil_image_defaults,
)


@pytest.mark.parametrize(
    ("environ", "version", "expected"),
    [
        ({}, "0.1.0", "quay.io/ucsc_cgl/toil:0.1.0"),
        ({"TOIL_DOCKER_REGISTRY": "ghcr.io/me"}, "0.1.0", "ghcr.io/me/toil:0.1.0"),
        ({"TOIL_DOCKER_NAME": "toil-dev"}, "1.2.3", "quay.io/ucsc_cgl/toil-dev:1.2.3"),
        (
            {"TOIL_DOCKER_REGISTRY": "localhost:5000/", "TOIL_DOCKER_NAME": "shoal"},
            "2.0.0",
            "localhost:5000/shoal:2.0.0",
        ),
        ({}, "0.1.0+g1a2b3c", "quay.io/ucsc_cgl/toil:0.1.0-g1a2b3c"),
        # TOIL_APPLIANCE_SELF overrides everything, the other two included.
        (
            {"TOIL_APPLIANCE_SELF": "quay.io/me/app:7", "TOIL_DOCKER_REGISTRY": "x.io", "TOIL_DOCKER_NAME": "y"},
            "0.1.0",
            "quay.io/me/app:7",
        ),
        (
            {"TOIL_APPLIANCE_SELF": "123456789012.dkr.ecr.us-west-2.amazonaws.com/shoal/appliance:v1"},
            "0.1.0",
            "123456789012.dkr.ecr.us-west-2.amazonaws.com/shoal/appliance:v1",
        ),
        ({"TOIL_APPLIANCE_SELF": "ubuntu"}, "0.1.0", "ubuntu"),
        (
            {"TOIL_APPLIANCE_SELF": "ghcr.io/a/b@sha256:" + "a" * 64},
            "0.1.0",
            "ghcr.io/a/b@sha256:" + "a" * 64,
        ),
    ],
)
def test_the_rule_chooses_the_image(environ: dict[str, str], version: str, expected: str) -> None:
    # GIVEN an environment and the installed version
    # WHEN the image is chosen
    image = appliance_image(environ, version)
    # THEN it follows Toil's precedence
    assert image == expected


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"TOIL_APPLIANCE_SELF": ""}, "TOIL_APPLIANCE_SELF '' is not a valid image reference: it is empty"),
        ({"TOIL_APPLIANCE_SELF": "Quay.io/Me/App"}, "path component 'Me'"),
        ({"TOIL_APPLIANCE_SELF": "ghcr.io/me/app:"}, "tag ''"),
        ({"TOIL_APPLIANCE_SELF": "ghcr.io/me/app:-bad"}, "tag '-bad'"),
        ({"TOIL_APPLIANCE_SELF": "ghcr.io/me//app:1"}, "empty path component"),
        ({"TOIL_APPLIANCE_SELF": "ghcr.io/me/app:1 "}, "whitespace"),
        ({"TOIL_APPLIANCE_SELF": "ghcr.io/me/app$:1"}, "path component 'app$'"),
        ({"TOIL_APPLIANCE_SELF": "ghcr.io/me/app@sha256:xyz"}, "digest 'sha256:xyz'"),
        ({"TOIL_APPLIANCE_SELF": ":1"}, "the image name is empty"),
        ({"TOIL_APPLIANCE_SELF": "bad_host.io/me/app:1"}, "registry host 'bad_host.io'"),
        ({"TOIL_DOCKER_NAME": ""}, "TOIL_DOCKER_NAME is set but empty"),
        ({"TOIL_DOCKER_REGISTRY": ""}, "TOIL_DOCKER_REGISTRY is set but empty"),
        ({"TOIL_DOCKER_NAME": "app:1"}, "without a tag or digest"),
        ({"TOIL_DOCKER_NAME": "App"}, "TOIL_DOCKER_REGISTRY/TOIL_DOCKER_NAME 'quay.io/ucsc_cgl/App:0.1.0'"),
    ],
)
def test_malformed_choices_fail_with_one_line_naming_the_variable(environ: dict[str, str], fragment: str) -> None:
    # GIVEN a malformed choice
    # WHEN the image is chosen
    with pytest.raises(ApplianceImageError) as raised:
        appliance_image(environ, "0.1.0")
    # THEN the one-line message names the variable and what is wrong
    message = str(raised.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(raised.value, ValueError)


def test_a_version_that_cannot_be_a_tag_is_reported() -> None:
    with pytest.raises(ApplianceImageError, match=re.escape("Toil version '0.1.0!x'")):
        appliance_image({}, "0.1.0!x")


def test_a_reference_parses_into_its_parts() -> None:
    # GIVEN a private registry with a port, a nested path, a tag and a digest
    digest = "sha256:" + "0" * 64
    reference = f"registry.example.com:5000/team/tools/app:1.0@{digest}"
    # WHEN it is parsed
    parsed = parse_image_reference(reference)
    # THEN each part is where Docker would put it, and it prints back unchanged
    assert parsed == ImageReference(domain="registry.example.com:5000", path="team/tools/app", tag="1.0", digest=digest)
    assert str(parsed) == reference


def test_docker_hub_names_have_no_domain() -> None:
    assert parse_image_reference("library/python:3.12").domain is None
    assert parse_image_reference("localhost/app").domain == "localhost"


# ---- the same image Toil picks -----------------------------------------------------------------------

TOIL_VARIABLES = ("TOIL_APPLIANCE_SELF", "TOIL_DOCKER_REGISTRY", "TOIL_DOCKER_NAME")


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"TOIL_DOCKER_REGISTRY": "ghcr.io/me"},
        {"TOIL_DOCKER_NAME": "toil-gpu"},
        {"TOIL_DOCKER_REGISTRY": "localhost:5000", "TOIL_DOCKER_NAME": "toil"},
        {"TOIL_APPLIANCE_SELF": "quay.io/me/app:7", "TOIL_DOCKER_REGISTRY": "x.io"},
    ],
)
def test_the_image_is_the_one_toil_itself_picks(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the installed Toil and an environment of Toil's variables
    toil = pytest.importorskip("toil")
    for name in TOIL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    # WHEN Shoal and Toil each choose the appliance (Toil without asking the registry)
    ours = appliance_image(environ)
    theirs = toil.applianceSelf(forceDockerAppliance=True)
    # THEN they are the same image
    assert ours == theirs


def test_the_defaults_come_from_the_installed_toil_and_match_the_pin() -> None:
    # GIVEN the installed Toil's version module
    version = pytest.importorskip("toil.version")
    # WHEN Shoal reads it without importing toil
    defaults = toil_image_defaults()
    # THEN registry, name and tag are Toil's, and the pin (used without Toil) is the installed 9.6.0's tag
    assert (defaults.registry, defaults.name, defaults.tag) == (
        version.dockerRegistry,
        version.dockerName,
        version.dockerTag,
    )
    assert defaults.source == f"installed Toil {version.distVersion}"
    if version.distVersion == PINNED_DEFAULTS.tag.split("-")[0]:
        assert version.dockerTag == PINNED_DEFAULTS.tag


def test_without_toil_the_pinned_tag_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no Toil on the path
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    # WHEN the defaults are read
    defaults = toil_image_defaults()
    # THEN they are the pinned Toil's, and say so
    assert defaults is PINNED_DEFAULTS
    assert "not installed" in defaults.source
    assert appliance_image({}) == f"quay.io/ucsc_cgl/toil:{PINNED_DEFAULTS.tag}"
