"""Which appliance image a cluster's workers run: Toil's rule, in one place for the CLI, the stack and the worker.

Exactly ``toil.applianceSelf()`` (Toil 9.6.0, ``toil/__init__.py``): ``TOIL_APPLIANCE_SELF`` names the image
and overrides everything; otherwise the image is ``{TOIL_DOCKER_REGISTRY}/{TOIL_DOCKER_NAME}:{dockerTag}``
with Toil's own defaults (``quay.io/ucsc_cgl``, ``toil``) and the installed Toil's ``toil.version.dockerTag``
(``9.6.0-<commit>-py3.10`` for the 9.6.0 wheel). So workers run the image the Toil team publishes for the
Toil the leader runs: nothing of ours to build or push. Without Toil installed (Toil is an optional extra),
the tag is that of the Toil pinned in ``pyproject.toml`` (``PINNED_TOIL_DOCKER_TAG``), and ``toil_docker_tag``
says so. Toil's version module is read from its file without importing ``toil`` (whose import is slow).

Stricter than Toil, where Toil would only fail at ``docker pull`` on every worker: a variable that is set
but empty is a mistake, not a request for the default, and every reference is checked against Docker's
grammar here, so a typo fails at ``cdk synth`` with one line naming the variable.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APPLIANCE_SELF = "TOIL_APPLIANCE_SELF"
DOCKER_REGISTRY = "TOIL_DOCKER_REGISTRY"
DOCKER_NAME = "TOIL_DOCKER_NAME"
DEFAULT_REGISTRY = "quay.io/ucsc_cgl"  # toil.version.dockerRegistry
DEFAULT_NAME = "toil"  # toil.version.dockerName
# toil.version.dockerTag of the Toil pinned in pyproject.toml's `toil` extra (toil==9.6.0): the tag used when
# Toil is not installed. tests/unit/test_appliance.py checks it against the installed Toil.
PINNED_TOIL_VERSION = "9.6.0"
PINNED_TOIL_DOCKER_TAG = "9.6.0-6793fc7f112785e13a229691d6de23225e73339e-py3.10"
EXAMPLE = f"{DEFAULT_REGISTRY}/{DEFAULT_NAME}:{PINNED_TOIL_DOCKER_TAG}"

# Docker's reference grammar (distribution/reference), without IPv6 literals.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_NAME_MAX = 255


class ApplianceImageError(ValueError):
    """The appliance image cannot be used; the message names the variable and what is wrong, on one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageReference:
    """A parsed image reference: ``[domain/]path[:tag][@digest]``."""

    domain: str | None  # e.g. "ghcr.io", "123456789012.dkr.ecr.us-west-2.amazonaws.com"; None: Docker Hub
    path: str  # e.g. "ucsc_cgl/toil"
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        name = f"{self.domain}/{self.path}" if self.domain else self.path
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{name}{tag}{digest}"


