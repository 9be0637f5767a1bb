"""The appliance image rule: TOIL_APPLIANCE_SELF, else TOIL_DOCKER_REGISTRY/TOIL_DOCKER_NAME:version."""

from __future__ import annotations

import re

import pytest

from shared.appliance import (
    ApplianceImageError,
    ImageReference,
    appliance_image,
    parse_image_reference,
)


@pytest.mark.parametrize(
    ("environ", "version", "expected"),
    [
        ({}, "0.1.0", "ghcr.io/shoal-project/shoal-appliance:0.1.0"),
        ({"TOIL_DOCKER_REGISTRY": "quay.io/ucsc_cgl"}, "0.1.0", "quay.io/ucsc_cgl/shoal-appliance:0.1.0"),
        ({"TOIL_DOCKER_NAME": "toil"}, "1.2.3", "ghcr.io/shoal-project/toil:1.2.3"),
        (
            {"TOIL_DOCKER_REGISTRY": "localhost:5000/", "TOIL_DOCKER_NAME": "shoal"},
            "2.0.0",
            "localhost:5000/shoal:2.0.0",
        ),
        ({}, "0.1.0+g1a2b3c", "ghcr.io/shoal-project/shoal-appliance:0.1.0-g1a2b3c"),
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
        ({"TOIL_DOCKER_NAME": "App"}, "TOIL_DOCKER_REGISTRY/TOIL_DOCKER_NAME 'ghcr.io/shoal-project/App:0.1.0'"),
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
    with pytest.raises(ApplianceImageError, match=re.escape("installed version '0.1.0!x'")):
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
