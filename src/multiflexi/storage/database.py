"""The engine and sessions, per backend, with the few dialect-specific settings.

SQLite runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that two writers queue up instead of failing on upgrade. Transient
errors (SQLite busy, MariaDB deadlock, a dropped server connection) are retried by
:meth:`Database.run` with backoff.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from multiflexi.errors import DatabaseError, SchemaAhead, SchemaBehind
from multiflexi.storage.writelock import WriterLock

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.keys import KeyIdentity

T = TypeVar("T")

TRANSIENT_MARKERS = (
    "database is locked",
    "database table is locked",
    "deadlock",
    "lock wait timeout",
    "server has gone away",
    "lost connection",
    "connection refused",
    "terminating connection",
    "server closed the connection",
    "connection is closed",
    "could not receive data",
    "consuming input failed",
    "the database system is",
    "connection reset",
    "broken pipe",
    "ssl connection has been closed",
    "can't connect",
    "connection timed out",
)


def is_transient(exc: BaseException) -> bool:
    """Whether a database error is worth retrying (locks, deadlocks, dropped connections)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text_ = str(exc).lower()
    return any(marker in text_ for marker in TRANSIENT_MARKERS)


def _secure_sqlite_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        # Only a new file can take incremental auto-vacuum, which lets prune give space back.
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("CREATE TABLE mf_init (x)")
            conn.execute("DROP TABLE mf_init")
            conn.commit()
        finally:
            conn.close()
    elif stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)


def describe_connect_error(settings: Settings, exc: BaseException) -> str:
    where = settings.describe_database()
    msg = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else ""
    low = msg.lower()
    if "password" in low or "access denied" in low or "authentication" in low:
        user = settings.db_username or ("root" if settings.db_connection == "mysql" else "")
        return f"database login refused for user {user!r} at {where}"
    if "does not exist" in low or "unknown database" in low:
        return f"database does not exist: {where}"
    return f"cannot connect to {where}: {msg}"


#: Run on every MariaDB/MySQL connection before SQLAlchemy sees it (so its dialect knows
#: the mode). With NO_BACKSLASH_ESCAPES, a quote is escaped by doubling it and nothing
#: else: PyMySQL then quotes a string with one ``str.replace`` instead of a per-character
#: ``str.translate``, 118 -> 2 µs for a job's 3.7 KB environment (the scheduler's 10,000
#: jobs spent 1.2 s of CPU on it).
MYSQL_SESSION = "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')"