def parse_image_reference(reference: str, *, source: str = "image") -> ImageReference:
    """``reference`` parsed, or ``ApplianceImageError`` naming ``source`` (the variable it came from)."""

    def bad(why: str) -> ApplianceImageError:
        return ApplianceImageError(
            f"{source} {reference!r} is not a valid image reference: {why}; expected e.g. {EXAMPLE}"
        )

    if not reference:
        raise bad("it is empty")
    if reference != reference.strip() or any(c.isspace() for c in reference):
        raise bad("it contains whitespace")
    rest, _, digest = reference.partition("@")
    if "@" in reference and not _DIGEST.match(digest):
        raise bad(f"digest {digest!r} is not like sha256:<64 hex digits>")
    name, tag = rest, None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:  # a colon after the last slash starts the tag (before it, it is a registry port)
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise bad(f"tag {tag!r} must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
    if not name:
        raise bad("the image name is empty")
    if len(name) > _NAME_MAX:
        raise bad(f"the name is longer than {_NAME_MAX} characters")
    components = name.split("/")
    domain = None
    first = components[0]
    if len(components) > 1 and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain = first
        components = components[1:]
        if not _DOMAIN.match(domain):
            raise bad(f"registry host {domain!r} is not a valid host[:port]")
    for component in components:
        if not component:
            raise bad("the name has an empty path component (a doubled or trailing '/')")
        if not _PATH_COMPONENT.match(component):
            raise bad(
                f"path component {component!r} must be lowercase letters and digits separated by '.', '_', '__' or '-'"
            )
    return ImageReference(domain=domain, path="/".join(components), tag=tag, digest=digest or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToilImageDefaults:
    """What ``toil.version`` says about the appliance: registry, name and tag, and where that came from."""

    registry: str
    name: str
    tag: str
    source: str  # "installed Toil 9.6.0" or "pinned Toil 9.6.0 (Toil is not installed)"


PINNED_DEFAULTS = ToilImageDefaults(
    registry=DEFAULT_REGISTRY,
    name=DEFAULT_NAME,
    tag=PINNED_TOIL_DOCKER_TAG,
    source=f"pinned Toil {PINNED_TOIL_VERSION} (Toil is not installed)",
)


def toil_image_defaults() -> ToilImageDefaults:
    """The installed Toil's ``dockerRegistry``, ``dockerName`` and ``dockerTag``, else the pinned Toil's."""
    spec = importlib.util.find_spec("toil")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return PINNED_DEFAULTS
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    namespace: dict[str, object] = {}
    try:
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)  # constants only
    except (OSError, SyntaxError):
        return PINNED_DEFAULTS
    registry, name, tag = (namespace.get(k) for k in ("dockerRegistry", "dockerName", "dockerTag"))
    if not all(isinstance(v, str) and v for v in (registry, name, tag)):
        return PINNED_DEFAULTS
    return ToilImageDefaults(
        registry=str(registry), name=str(name), tag=str(tag), source=f"installed Toil {namespace.get('distVersion')}"
    )


def version_tag(version: str) -> str:
    """A version as an image tag: PEP 440 local versions (``0.1.0+g1234``) use ``-`` for ``+``."""
    return version.replace("+", "-")


def appliance_image(
    environ: Mapping[str, str], tag: str | None = None, *, defaults: ToilImageDefaults | None = None
) -> str:
    """The appliance image workers run, by Toil's rule; ``ApplianceImageError`` if it is malformed.

    ``tag`` replaces Toil's ``dockerTag`` (tests, and images of a Toil other than the installed one);
    ``defaults`` default to the installed Toil's (``toil_image_defaults``).
    """
    toil = toil_image_defaults() if defaults is None else defaults
    if APPLIANCE_SELF in environ:
        return str(parse_image_reference(environ[APPLIANCE_SELF], source=APPLIANCE_SELF))
    registry = environ.get(DOCKER_REGISTRY, toil.registry)
    name = environ.get(DOCKER_NAME, toil.name)
    source = f"{DOCKER_REGISTRY}/{DOCKER_NAME}"
    if not registry:
        raise ApplianceImageError(f"{DOCKER_REGISTRY} is set but empty; unset it for {DEFAULT_REGISTRY} or name one")
    if not name:
        raise ApplianceImageError(f"{DOCKER_NAME} is set but empty; unset it for {DEFAULT_NAME} or name one")
    if any(c in name for c in ":@"):
        raise ApplianceImageError(
            f"{DOCKER_NAME} {name!r} must be a name without a tag or digest (the tag is Toil's version); "
            f"set {APPLIANCE_SELF} to choose a full image"
        )
    chosen = version_tag(toil.tag if tag is None else tag)
    if not _TAG.match(chosen):
        raise ApplianceImageError(f"the Toil version {chosen!r} cannot be an image tag; set {APPLIANCE_SELF}")
    reference = f"{registry.rstrip('/')}/{name}:{chosen}"
    return str(parse_image_reference(reference, source=source))


def pull_through_image(image: str, *, upstream: str, registry: str, prefix: str) -> str | None:
    """``image`` as pulled through an ECR pull-through cache of ``upstream``; None if it is not on ``upstream``.

    ECR names the cached repository ``PREFIX/<the upstream path>``: ``quay.io/ucsc_cgl/toil:TAG`` becomes
    ``REGISTRY/PREFIX/ucsc_cgl/toil:TAG``. ``registry`` (``ACCOUNT.dkr.ecr.REGION.amazonaws.com``) may hold
    deploy-time tokens, so the result is built, not parsed.
    """
    reference = parse_image_reference(image)
    if reference.domain != upstream:
        return None
    cached = ImageReference(domain=None, path=f"{prefix}/{reference.path}", tag=reference.tag, digest=reference.digest)
    return f"{registry}/{cached}"
