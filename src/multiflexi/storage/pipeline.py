"""Statements sent to PostgreSQL without waiting for each answer (psycopg's pipeline mode).

The executor's transaction at the end of a short job -- final status, outputs, count,
claim of the next job, read of it -- waited for the server eight times when each
statement was sent on its own, and each wait wakes the executor and a server process.
In a pipeline the statements before the first read travel together with BEGIN, and
COMMIT goes with the last: four waits (trivial jobs, two executors: +10 % jobs/s, a
sixth less executor CPU per job; benchmarks/experiments.md).

SQLAlchemy reads every statement's answer as soon as it has sent it, so it cannot
pipeline. The statements stay SQLAlchemy's: each is compiled once for the dialect and
run on the driver's cursor, with the column types' own conversions on the way in and
out. A result is read lazily: asking for a row count or a row sends what is queued.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable
from sqlalchemy.types import TypeEngine

from multiflexi.storage.driver import sqlalchemy_errors


class Executes(Protocol):
    """What a statement helper needs of a connection: a SQLAlchemy ``Connection``, or a
    :class:`Pipeline` over one. Results are read with ``rowcount``, ``first()``,
    ``all()`` and rows by attribute or ``_mapping``."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, statement: Executable, parameters: Any = None, /) -> Any: ...


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Values of the parameters the statement carries itself (literals in ``values()``).
    fixed: Mapping[str, Any]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    names: tuple[str, ...]
    #: The selected columns' types, each for the dialect.
    types: tuple[TypeEngine[Any], ...]
    dialect: Dialect
    #: Result conversions by the type codes the driver reports for the columns.
    by_codes: dict[tuple[Any, ...], tuple[Callable[[Any], Any] | None, ...]] = field(
        default_factory=dict, compare=False
    )

    def results(self, description: Sequence[Any]) -> tuple[Callable[[Any], Any] | None, ...]:
        """A type may convert by the column the server sends (psycopg's floats and
        numerics need its type code, as in SQLAlchemy's own results); the codes of a
        statement's columns do not change, so they are looked up once."""
        codes = tuple(column.type_code for column in description)
        found = self.by_codes.get(codes)
        if found is None:
            found = self.by_codes[codes] = tuple(
                t.result_processor(self.dialect, code)
                for t, code in zip(self.types, codes, strict=True)
            )
        return found


#: ``psycopg.pq.TransactionStatus.IDLE``, without importing psycopg at start-up.
_IDLE = 0

_COMPILED_MAX = 256
_COMPILED: dict[tuple[Executable, str, tuple[str, ...] | None], _Compiled] = {}


def _compile(statement: Executable, dialect: Dialect, keys: tuple[str, ...] | None) -> _Compiled:
    """Compiled once per statement object: the executor's statements are module constants."""
    cache_key = (statement, dialect.name, keys)
    found = _COMPILED.get(cache_key)
    if found is not None:
        return found
    if len(_COMPILED) >= _COMPILED_MAX:  # statements built per call would pile up
        _COMPILED.clear()
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)
    assert isinstance(compiled, SQLCompiler)
    binds: dict[str, Callable[[Any], Any]] = {}
    # By the names the SQL uses; a parameter used twice is one value, converted once.
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds[name] = process
    names: list[str] = []
    types: list[TypeEngine[Any]] = []
    selected = getattr(statement, "selected_columns", None)
    if selected is not None:  # the keys SQLAlchemy's rows have
        for name, column in zip(selected.keys(), selected, strict=True):
            names.append(name)
            types.append(column.type.dialect_impl(dialect))
    found = _COMPILED[cache_key] = _Compiled(
        str(compiled),
        dict(compiled.params),
        tuple(binds.items()),
        tuple(names),
        tuple(types),
        dialect,
    )
    return found


