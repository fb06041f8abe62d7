"""Parsing the times users type: ``now``, ``+10m``, ``2026-12-01 08:00``, ISO 8601."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from multiflexi.errors import Invalid

_RELATIVE = re.compile(r"^\+?(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, tz: str = "UTC", now: datetime | None = None) -> datetime:
    """An aware UTC datetime; naive input is read in the configured timezone ``tz``."""
    moment = now or datetime.now(UTC)
    raw = text.strip()
    if raw.lower() in {"", "now"}:
        return moment
    match = _RELATIVE.match(raw.lower())
    if match:
        return moment + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(
            f"cannot read time {text!r}; use now, +10m, +2h, +1d or YYYY-MM-DD HH:MM[:SS]"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(tz))
    return parsed.astimezone(UTC)


def parse_since(text: str, tz: str = "UTC", now: datetime | None = None) -> datetime:
    """Like :func:`parse_when`, but ``30d`` / ``2h`` mean that long ago."""
    moment = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip().lower().lstrip("-"))
    if match and not text.strip().startswith("+"):
        return moment - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return parse_when(text, tz, moment)
