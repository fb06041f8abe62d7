"""Rendering of results as text (records and tables) or JSON."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

FORMATS = ("text", "json")

#: Console width of rendered tables; a wider table is wrapped by rich.
TABLE_WIDTH = 200
#: rich's emoji code pattern (rich/_emoji_replace.py): ``:name:`` becomes an emoji.
_EMOJI_CODE = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, ensure_ascii=False, default=_default)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, Mapping | list):
        import json

        return json.dumps(value, ensure_ascii=False, default=_default)
    return str(value)


def render_record(record: Mapping[str, Any]) -> str:
    width = max((len(str(k)) for k in record), default=0)
    return "\n".join(f"{str(k).ljust(width)}  {_cell(v)}" for k, v in record.items())


def shadows_text(shadowed: Sequence[Mapping[str, Any]]) -> str:
    """What a variable's value shadows, for a table cell: ``company:2=x; app:1 default=y``."""
    return "; ".join(f"{s['source']}={s['value']}" for s in shadowed)


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    width: int = TABLE_WIDTH,
) -> str:
    """Rows as a table at most ``width`` columns wide (wider cells are wrapped)."""
    if not rows:
        return "No data"
    cols = list(columns or rows[0].keys())
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    plain = _plain_table(cols, cells, width)
    return plain if plain is not None else _rich_table(cols, cells, width)


def _rich_table(
    cols: Sequence[Any], cells: Sequence[Sequence[str]], width: int = TABLE_WIDTH
) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in cells:
        table.add_row(*row)
    buf = StringIO()
    Console(file=buf, width=width, no_color=True, highlight=False, soft_wrap=False).print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def _plain_width(text: str) -> int | None:
    """The cells ``text`` takes when rich prints it as it is, on one line; None when rich
    would change it (markup, an emoji code, a line break, a tab, a control character, a
    character of no width)."""
    if not text.isprintable() or "[" in text:
        return None
    if ":" in text:
        for match in _EMOJI_CODE.finditer(text):
            name = match.group(2).lower()
            if name.isdigit() and name not in ("100", "1234"):
                continue  # the minutes of a time; the only all-digit emoji names are these
            from rich._emoji_codes import EMOJI

            if name in EMOJI:
                return None
    if text.isascii():
        return len(text)
    from rich.cells import get_character_cell_size

    size = 0
    for char in text:
        width = get_character_cell_size(char)
        if width == 0:  # a combining mark or a variation selector: rich may drop it
            return None
        size += width
    return size


def _plain_table(
    cols: Sequence[Any], cells: Sequence[Sequence[str]], width: int = TABLE_WIDTH
) -> str | None:
    """The table exactly as :func:`_rich_table` prints it, without importing rich, when every
    cell is printed as it is and the table fits :data:`TABLE_WIDTH`; else None.

    rich takes 0.1 s to import and render 50 rows; ``job:list`` has 0.2 s in all.
    Columns are as wide as their widest cell and two spaces apart (``box=None``,
    ``pad_edge=False``); cells are left-justified.
    """
    if not cols or not all(isinstance(c, str) for c in cols):
        return None
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"):
        return None  # rich then writes as to a terminal: a bold header, even into a pipe
    grid: list[Sequence[str]] = [cols, *cells]
    sizes: list[list[int]] = []
    for row in grid:
        measured = []
        for text in row:
            size = _plain_width(text)
            if size is None:
                return None
            measured.append(size)
        sizes.append(measured)
    last = len(cols) - 1
    widths = [max(row[i] for row in sizes) for i in range(len(cols))]
    padding = [(i > 0) + (i < last) for i in range(len(cols))]
    if sum(max(w + p, 1) for w, p in zip(widths, padding, strict=True)) > width:
        return None
    lines = []
    for row, measured in zip(grid, sizes, strict=True):
        parts = []
        for i, text in enumerate(row):
            parts.append(" " * (i > 0) + text + " " * (widths[i] - measured[i] + (i < last)))
        lines.append("".join(parts).rstrip())
    return "\n".join(lines)


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
    width: int = TABLE_WIDTH,
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
        out = render_table(list(data), columns, width)
    else:
        out = str(data)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()


# -- values as people read them ------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    """``0.094`` -> ``0.09 s``, ``75`` -> ``1 min 15 s``, ``7260`` -> ``2 h 01 min``."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def age(when: datetime | None, now: datetime) -> str:
    """How long ago (or how soon) ``when`` is: ``3 min ago``, ``in 2 h``, ``just now``."""
    if when is None:
        return ""
    delta = (now - when).total_seconds()
    ahead = delta < 0
    delta = abs(delta)
    if delta < 5:
        return "just now"
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h")):
        if delta < limit:
            text = f"{int(delta // size)} {unit}"
            break
    else:
        text = f"{int(delta // 86400)} d"
    return f"in {text}" if ahead else f"{text} ago"


def when_text(when: datetime | None, now: datetime) -> str:
    """A local time to the minute, with its age beside it: ``2026-12-07 23:43 (3 min ago)``."""
    if when is None:
        return ""
    return f"{when:%Y-%m-%d %H:%M} ({age(when, now)})"


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)].rstrip() + "…"


def rounded(value: Any, digits: int = 3) -> Any:
    """Floats rounded for display (``0.049264999999999996`` -> ``0.049``)."""
    return round(value, digits) if isinstance(value, float) else value


def reason_text(reason: str | None, exitcode: int | None) -> str:
    """A job's reason without the ``exit code N:`` that its exit code already says."""
    text = (reason or "").strip()
    if exitcode is not None:
        prefix = f"exit code {exitcode}"
        if text == prefix:
            return ""
        if text.startswith(prefix + ":"):
            return text[len(prefix) + 1 :].strip()
    return text
