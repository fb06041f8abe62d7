"""A run template's resource limits: its own, its application's defaults, the global
defaults of the configuration; the most specific wins (docs/executor.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multiflexi.errors import Invalid
from multiflexi.executors.limits import NAMES, LimitError, Limits, app_defaults, explain, resolve

if TYPE_CHECKING:
    from multiflexi.storage.models import App, RunTemplate


def app_limits(app: App) -> Mapping[str, Any]:
    """The ``limits`` object of the application's definition (kept with its extra keys);
    empty when it has none or it is not valid (import refuses those)."""
    keys = (app.extra or {}).get("keys") or {}
    try:
        return app_defaults(keys.get("limits"))
    except LimitError:
        return {}


def layers(
    defaults: Mapping[str, Any], app: Mapping[str, Any], rt: Any
) -> list[tuple[str, Mapping[str, Any]]]:
    """The three layers, least specific first: global defaults, the application's
    (:func:`app_limits`), the run template's own columns (``rt`` may be None)."""
    own = {name: getattr(rt, name) for name in NAMES} if rt is not None else {}
    return [("global", defaults), ("application", app), ("runtemplate", own)]


def job_limits(
    defaults: Mapping[str, Any],
    app: Mapping[str, Any],
    rt: Any,
    *,
    mechanism: str,
    job_id: int,
) -> Limits | None:
    """The limits a job of ``rt`` runs with; None when it has none."""
    try:
        limits = resolve(
            (layer for _, layer in layers(defaults, app, rt)),
            mechanism=mechanism,
            label=f"job-{job_id}",
        )
    except LimitError as exc:
        raise Invalid(f"resource limits: {exc}") from None
    return limits if limits.any() else None


def describe_limits(defaults: Mapping[str, Any], app: App, rt: RunTemplate) -> list[dict[str, Any]]:
    """Each limit with its effective value and its source, for ``runtemplate:show``."""
    try:
        return explain(layers(defaults, app_limits(app), rt))
    except LimitError as exc:
        raise Invalid(f"resource limits: {exc}") from None
