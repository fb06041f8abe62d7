"""How SQLite transactions begin: writes take the write lock at their first statement
(``BEGIN IMMEDIATE``), reads keep one snapshot (``BEGIN``), and neither needs an event
listener on the engine (which would put every statement through event dispatch)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

from sqlalchemy import text

from multiflexi.storage.database import Database


def _other(db: Database) -> sqlite3.Connection:
    # isolation_level None: the statements below say when transactions begin
    return sqlite3.connect(
        db.settings.sqlite_path, timeout=0, isolation_level=None, check_same_thread=False
    )


def _table(db: Database) -> None:
    db.transact(lambda conn: conn.execute(text("CREATE TABLE IF NOT EXISTS probe (x)")))


def test_a_write_transaction_holds_the_write_lock_from_its_first_read(
    sqlite_db: Database,
) -> None:
    _table(sqlite_db)
    other = _other(sqlite_db)
    try:
        with sqlite_db.connection() as conn:
            conn.execute(text("SELECT count(*) FROM probe")).scalar_one()
            # A deferred transaction would hold no lock after a read: the other writer
            # would get in between, and our later write would fail instead of queueing.
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc)
            else:
                other.execute("ROLLBACK")
                raise AssertionError("a second writer got in during a write transaction")
        other.execute("BEGIN IMMEDIATE")  # free again after the commit
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_a_read_keeps_one_snapshot_and_lets_writers_in(sqlite_db: Database) -> None:
    _table(sqlite_db)
    other = _other(sqlite_db)
    try:
        with sqlite_db.read() as session:
            before = session.execute(text("SELECT count(*) FROM probe")).scalar_one()
            other.execute("BEGIN IMMEDIATE")  # a reader does not block a writer
            other.execute("INSERT INTO probe VALUES (1)")
            other.execute("COMMIT")
            # Without a BEGIN each statement would see the newest data.
            again = session.execute(text("SELECT count(*) FROM probe")).scalar_one()
            assert again == before
        with sqlite_db.read() as session:
            assert session.execute(text("SELECT count(*) FROM probe")).scalar_one() == before + 1
    finally:
        other.close()


def test_a_database_locked_at_begin_is_retried(sqlite_db: Database) -> None:
    _table(sqlite_db)  # one pooled write connection, the one the next write gets
    raw = sqlite_db._write_engine.raw_connection()
    raw.driver_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
    raw.close()
    dialect = sqlite_db._write_engine.dialect
    begin = dialect.do_begin
    begins: list[float] = []

    def counted(dbapi_conn: object) -> None:
        begins.append(time.monotonic())
        begin(dbapi_conn)

    dialect.do_begin = counted  # type: ignore[method-assign]
    other = _other(sqlite_db)
    other.execute("BEGIN IMMEDIATE")  # a writer outside the lock file: BEGIN itself fails
    timer = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    timer.start()
    try:
        assert sqlite_db.transact(lambda conn: conn.execute(text("SELECT 1")).scalar_one()) == 1
    finally:
        timer.join()
        other.close()
        dialect.do_begin = begin  # type: ignore[method-assign]
    assert len(begins) >= 2  # "database is locked" at BEGIN, then a later attempt
    assert begins[-1] - begins[0] >= 0.25


def test_statements_go_through_no_event_dispatch(sqlite_db: Database) -> None:
    # In a process of its own: a listener any other test registers on the Engine class
    # marks every engine of this process for dispatch, and removing it does not unmark.
    probe = (
        "import sys; from multiflexi.config import load_settings;"
        "from multiflexi.storage.database import Database;"
        "db = Database(load_settings());"
        "print(db.engine._has_events, db._write_engine._has_events)"
    )
    env = {
        **os.environ,
        "DB_CONNECTION": "sqlite",
        "DB_DATABASE": str(sqlite_db.settings.sqlite_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
