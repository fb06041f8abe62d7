"""Which actions exist: the ``multiflexi.actions`` entry points, then the built-ins.

A plugin package declares ``[project.entry-points."multiflexi.actions"] Name =
"package.module:Class"``. The built-in actions are declared the same way in MultiFlexi's
own ``pyproject.toml``, and :data:`BUILTIN` names them again so that they work even in
a checkout whose package metadata was not reinstalled. Names match case-insensitively,
and aliases (``ChainRuntemplate`` for ``LaunchJob``) are accepted.
"""

from __future__ import annotations

import importlib
import logging
from functools import lru_cache

from multiflexi.actions.base import Action
from multiflexi.errors import NotFound

log = logging.getLogger("multiflexi.actions")

GROUP = "multiflexi.actions"

#: name -> "module:Class" of the actions shipped with MultiFlexi.
BUILTIN: dict[str, str] = {
    "Zabbix": "multiflexi.actions.zabbix:ZabbixAction",
    "WebHook": "multiflexi.actions.webhook:WebHook",
    "LaunchJob": "multiflexi.actions.launch_job:LaunchJob",
    "Reschedule": "multiflexi.actions.reschedule:Reschedule",
    "Stop": "multiflexi.actions.stop:Stop",
    "CustomCommand": "multiflexi.actions.custom_command:CustomCommand",
    "GitHub": "multiflexi.actions.issue_trackers:GitHub",
    "Redmine": "multiflexi.actions.issue_trackers:Redmine",
}


def _load(path: str) -> type[Action]:
    module, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Action)):
        raise TypeError(f"{path} is not an Action class")
    return cls


@lru_cache(maxsize=1)
def available() -> dict[str, type[Action]]:
    """Canonical name -> class of every action that can be loaded, sorted by name.

    A plugin that fails to load is logged and skipped; it never hides the others.
    """
    from importlib.metadata import entry_points

    found: dict[str, type[Action]] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Action)):
                raise TypeError(f"{ep.value} is not an Action class")
        except Exception as exc:
            log.warning("action=load_action name=%s error=%s", ep.name, exc)
            continue
        found[cls.name or ep.name] = cls
    for name, path in BUILTIN.items():
        if name not in found:
            found[name] = _load(path)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def reset() -> None:
    """Forget what was discovered (tests, or after installing a plugin in-process)."""
    available.cache_clear()


def get_action(name: str) -> type[Action]:
    """The action called ``name`` (or one of its aliases), case-insensitively."""
    wanted = name.strip().lower()
    actions = available()
    for canonical, cls in actions.items():
        if canonical.lower() == wanted or wanted in (a.lower() for a in cls.aliases):
            return cls
    raise NotFound(f"unknown action {name!r}; available: {', '.join(actions)}")
