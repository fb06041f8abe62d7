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


def describe_executors(mechanism: str = "auto") -> list[dict[str, object]]:
    """Each executor, whether it can run jobs on this host (and why not), and how it would
    enforce resource limits here. An executor may say it is unusable with a method
    ``unusable() -> str | None`` (the reason; None: usable)."""
    from multiflexi.executors.limits import limits_here

    limits, why = limits_here(mechanism)
    rows: list[dict[str, object]] = []
    for name in available():
        executor = get_executor(name)
        check = getattr(executor, "unusable", None)
        reason = check() if callable(check) else None
        rows.append(
            {
                "name": name,
                "usable": reason is None,
                "reason": reason or "",
                "limits_mechanism": limits if name == NativeExecutor.name else "",
                "limits_note": why if name == NativeExecutor.name else "",
            }
        )
    return rows