class PipelineRow:
    """A result row: columns by attribute and by ``_mapping``, as SQLAlchemy's rows."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy and pickle look for hooks before _mapping is set
            raise AttributeError(name)
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


class Pending:
    """The result of a statement in the pipeline; reading it sends what is queued."""

    def __init__(self, pipeline: Pipeline, cursor: Any, compiled: _Compiled, seq: int) -> None:
        self._pipeline, self._cursor, self._compiled, self._seq = pipeline, cursor, compiled, seq

    @property
    def rowcount(self) -> int:
        self._pipeline._wait_for(self._seq)
        return int(self._cursor.rowcount)

    def first(self) -> PipelineRow | None:
        self._pipeline._wait_for(self._seq)
        row = self._cursor.fetchone()
        return None if row is None else self._row(row)

    def all(self) -> list[PipelineRow]:
        self._pipeline._wait_for(self._seq)
        return [self._row(row) for row in self._cursor.fetchall()]

    def _row(self, values: Sequence[Any]) -> PipelineRow:
        c = self._compiled
        results = c.results(self._cursor.description)
        return PipelineRow(
            {
                name: value if process is None else process(value)
                for name, process, value in zip(c.names, results, values, strict=True)
            }
        )


class Pipeline:
    """Runs SQLAlchemy Core statements in a psycopg pipeline on the driver connection of
    a SQLAlchemy ``Connection``; :func:`transaction` opens one."""

    def __init__(self, conn: Connection, driver_pipeline: Any) -> None:
        self.dialect = conn.dialect
        self._driver = conn.connection.driver_connection
        self._pipe = driver_pipeline
        self._sent = 0
        self._answered = 0
        self.last_sql = ""

    def execute(self, statement: Executable, parameters: Any = None, /) -> Pending:
        assert self._driver is not None
        many = isinstance(parameters, list)
        rows = parameters if many else [parameters or {}]
        compiled = _compile(statement, self.dialect, tuple(rows[0]) if many else None)
        values = [self._values(compiled, row) for row in rows]
        self.last_sql = compiled.sql
        cursor = self._driver.cursor()
        if many:
            cursor.executemany(compiled.sql, values)
        else:
            cursor.execute(compiled.sql, values[0])
        self._sent += 1
        return Pending(self, cursor, compiled, self._sent)

    @staticmethod
    def _values(compiled: _Compiled, given: Mapping[str, Any]) -> dict[str, Any]:
        values = {**compiled.fixed, **given}
        for key, process in compiled.binds:
            values[key] = process(values[key])
        return values

    def execute_text(self, sql: str) -> None:
        assert self._driver is not None
        self.last_sql = sql
        self._driver.cursor().execute(sql)
        self._sent += 1

    def _wait_for(self, seq: int) -> None:
        if seq > self._answered:
            self._pipe.sync()
            self._answered = self._sent


@functools.cache
def supported() -> bool:
    """Whether the installed psycopg can pipeline (its libpq 14 or newer; the binary
    wheels bring one)."""
    import psycopg

    return bool(psycopg.Pipeline.is_supported())


@contextmanager
def transaction(conn: Connection) -> Iterator[Pipeline]:
    """One transaction as a pipeline, on an autocommit ``conn`` (``Database.autocommit``):
    BEGIN goes with the first statements and COMMIT with the last, so the transaction
    waits for the server once per read of an answer, and once more at its end. An error
    in the block rolls it back. Driver errors come out as SQLAlchemy's (a lost
    connection invalidated, so that the transaction is retried), as if the statements
    had gone through ``conn.execute``."""
    import psycopg

    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection), "pipelines need psycopg"
    assert driver.autocommit, "the pipeline begins and commits itself"
    current: Pipeline | None = None
    with sqlalchemy_errors(conn, lambda: current.last_sql if current is not None else ""):
        try:
            with driver.pipeline() as pipe:
                current = Pipeline(conn, pipe)
                current.execute_text("BEGIN")
                yield current
                current.execute_text("COMMIT")  # its answer is read as the pipeline ends
        except BaseException:
            if not driver.closed and driver.info.transaction_status != _IDLE:
                driver.execute("ROLLBACK")  # the pool does not reset autocommit connections
            raise
