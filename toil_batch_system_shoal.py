"""Toil's plugin loader imports every top-level ``toil_batch_system_*`` module: this one registers ``shoal``.

Cheap on purpose (every Toil run imports it): the batch system itself (``shared.toil.batch_system``) is
imported only when Toil asks for the class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.toil.batch_system import ShoalBatchSystem


def shoal_batch_system_factory() -> type[ShoalBatchSystem]:
    from shared.toil.batch_system import ShoalBatchSystem  # noqa: PLC0415 - on demand: keep this import cheap

    return ShoalBatchSystem


def __getattr__(name: str) -> Any:
    """``toil_batch_system_shoal.ShoalBatchSystem``, imported on first use."""
    if name == "ShoalBatchSystem":
        return shoal_batch_system_factory()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    from toil.batchSystems.registry import add_batch_system_factory
except ImportError:  # Toil is not installed: nothing to register with
    pass
else:
    add_batch_system_factory("shoal", shoal_batch_system_factory)
