"""Daemon logs: one line per event on stderr, UTC timestamps, ``key=value`` pairs.

    2026-11-28T20:00:00Z INFO action=claim job_id=5 worker=executor@host:123:ab12cd34

The level comes from ``--debug`` or ``MULTIFLEXI_LOG_LEVEL`` (default INFO).
"""

from __future__ import annotations

import logging
import sys
import time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class UTCFormatter(logging.Formatter):
    """``<ISO time>Z <LEVEL> <message>``; tracebacks only at DEBUG level."""

    @staticmethod
    def converter(secs: float | None) -> time.struct_time:  # type: ignore[override]
        return time.gmtime(secs)

    def __init__(self, with_tracebacks: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.with_tracebacks = with_tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if not self.with_tracebacks and record.exc_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
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
