"""Daemon logs: one line per event on stderr, UTC timestamps, logfmt ``key=value`` pairs.

    2026-11-28T20:00:00Z INFO action=claim job_id=5 worker=executor@host:123:ab12cd34
    2026-11-28T20:00:01Z INFO action=finish job_id=5 status=failed exit_code=3 reason="exit code 3: no data"

Messages are written as ``key=%s`` templates; the values are made logfmt here, so no
call site can get it wrong: a value with a space, a quote, an ``=`` or a control
character (or an empty one) is double-quoted with ``\\`` ``\"`` ``\n`` escapes,
booleans read ``true``/``false``, a missing value is ``-``, an exception is its message.

The level comes from ``--debug`` or ``MULTIFLEXI_LOG_LEVEL`` (default INFO).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


_PLAIN = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def logfmt_value(value: object) -> object:
    """``value`` as a logfmt value: numbers stay numbers (for ``%d``/``%.3f``), anything
    else becomes a string, quoted when it must be."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if value is None:
        return "-"
    if isinstance(value, BaseException):
        text = " ".join(
            (str(getattr(value, "message", "") or value) or type(value).__name__).split()
        )
    else:
        text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    quoted = "".join(_ESCAPES.get(c, c if c >= " " else f"\\x{ord(c):02x}") for c in text)
    return f'"{quoted}"'


def _logfmt_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(logfmt_value(a) for a in args)
    return args


class UTCFormatter(logging.Formatter):
    """``<ISO time>Z <LEVEL> <message>``; tracebacks only at DEBUG level."""

    @staticmethod
    def converter(secs: float | None) -> time.struct_time:  # type: ignore[override]
        return time.gmtime(secs)

    def __init__(self, with_tracebacks: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.with_tracebacks = with_tracebacks

    def format(self, record: logging.LogRecord) -> str:
        changes: dict[str, Any] = {}
        if not self.with_tracebacks and record.exc_info:
            changes.update(exc_info=None, exc_text=None)
        if record.args:
            changes["args"] = _logfmt_args(record.args)
        if changes:
            record = logging.makeLogRecord({**record.__dict__, **changes})
        return super().format(record)


def level_from(raw: str | None, debug: bool) -> int:
    """The logging level of ``--debug`` / ``MULTIFLEXI_LOG_LEVEL``; unknown names are an error."""
    if debug:
        return logging.DEBUG
    name = (raw or "INFO").strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        from multiflexi.errors import ConfigError

        raise ConfigError(f"MULTIFLEXI_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {raw!r}")
    return int(getattr(logging, name))


def setup_logging(level: int) -> None:
    """Send every ``multiflexi`` log line to stderr in the daemon format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UTCFormatter(with_tracebacks=level <= logging.DEBUG))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries stay quiet unless something is wrong.
    for noisy in ("sqlalchemy", "alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
