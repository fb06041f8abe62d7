"""One answer, four renderings: the ``.{suffix}`` of upstream's paths (json, yaml, xml, html).

A view computes plain data (dicts, lists, numbers, strings, datetimes); :func:`render`
turns it into the response the suffix asks for.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal
from xml.sax.saxutils import escape

from starlette.responses import Response

Suffix = Literal["json", "yaml", "xml", "html"]
SUFFIXES = ("json", "yaml", "xml", "html")
MEDIA = {
    "json": "application/json",
    "yaml": "text/yaml; charset=utf-8",
    "xml": "application/xml",
    "html": "text/html; charset=utf-8",
}


def plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601 (UTC), mappings with string keys."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def to_json(data: Any) -> bytes:
    return json.dumps(plain(data), ensure_ascii=False, separators=(",", ":")).encode()


def _xml(value: Any, tag: str) -> str:
    tag = tag if tag[:1].isalpha() and tag.replace("_", "").isalnum() else "item"
    if isinstance(value, Mapping):
        inner = "".join(_xml(v, str(k)) for k, v in value.items())
    elif isinstance(value, list):
        inner = "".join(_xml(v, "item") for v in value)
    elif value is None:
        return f"<{tag}/>"
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(str(value))
    return f"<{tag}>{inner}</{tag}>"


def _cell(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return html.escape(json.dumps(value, ensure_ascii=False))
    return html.escape("" if value is None else str(value))


def _html(data: Any, title: str) -> str:
    rows: Sequence[Any]
    if isinstance(data, Mapping) and data and all(isinstance(v, Mapping) for v in data.values()):
        rows = list(data.values())
    elif isinstance(data, list):
        rows = data
    elif isinstance(data, Mapping):
        rows = [{"key": k, "value": v} for k, v in data.items()]
    else:
        rows = [{"value": data}]
    columns: list[str] = []
    for row in rows:
        for key in row if isinstance(row, Mapping) else ["value"]:
            if key not in columns:
                columns.append(str(key))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_cell(row.get(c) if isinstance(row, Mapping) else row)}</td>" for c in columns
        )
        + "</tr>"
        for row in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;text-align:left;vertical-align:top}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></body></html>"
    )


def render(data: Any, suffix: str, *, title: str = "MultiFlexi", status: int = 200) -> Response:
    """The response for ``data`` in the format the suffix names."""
    if suffix == "yaml":
        import yaml

        text = yaml.safe_dump(plain(data), allow_unicode=True, sort_keys=False)
        return Response(text.encode(), status, media_type=MEDIA["yaml"])
    if suffix == "xml":
        body = '<?xml version="1.0" encoding="UTF-8"?>' + _xml(plain(data), "root")
        return Response(body.encode(), status, media_type=MEDIA["xml"])
    if suffix == "html":
        return Response(_html(plain(data), title).encode(), status, media_type=MEDIA["html"])
    return Response(to_json(data), status, media_type=MEDIA["json"])
