"""How an update's confirmation tells what changed: ``enabled true -> false``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def shown(value: Any) -> str:
    """A value as a confirmation shows it: booleans as the CLI takes them, text quoted."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def describe(before: Mapping[str, Any], after: Mapping[str, Any], keys: Iterable[str]) -> str:
    """``key old -> new`` for each changed key; a stored value (``config:KEY``) is named
    only: it may be a secret."""
    parts = []
    for key in keys:
        if key.startswith("config:"):
            parts.append(f"{key} set")
        else:
            parts.append(f"{key} {shown(before.get(key))} -> {shown(after.get(key))}")
    return ", ".join(parts)


def holds_note(noun: str, enabled_now: bool, held: int, free: int) -> str:
    """What the change did to the waiting jobs (empty when there are none)."""
    if not enabled_now and held:
        return f"; {held} waiting job(s) held until the {noun} is enabled again"
    if enabled_now and free:
        return f"; {free} waiting job(s) may run again"
    return ""
