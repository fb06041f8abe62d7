"""Job events for integrations (Zabbix, metrics, actions), so the core imports none of them.

A hook is any object with some of the methods of :class:`JobHook`. Hooks are found in
:data:`BUILTIN` (import paths of factories that are always tried: the action runner and
the Zabbix reporter), through the ``multiflexi.hooks`` entry-point group and by
:func:`register`. A factory may return None to stay off (Zabbix without ZABBIX_SERVER).
A failing hook is logged once per call and never changes a job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.hooks")


@dataclass
class JobEvent:
    """What a hook learns about a job at one phase."""

    phase: str  # created | started | finished
    job_id: int
    db: Database
    settings: Settings
    data: dict[str, Any] = field(default_factory=dict)


class JobHook(Protocol):
    def job_created(self, event: JobEvent) -> None: ...
    def job_started(self, event: JobEvent) -> None: ...
    def job_finished(self, event: JobEvent) -> None: ...


_registered: list[Callable[[Settings], Any]] = []

#: "module:factory" of the hooks MultiFlexi always tries, imported only when needed.
BUILTIN: tuple[str, ...] = (
    "multiflexi.monitoring.zabbix:hook_factory",
    "multiflexi.actions.runner:hook_factory",
)


def _import(path: str) -> Callable[[Settings], Any]:
    import importlib

    module, _, attr = path.partition(":")
    factory: Callable[[Settings], Any] = getattr(importlib.import_module(module), attr)
    return factory


def register(factory: Callable[[Settings], Any]) -> None:
    """Add a hook factory, called with the settings; it may return None to stay off."""
    if factory not in _registered:
        _registered.append(factory)


_Factories = list[Callable[["Settings"], Any]]
#: (the entry_points function used, built-in factories, plugin factories).
_installed: tuple[object, _Factories, _Factories] | None = None


def _installed_factories() -> tuple[_Factories, _Factories]:
    """The built-in factories and those of the ``multiflexi.hooks`` entry points, found
    once per process: scanning the installed packages' entry points took longer than the
    rest of creating a job (a plugin installed later needs a restart, as with any import).
    Found again if ``importlib.metadata.entry_points`` is replaced (tests do)."""
    global _installed
    import importlib.metadata

    scan = importlib.metadata.entry_points
    if _installed is None or _installed[0] is not scan:
        builtin: _Factories = []
        plugins: _Factories = []
        for path in BUILTIN:
            try:
                builtin.append(_import(path))
            except Exception as exc:
                log.warning("action=load_hook hook=%s error=%s", path, exc)
        for ep in scan(group="multiflexi.hooks"):
            try:
                plugins.append(ep.load())
            except Exception as exc:
                log.warning("action=load_hook hook=%s error=%s", ep.name, exc)
        _installed = (scan, builtin, plugins)
    return _installed[1], _installed[2]


def load_hooks(settings: Settings) -> list[Any]:
    builtin, plugins = _installed_factories()
    factories = list(builtin)
    factories.extend(f for f in _registered if f not in factories)
    factories.extend(f for f in plugins if f not in factories)
    hooks = []
    for factory in factories:
        try:
            hook = factory(settings)
        except Exception as exc:
            log.warning("action=init_hook hook=%s error=%s", factory, exc)
            continue
        if hook is not None:
            hooks.append(hook)
    return hooks


def watch(hooks: list[Any], phase: str) -> bool:
    """Whether one of ``hooks`` has a method for ``phase`` (``created``...)."""
    return any(hasattr(hook, f"job_{phase}") for hook in hooks)


def emit(hooks: list[Any], event: JobEvent) -> None:
    method = f"job_{event.phase}"
    for hook in hooks:
        fn = getattr(hook, method, None)
        if fn is None:
            continue
        try:
            fn(event)
        except Exception as exc:
            log.warning(
                "action=hook hook=%s phase=%s job_id=%s error=%s",
                type(hook).__name__,
                event.phase,
                event.job_id,
                exc,
            )
