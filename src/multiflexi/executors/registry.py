"""Executors by name, as ``runtemplate.executor`` and ``job.executor`` spell them."""

from __future__ import annotations

from collections.abc import Callable

from multiflexi.errors import Invalid
from multiflexi.executors.base import Executor
from multiflexi.executors.native import NativeExecutor

#: Canonical name -> factory. Container executors (Docker, Podman, ...) will join here.
_FACTORIES: dict[str, Callable[[], Executor]] = {
    NativeExecutor.name: NativeExecutor,
}


def available() -> list[str]:
    """The names of the executors this installation can use, canonically spelled."""
    return sorted(_FACTORIES)


def get_executor(name: str) -> Executor:
    """A fresh executor for ``name`` (case-insensitive).

    Raises :class:`~multiflexi.errors.Invalid` naming the available executors when
    ``name`` is unknown.
    """
    wanted = name.strip().casefold()
    for canonical, factory in _FACTORIES.items():
        if canonical.casefold() == wanted:
            return factory()
    raise Invalid(f"unknown executor {name!r}; available: {', '.join(available())}")