def _sqlite_setup(engine: Engine, begin: str) -> None:
    """WAL, foreign keys and a busy timeout on every connection; ``begin`` starts each
    transaction (the driver's own implicit BEGIN is switched off)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    def do_begin(dbapi_conn: Any) -> None:
        dbapi_conn.execute(begin)

    # The dialect's hook rather than a "begin" event: one connection-level listener
    # sends every statement of the engine through SQLAlchemy's event dispatch, which
    # cost ~30 us per statement, a third of a short transaction. SQLAlchemy wraps a
    # failed BEGIN (database locked) like any statement's error, so it is retried.
    engine.dialect.do_begin = do_begin  # type: ignore[method-assign,assignment]


class Database:
    """One configured database: engine, session factories and schema checks."""

    def __init__(
        self, settings: Settings, *, check_schema: bool = True, prepare: bool = False
    ) -> None:
        """``prepare``: let PostgreSQL keep statements prepared, for a process that runs
        the same few statements over and over (the executor); elsewhere it costs more
        than it saves (the scheduler's batches: +0.2 s per 10,000 jobs)."""
        self.settings = settings
        self.dialect = settings.db_connection
        url = settings.database_url()
        kwargs: dict[str, Any] = {"future": True}
        if self.dialect == "sqlite":
            try:
                _secure_sqlite_file(settings.sqlite_path)
            except OSError as exc:
                hint = ""
                if not settings.db_database and not settings.get("MULTIFLEXI_DATA_DIR"):
                    hint = " (set MULTIFLEXI_DATA_DIR or DB_DATABASE)"
                raise DatabaseError(
                    f"cannot open the database {settings.sqlite_path}: {exc.strerror or exc}{hint}"
                ) from None
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            # A pooled connection is checked before use: after a server restart the first
            # use of every old connection would otherwise fail, reads included (which are
            # not retried). It costs a round trip per transaction.
            kwargs.update(pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=10)
            if self.dialect == "pgsql":
                # psycopg prepares a statement on the server after its fifth use: the
                # executor runs the same few statements for every job, and planning them
                # each time was most of their server time (claim + start -2 ms per job).
                kwargs["connect_args"] = {
                    "connect_timeout": 5,
                    "prepare_threshold": 5 if prepare else None,
                }
            else:
                kwargs["connect_args"] = {"connect_timeout": 5, "init_command": MYSQL_SESSION}
                kwargs["isolation_level"] = "READ COMMITTED"
        self.engine: Engine = create_engine(url, **kwargs)
        self._write_engine = self.engine
        self._writes: WriterLock | None = None
        if self.dialect == "sqlite":
            # Writes from a pool of their own, whose transactions begin IMMEDIATE.
            self._write_engine = create_engine(url, **kwargs)
            _sqlite_setup(self.engine, "BEGIN")
            _sqlite_setup(self._write_engine, "BEGIN IMMEDIATE")
            path = settings.sqlite_path
            self._writes = WriterLock(path.with_name(path.name + "-writer"))
        #: Per thread: the patience of its retries, the write transaction it is inside.
        self._thread = threading.local()
        self._writer = sessionmaker(bind=self._write_engine, expire_on_commit=False)
        # PostgreSQL reads in autocommit, from a pool of their own: under READ COMMITTED
        # every statement sees what was committed before it either way, BEGIN/ROLLBACK
        # cost two round trips, and switching a pooled connection to autocommit and back
        # costs more CPU than a short query. (PyMySQL would pay two SET autocommit round
        # trips; SQLite keeps its snapshot per read transaction.)
        self._read_engine: Engine | None = None
        reads = self.engine
        if self.dialect == "pgsql":
            reads = self._read_engine = create_engine(
                url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, **kwargs
            )
        self._reader = sessionmaker(bind=reads, expire_on_commit=False)
        if check_schema:
            self.ensure_schema()

    # -- sessions ---------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction, committed at the end of the block, rolled back on error."""
        with (
            self._one_writer(),
            self._wrap_errors(),
            self._writer() as session,
            session.begin(),
            self._inside(session),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (on SQLite it takes no write lock)."""
        with self._wrap_errors(), self._reader() as session:
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core write transaction: for the executor's hot path, where the ORM's
        statement building and object loading would cost more than the SQL itself."""
        with (
            self._one_writer(),
            self._wrap_errors(),
            self._write_engine.begin() as conn,
            self._inside(conn),
        ):
            yield conn

    @contextmanager
    def _inside(self, handle: Session | Connection) -> Iterator[None]:
        local = self._thread
        outer = getattr(local, "write", None)
        local.write = handle
        try:
            yield
        finally:
            local.write = outer

    def current_write(self) -> Session | Connection | None:
        """The write transaction this thread is inside, if any: a write that must not
        wait for it (on SQLite, for the lock it holds) goes into it instead."""
        return getattr(self._thread, "write", None)

    @cached_property
    def keys(self) -> KeyIdentity:
        """The identity of the master key this database records."""
        from multiflexi.storage.keys import KeyIdentity

        return KeyIdentity(self)

    @contextmanager
    def _one_writer(self) -> Iterator[None]:
        """On SQLite, one write transaction of this host at a time (see WriterLock)."""
        if self._writes is None:
            yield
            return
        with self._writes:
            yield

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A PostgreSQL connection in autocommit mode, for one statement that is atomic by
        itself (no BEGIN and COMMIT round trips). Other backends: a write transaction."""
        if self._read_engine is None:
            with self.connection() as conn:
                yield conn
            return
        with self._wrap_errors(), self._read_engine.connect() as conn:
            yield conn

    def statement(self, fn: Callable[[Connection], T], *, attempts: int = 8) -> T:
        """Run ``fn`` on :meth:`autocommit`, retrying transient errors like :meth:`run`."""
        return self._retrying(self.autocommit, fn, attempts)

    def run(self, fn: Callable[[Session], T], *, attempts: int = 8) -> T:
        """Run ``fn`` in a write transaction, retrying transient errors with backoff."""
        return self._retrying(self.session, fn, attempts)

    def query(self, fn: Callable[[Session], T], *, attempts: int = 8) -> T:
        """Run ``fn`` in a read session, retrying transient errors like :meth:`run`."""
        return self._retrying(self.read, fn, attempts)

    def transact(self, fn: Callable[[Connection], T], *, attempts: int = 8) -> T:
        """Run ``fn`` in a Core write transaction, retrying transient errors like :meth:`run`."""
        return self._retrying(self.connection, fn, attempts)

    @contextmanager
    def patient(self, seconds: float) -> Iterator[None]:
        """Within the block, this thread retries transient errors for ``seconds`` at least,
        not only a number of attempts (about 5 s): a running job's writes -- its output,
        its files, its final status -- then wait out a database restart instead of being
        dropped. The executor gives a job its lease time: no one can call the job lost
        before that."""
        previous = getattr(self._thread, "seconds", 0.0)
        self._thread.seconds = seconds
        try:
            yield
        finally:
            self._thread.seconds = previous

    def _retrying(
        self,
        begin: Callable[[], AbstractContextManager[Any]],
        fn: Callable[[Any], T],
        attempts: int,
    ) -> T:
        try:  # the common case, without building a retry policy
            with begin() as handle:
                return fn(handle)
        except DatabaseError as exc:
            if not exc.transient or attempts <= 1:
                raise
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            stop_after_delay,
            wait_exponential_jitter,
        )

        stop: Any = stop_after_attempt(attempts - 1)
        patience = getattr(self._thread, "seconds", 0.0)
        if patience > 0:  # both: the attempts made and the time waited
            stop = stop & stop_after_delay(patience)
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, DatabaseError) and e.transient),
            stop=stop,
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
            reraise=True,
        )
        for attempt in retrying:
            with attempt, begin() as handle:
                return fn(handle)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _wrap_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            err = DatabaseError(describe_connect_error(self.settings, exc))
            err.transient = is_transient(exc)  # type: ignore[attr-defined]
            raise err from exc
        except DBAPIError as exc:
            if is_transient(exc):
                err = DatabaseError(f"database error: {str(exc.orig).splitlines()[0]}")
                err.transient = True  # type: ignore[attr-defined]
                raise err from exc
            raise

    # -- schema -----------------------------------------------------------------------

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                if not self.engine.dialect.has_table(conn, "alembic_version"):
                    return None
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
                return row[0] if row else None
        except OperationalError as exc:
            raise DatabaseError(describe_connect_error(self.settings, exc)) from None

    def ensure_schema(self) -> None:
        """SQLite migrates itself (after a copy of a database that has data); a server
        database that is behind is an error, and so is a database of any backend that
        is newer than this version."""
        from multiflexi.storage.migrations import HEAD, is_newer

        current = self.current_revision()
        if current == HEAD:
            return
        if current is not None and is_newer(current):
            raise SchemaAhead(
                f"the database is newer than this version ({current} > {HEAD}): upgrade this host"
            )
        if self.dialect == "sqlite":
            if current is not None:
                self.backup_before(HEAD)
            self.migrate()
            return
        if current is None:
            raise SchemaBehind(
                f"database {self.settings.describe_database()} has no MultiFlexi schema: "
                "run `multiflexi-cli db:migrate`"
            )
        raise SchemaBehind(
            f"database schema is at {current}, this version needs {HEAD}: "
            "run `multiflexi-cli db:migrate`"
        )

    def migrate(self) -> tuple[str | None, str]:
        """Upgrade to the newest schema; returns (before, after)."""
        from multiflexi.storage.migrations import HEAD, is_newer, upgrade

        before = self.current_revision()
        if before is not None and is_newer(before):
            raise SchemaAhead(
                f"the database is newer than this version ({before} > {HEAD}): upgrade this host"
            )
        upgrade(self.engine)
        return before, self.current_revision() or ""

    def downgrade(self, revision: str) -> tuple[str | None, str]:
        """Undo migrations down to ``revision``; returns (before, after)."""
        from multiflexi.storage.migrations import downgrade

        before = self.current_revision()
        downgrade(self.engine, revision)
        return before, self.current_revision() or ""

    def backup_before(self, revision: str) -> Path | None:
        """On SQLite, copy a database that holds data to ``<file>.pre-<revision>`` (mode
        0600, through SQLite's online backup, so a running daemon's writes are whole)
        and say so on stderr; the path, or None when there was nothing to keep."""
        if self.dialect != "sqlite" or not self._has_data():
            return None
        source = self.settings.sqlite_path
        target = source.with_name(f"{source.name}.pre-{revision}")
        partial = target.with_name(target.name + ".partial")
        try:
            partial.unlink(missing_ok=True)
            os.close(os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
            src, dst = sqlite3.connect(source), sqlite3.connect(partial)
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
            os.replace(partial, target)
        except (OSError, sqlite3.Error) as exc:
            with suppress(OSError):
                partial.unlink(missing_ok=True)
            why = getattr(exc, "strerror", None) or str(exc)
            raise DatabaseError(
                f"cannot write a copy of {source} to {target} before migrating: {why}; "
                "nothing was changed"
            ) from None
        sys.stderr.write(
            f"multiflexi: {source} is at schema {self.current_revision()}; "
            f"a copy of it was written to {target} before migrating to {revision}\n"
        )
        return target

    def _has_data(self) -> bool:
        with self.engine.connect() as conn:
            for table in ("company", "apps", "job"):
                if not self.engine.dialect.has_table(conn, table):
                    continue
                if conn.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).first():
                    return True
        return False

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()
        if self._writes is not None:
            self._writes.close()
        if self._read_engine is not None:
            self._read_engine.dispose()
