"""Throw-away databases on the PostgreSQL and MariaDB servers, for the test suite and the
benchmarks: created and migrated once per run, emptied between uses, dropped at the end.

The administrative login is the local servers' default (``postgres`` and ``root`` at
127.0.0.1, no password); ``MF_TEST_PG_HOST|PORT|USERNAME|PASSWORD`` and ``MF_TEST_MY_...``
override it. Nothing here runs in the daemons or the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from multiflexi.config import Settings, settings_from_values
from multiflexi.storage.database import Database

_ADMIN = {
    "pgsql": {"DB_CONNECTION": "pgsql", "DB_HOST": "127.0.0.1", "DB_USERNAME": "postgres"},
    "mysql": {"DB_CONNECTION": "mysql", "DB_HOST": "127.0.0.1", "DB_USERNAME": "root"},
}
#: The database an administrative connection opens: one that always exists.
_ADMIN_DATABASE = {"pgsql": "postgres", "mysql": "mysql"}
_OVERRIDE_PREFIX = {"pgsql": "MF_TEST_PG_", "mysql": "MF_TEST_MY_"}


def server_values(backend: str) -> dict[str, str]:
    """Configuration values (``DB_*``) of the administrative login to ``backend``'s server."""
    values = dict(_ADMIN[backend])
    prefix = _OVERRIDE_PREFIX[backend]
    for key in ("HOST", "PORT", "USERNAME", "PASSWORD"):
        if os.environ.get(prefix + key):
            values["DB_" + key] = os.environ[prefix + key]
    return values


def _admin(backend: str, statements: Sequence[str]) -> None:
    from sqlalchemy import create_engine, text

    values = {**server_values(backend), "DB_DATABASE": _ADMIN_DATABASE[backend]}
    engine = create_engine(
        settings_from_values(values).database_url(), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def create(backend: str, name: str) -> dict[str, str]:
    """Database ``name`` on ``backend``'s server, new (an old one of that name is dropped)
    and migrated; returns the values that open it. A failed migration drops it again."""
    _admin(backend, [f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"])
    values = {**server_values(backend), "DB_DATABASE": name}
    fresh = Database(settings_from_values(values), check_schema=False)
    try:
        fresh.migrate()
    except BaseException:
        fresh.dispose()
        drop(backend, name)
        raise
    fresh.dispose()
    return values


def drop(backend: str, name: str) -> None:
    """Drop database ``name``, closing what is still connected to it on PostgreSQL."""
    force = " WITH (FORCE)" if backend == "pgsql" else ""
    _admin(backend, [f"DROP DATABASE IF EXISTS {name}{force}"])


def empty(db: Database) -> None:
    """Remove every row of every table of a server database, restarting its ids."""
    from sqlalchemy import text

    from multiflexi.storage.models import Base

    tables = Base.metadata.sorted_tables
    with db.engine.begin() as conn:
        if db.dialect == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for table in tables:
                conn.execute(text(f"TRUNCATE TABLE `{table.name}`"))
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
        elif db.dialect == "pgsql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            raise ValueError(f"not a server database: {db.dialect}")


def process_environment(settings: Settings) -> dict[str, str]:
    """The variables that point a CLI or daemon started by a test or a benchmark at the
    same data directory, database and master key as ``settings``."""
    env = {"MULTIFLEXI_DATA_DIR": str(settings.data_dir), "DB_CONNECTION": settings.db_connection}
    if settings.db_connection == "sqlite":
        env["DB_DATABASE"] = str(settings.sqlite_path)
    else:
        env.update(
            DB_HOST=settings.db_host,
            DB_PORT=str(settings.db_port or ""),
            DB_DATABASE=settings.db_database,
            DB_USERNAME=settings.db_username,
            DB_PASSWORD=settings.db_password,
        )
    if settings.master_key:
        env["ENCRYPTION_MASTER_KEY"] = settings.master_key
    return env
