"""The Python versions an Environment runs, and everything that follows from a version: its
Fission images (settings ``PYTHON_RUNTIME_IMAGES``, ``PYTHON_BUILDER_IMAGES``) and the portal's
own interpreter of it (``PYTHON_RUNTIMES_DIR``, built by ``make setup``), which builds and the
syntax check run. The one home of these names: the model, the API, the forms and the manifests
read them here.

An environment's image follows its version unless the tenant chose another one: ``follow`` is
that rule (see it), applied by the environment services.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import RegexValidator

VERSIONS = ("3.11", "3.12", "3.13")
DEFAULT_VERSION = "3.13"  # as Fission's python-env image
CHOICES = [(version, f"Python {version}") for version in VERSIONS]

# A container image reference as Kubernetes takes it (registry/path:tag or @digest): no spaces,
# no control characters, nothing a shell or a YAML reader would trip on.
IMAGE_RE = r"^[A-Za-z0-9][A-Za-z0-9._\-/:@]{0,254}$"
image_validator = RegexValidator(
    IMAGE_RE, "Use an image reference such as registry.example/python-env-3.12:1.35 (no spaces)."
)


def image(version: str) -> str:
    """Fission's runtime image for ``version`` (KeyError for a version not in VERSIONS)."""
    return str(settings.PYTHON_RUNTIME_IMAGES[_known(version)])


def builder_image(version: str) -> str:
    """Fission's builder image for ``version``."""
    return str(settings.PYTHON_BUILDER_IMAGES[_known(version)])


def default_image() -> str:
    """The model's default (a callable, so the setting is read when an environment is made)."""
    return image(DEFAULT_VERSION)


def default_builder_image() -> str:
    return builder_image(DEFAULT_VERSION)


def interpreter(version: str) -> Path:
    """The python of the runtime virtualenv of ``version``, with the packages of Fission's image.
    It may be missing (``make setup`` skips an interpreter the machine lacks): callers check."""
    return Path(settings.PYTHON_RUNTIMES_DIR) / f"python{_known(version)}" / "bin" / "python"


def follow(current: str, version: str, *, builder: bool = False) -> str:
    """The image an environment of ``version`` gets for ``current`` (its stored or given image).

    "" or one of the portal's images (of any version) is not a choice of the tenant but the stock
    image: it becomes the stock image of ``version``, so a version change carries it along (also a
    client that reads an environment, changes its version and writes it all back). Any other
    image is the tenant's own and is kept as it is. For a builder, "" means "no builder" and stays.
    """
    stock = settings.PYTHON_BUILDER_IMAGES if builder else settings.PYTHON_RUNTIME_IMAGES
    if builder and current == "":
        return ""
    if current == "" or current in stock.values():
        return builder_image(version) if builder else image(version)
    return current


def _known(version: str) -> str:
    if version not in VERSIONS:
        raise KeyError(f"Python {version} is not one of {', '.join(VERSIONS)}")
    return version
