"""Read-only queries for the hottest CLI paths, through the DB-API driver directly.

Importing SQLAlchemy costs about 0.4 s on a small machine — more than the whole budget
of ``job:list``. The few reads an operator types all day go through here instead: plain
SQL that is the same on SQLite, PostgreSQL and MariaDB apart from identifier quoting and
the parameter style. Anything unexpected (no database yet, schema behind, a driver error)
returns None, and the caller falls back to the full path, which migrates SQLite or names
the problem in one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from multiflexi.errors import MultiFlexiError

if TYPE_CHECKING:
    from multiflexi.config import Settings


class Unavailable(Exception):
    """The fast path cannot answer; use the full one."""


@contextmanager
def connect(settings: Settings) -> Iterator[tuple[Any, str, str]]:
    """(connection, quote character, placeholder) for the configured database."""
    try:
        if settings.db_connection == "sqlite":
            import sqlite3

            path = settings.sqlite_path
            if not path.exists():
                raise Unavailable("no database file yet")
            conn: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            quote, mark = '"', "?"
        elif settings.db_connection == "pgsql":
            import psycopg

            conn = psycopg.connect(
                host=settings.db_host,
                port=settings.db_port or 5432,
                dbname=settings.db_database or "multiflexi",
                user=settings.db_username or None,
                password=settings.db_password or None,
                connect_timeout=5,
            )
            quote, mark = '"', "%s"
        else:
            import pymysql

            conn = pymysql.connect(
                host=settings.db_host,
                port=settings.db_port or 3306,
                database=settings.db_database or "multiflexi",
                user=settings.db_username or "root",
                password=settings.db_password or "",
                connect_timeout=5,
                charset="utf8mb4",
            )
            quote, mark = "`", "%s"
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(str(exc)) from None
    try:
        _check_schema(conn)
        yield conn, quote, mark
    except (Unavailable, MultiFlexiError):  # the caller's own answer (NotFound) passes
        raise
    except Exception as exc:
        raise Unavailable(str(exc)) from None
    finally:
        conn.close()


def _check_schema(conn: Any) -> None:
    from multiflexi.storage.migrations import HEAD

    cur = conn.cursor()
    cur.execute("SELECT version_num FROM alembic_version")
    row = cur.fetchone()
    if not row or row[0] != HEAD:
        raise Unavailable("schema is not at head")


def utc(value: Any) -> datetime | None:
    """A stored naive-UTC timestamp as an aware datetime, whatever the driver returns."""
    if value is None:
        return None
    stamp: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def query(conn: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql, tuple(params))
    return list(cur.fetchall())
