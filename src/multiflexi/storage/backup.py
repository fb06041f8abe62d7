"""``db:backup``: an online copy of the embedded SQLite database.

SQLite's backup API copies a consistent snapshot while daemons keep writing (WAL: readers
and the copy do not block the writer for long), unlike ``cp`` of a database whose WAL
file has not been checkpointed. The copy is created readable by its owner only (it holds
every job's environment and output, secrets sealed), checked with ``PRAGMA
quick_check``, and never overwrites an existing file. The master key is not in it: it is
backed up separately (docs/operations.md).

PostgreSQL and MariaDB have their own tools (``pg_dump``, ``mysqldump
--single-transaction``): the command says so instead of pretending.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiflexi.errors import Conflict, Invalid, NotFound

if TYPE_CHECKING:
    from multiflexi.config import Settings

#: Pages copied per step: small steps let writers in between.
PAGES_PER_STEP = 1024
TOOLS = {
    "pgsql": "pg_dump --format=custom",
    "mysql": "mysqldump --single-transaction",
}


def backup_sqlite(settings: Settings, target: Path) -> dict[str, Any]:
    """Copy the SQLite database to ``target`` (a new file, mode 0600); returns a report."""
    if settings.db_connection != "sqlite":
        tool = TOOLS.get(settings.db_connection, "the database's own dump tool")
        raise Invalid(
            f"db:backup copies the embedded SQLite database; back up {settings.db_connection} "
            f"with {tool} (see docs/operations.md)"
        )
    source = settings.sqlite_path
    if not source.is_file():
        raise NotFound(f"database file not found: {source}")
    if target.exists():
        raise Conflict(f"{target} exists; give a new file name")
    if not target.parent.is_dir():
        raise NotFound(f"directory not found: {target.parent}")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise Invalid(f"cannot create {target}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst, pages=PAGES_PER_STEP)
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
                # A copy of a WAL database is a WAL database: the restored file works
                # alone, without -wal or -shm beside it.
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise Invalid(f"backup of {source} failed: {exc}") from None
    if check != "ok":
        target.unlink(missing_ok=True)
        raise Invalid(f"the copy of {source} is damaged: {check}")
    os.chmod(target, 0o600)
    key_file = settings.data_dir / "master.key"
    return {
        "database": str(source),
        "backup": str(target),
        "bytes": target.stat().st_size,
        "check": check,
        "master_key": "ENCRYPTION_MASTER_KEY (not in the backup)"
        if settings.master_key
        else f"{key_file} (not in the backup)",
    }
