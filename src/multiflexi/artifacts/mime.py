"""The MIME type of an artifact: libmagic first, the file name where libmagic is vague.

libmagic reads content, which is what we want for binaries, but it calls most structured
text ``text/plain`` (CSV, Markdown, YAML) or guesses a programming language from a
brace. A job that names its result ``invoice.isdoc`` or ``report.csv`` knows better, so
for those extensions the name decides whenever libmagic only says "some text" or "some
bytes". Content still wins for a real binary (a PDF named ``.txt`` stays a PDF).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePath

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
EMPTY = "application/x-empty"

#: Extensions whose name is more telling than libmagic's generic answers.
BY_EXTENSION: dict[str, str] = {
    ".json": "application/json",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".xml": "application/xml",
    ".isdoc": "application/xml",
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".pdf": "application/pdf",
}


def _is_vague(mime: str) -> bool:
    # Any text/* is a heuristic guess (text/x-c for a CSV with braces, text/xml for an
    # ISDOC); octet-stream means "no idea".
    return mime == OCTET_STREAM or mime.startswith("text/")


def _libmagic(path: Path | None, head: bytes | None) -> str | None:
    try:
        import magic

        if head is not None:
            result = magic.from_buffer(head, mime=True)
        elif path is not None:
            result = magic.from_file(str(path), mime=True)
        else:
            return None
    except Exception as exc:  # libmagic raises its own MagicException, OSError, ...
        log.debug("action=detect_mime path=%s error=%s", path, exc)
        return None
    if not isinstance(result, str) or "/" not in result:
        return None
    # from_file says inode/x-empty where from_buffer says application/x-empty.
    return EMPTY if result == "inode/x-empty" else result


def detect_mime(path: Path | None = None, *, head: bytes | None = None, filename: str = "") -> str:
    """The MIME type of a file, from its first bytes (``head``) or from ``path``.

    ``filename`` (default: the name of ``path``) supplies the extension. When libmagic
    answers ``text/*`` or ``application/octet-stream`` and the extension is one of
    :data:`BY_EXTENSION`, the extension's type is returned; when libmagic fails, the
    extension's type or ``application/octet-stream``. An empty file is
    ``application/x-empty``. Never raises.
    """
    name = filename or (path.name if path is not None else "")
    by_name = BY_EXTENSION.get(PurePath(name).suffix.lower()) if name else None
    detected = _libmagic(path, head)
    if detected is None:
        return by_name or OCTET_STREAM
    if by_name is not None and _is_vague(detected):
        return by_name
    return detected
