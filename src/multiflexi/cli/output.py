"""Rendering of results as text (records and tables) or JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

FORMATS = ("text", "json")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_default)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, default=_default)
    return str(value)


def render_record(record: Mapping[str, Any]) -> str:
    width = max((len(str(k)) for k in record), default=0)
    return "\n".join(f"{str(k).ljust(width)}  {_cell(v)}" for k, v in record.items())


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "No data"
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    cols = list(columns or rows[0].keys())
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    buf = StringIO()
    Console(file=buf, width=200, no_color=True, highlight=False, soft_wrap=False).print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def localize(data: Any, tz: str) -> Any:
    """Datetimes converted to the configured timezone, for reading by people."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)

    def conv(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(zone) if value.tzinfo else value
        if isinstance(value, Mapping):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list):
            return [conv(v) for v in value]
        return value

    return conv(data)


def emit(
    data: Any,
    fmt: str,
    *,
    text: str | None = None,
    columns: Sequence[str] | None = None,
    tz: str | None = None,
) -> None:
    """Print ``data`` as JSON, or as ``text`` / a record / a table in text mode.

    JSON keeps times in UTC (ISO 8601); text shows them in ``tz`` when given.
    """
    if fmt != "json" and tz:
        data = localize(data, tz)
    if fmt == "json":
        out = to_json(data)
    elif text is not None:
        out = text
    elif isinstance(data, Mapping):
        out = render_record(data)
    elif isinstance(data, Sequence) and not isinstance(data, str):
        out = render_table(list(data), columns)
    else:
        out = str(data)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
