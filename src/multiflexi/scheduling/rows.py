"""Statements over thousands of rows or ids that stay cheap on every backend.

Per row, SQLAlchemy's executemany runs each column's bind processor (JSON serialization,
datetime formatting) in Python, and psycopg 3 runs one pipelined ``INSERT`` per row. It
also parses each statement's placeholders in Python and caches the result only for
statements with at most 50 parameters: a 1,000-id ``IN (...)`` costs about 10 ms of
parsing per run, a 1,000-row multi-row ``INSERT`` about 170 ms. Hence:

* a set of ids is a range when it can be, else on PostgreSQL one array parameter
  (``= ANY``), see :func:`among`;
* :func:`insert_rows` writes rows with ``COPY`` on PostgreSQL, and elsewhere with the
  driver's executemany of an INSERT compiled by SQLAlchemy, its values bound beforehand
  with SQLAlchemy's own processors, each distinct value once (SQLite's ``executemany``
  runs in C; on MariaDB the rows go as multi-row INSERTs, a value shared by all of them
  quoted once);
* a JSON value can come serialized already (:class:`JSONText`), so that rows assembled
  from shared parts do not serialize the shared parts again for every row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    Integer,
    Table,
    any_,
    bindparam,
    column,
    func,
    insert,
    literal,
    select,
    table,
)
from sqlalchemy.orm import QueryableAttribute, Session

from multiflexi.storage.driver import sqlalchemy_errors

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect

#: Ids per ``IN (...)``: far below every backend's limit of bound parameters.
IN_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class JSONText:
    """A value for a JSON column, already serialized as ``json.dumps`` writes it."""

    text: str


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def among(
    session: Session, col: ColumnElement[Any] | QueryableAttribute[Any], ids: Sequence[int]
) -> ColumnElement[bool]:
    """``col IN ids``, in a form that costs little however many ids there are: a range
    when they are consecutive (as ids made together, or templates created together,
    usually are), else on PostgreSQL one array parameter (``= ANY``)."""
    if ids and max(ids) - min(ids) + 1 == len(ids) == len(set(ids)):
        return col.between(min(ids), max(ids))
    if is_postgresql(session):
        return col == any_(bindparam(None, list(ids), type_=ARRAY(Integer)))
    return col.in_(ids)


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    on_duplicate_update: Sequence[str] = (),
) -> None:
    """Insert ``rows`` (all with the same keys; column defaults fill the other columns) in
    the caller's transaction, the way that is fastest on its backend.

    ``on_duplicate_update`` (MariaDB only): columns to overwrite where the primary key
    exists already (``INSERT ... ON DUPLICATE KEY UPDATE``).
    """
    if not rows:
        return
    if is_postgresql(session):
        if on_duplicate_update:
            raise ValueError("on_duplicate_update is for MariaDB")
        _copy_rows(session, table, rows)
    else:
        _execute_bound(session, table, rows, on_duplicate_update)


# -- executemany with values bound beforehand ------------------------------------------------


def _execute_bound(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    on_duplicate_update: Sequence[str],
) -> None:
    """An INSERT compiled by SQLAlchemy, run by the driver's executemany with values bound
    here: SQLAlchemy's own work per row (parameter dictionaries, processors) is most of
    what an executemany of thousands of rows costs on SQLite."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    stmt: Any = insert(table)
    if on_duplicate_update:
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table)
        stmt = stmt.on_duplicate_key_update({n: stmt.inserted[n] for n in on_duplicate_update})
    compiled = stmt.compile(dialect=dialect, column_keys=names)
    # The statement's parameters: positional (SQLite) or by name (PyMySQL).
    order = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
    defaults = _scalar_defaults(table, names)
    if defaults is None or not set(order) <= {*names, *defaults}:
        # A default computed per row: SQLAlchemy does it all.
        session.execute(stmt, [{k: _decoded(v) for k, v in row.items()} for row in rows])
        return
    convert = [_bound_value(table.c[name].type, dialect) for name in order]
    fixed = {
        name: defaults[name] if to is None else to(defaults[name])
        for name, to in zip(order, convert, strict=True)
        if name not in rows[0]
    }
    slots = [(name, name in fixed, to) for name, to in zip(order, convert, strict=True)]
    params = [
        tuple(
            fixed[name] if is_fixed else row[name] if to is None else to(row[name])
            for name, is_fixed, to in slots
        )
        for row in rows
    ]
    connection = session.connection()
    if compiled.positional:
        connection.exec_driver_sql(compiled.string, params)
    else:
        _insert_named(connection, compiled.string, order, params)


_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s")


def _insert_named(
    connection: Connection, sql: str, order: Sequence[str], params: Sequence[tuple[Any, ...]]
) -> None:
    """The driver's executemany of an INSERT with named parameters; with PyMySQL, what
    is the same in every row is quoted once.

    PyMySQL quotes each value of each row in Python: 0.27-0.45 s for 10,000 rows of 24
    values on this project's machines, 0.11 s for 8 values a row. A value that is the
    same in every row -- the batch's status and times, application, company, the
    columns' defaults -- is quoted once, by PyMySQL, into the statement; the rows are
    joined into multi-row INSERTs no longer than PyMySQL's own limit, as its executemany
    joins them.
    """
    parts = None
    if connection.dialect.driver == "pymysql":
        from pymysql.cursors import RE_INSERT_VALUES

        parts = RE_INSERT_VALUES.match(sql)
    named = _PLACEHOLDER.findall(parts.group(2)) if parts is not None else []
    driver = connection.connection.driver_connection
    if parts is None or driver is None or sorted(named) != sorted(order):
        # Not PyMySQL, or not an INSERT of one placeholder per column: as it is.
        connection.exec_driver_sql(sql, [dict(zip(order, p, strict=True)) for p in params])
        return
    prefix, postfix = parts.group(1) % (), (parts.group(3) or "") % ()
    position = {name: index for index, name in enumerate(order)}
    columns = dict(zip(order, zip(*params, strict=True), strict=True))
    quoted: dict[str, str] = {}
    varying: list[int] = []  # in the statement's order
    for name in named:
        values = columns[name]
        first = values[0]
        if values.count(first) == len(values) and len(set(map(type, values))) == 1:
            quoted[name] = driver.escape(first).replace("%", "%%")
        else:
            quoted[name] = "%s"
            varying.append(position[name])
    # One pass over the placeholders: a quoted value is not searched again.
    row_sql = _PLACEHOLDER.sub(lambda found: quoted[found.group(1)], parts.group(2))
    cursor = driver.cursor()
    limit, fixed = cursor.max_stmt_length, len(prefix) + len(postfix)
    rows: list[str] = []
    size = fixed
    for row in params:
        text = cursor.mogrify(row_sql, tuple(row[i] for i in varying))
        length = len(text.encode()) + 1
        if rows and size + length > limit:
            connection.exec_driver_sql(prefix + ",".join(rows) + postfix, **_AS_IT_IS)
            rows, size = [], fixed
        rows.append(text)
        size += length
    connection.exec_driver_sql(prefix + ",".join(rows) + postfix, **_AS_IT_IS)


#: A statement whose values are written into it goes to the driver without parameters,
#: so that their % signs stay as they are (SQLAlchemy's ``no_parameters``).
_AS_IT_IS: dict[str, Any] = {"execution_options": {"no_parameters": True}}


def _bound_value(kind: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """What the column's bind processor makes of a value, computed once per distinct value
    (by identity for unhashable ones, which stay alive for the whole call); None for a
    column without a processor."""
    process = kind.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    plain_json = _plain_json(dialect)
    # PyMySQL formats a datetime field by field for every row (2 µs); the same text,
    # made once per distinct value here, it only quotes (0.1 µs).
    dates_as_text = dialect.name == "mysql"
    seen: dict[Any, Any] = {}

    def bound(value: Any) -> Any:
        if isinstance(value, JSONText):
            return value.text if plain_json else process(json.loads(value.text))
        key = value if value is None or value.__hash__ is not None else ("id", id(value))
        if key not in seen:
            out = process(value)
            if dates_as_text and isinstance(out, datetime) and out.tzinfo is None:
                out = out.isoformat(" ")
            seen[key] = out
        return seen[key]

    return bound


def _plain_json(dialect: Dialect) -> bool:
    """Whether the engine serializes JSON with ``json.dumps`` as it is (no
    ``json_serializer`` given to ``create_engine``), so that a :class:`JSONText` is
    stored as it would have been."""
    return getattr(dialect, "_json_serializer", None) in (None, json.dumps)


# -- COPY (PostgreSQL) -------------------------------------------------------------------------


def _copy_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``COPY ... FROM STDIN``: SQLAlchemy has no construct for it, so the statement is
    composed with psycopg's quoting and the values converted as SQLAlchemy would bind
    them; columns left out get their scalar defaults, as an INSERT would give them."""
    from psycopg import sql

    dialect = session.get_bind().dialect
    names = list(rows[0])
    defaults = _scalar_defaults(table, names)
    if defaults is None:  # a default computed per row: leave it all to SQLAlchemy
        plain = [{k: _decoded(v) for k, v in row.items()} for row in rows]
        session.execute(insert(table), plain)
        return
    slots = [(n, _copy_value(table.c[n].type, dialect)) for n in names]
    extra = [
        value if (to := _copy_value(table.c[name].type, dialect)) is None else to(value)
        for name, value in defaults.items()
    ]
    _compress_with_lz4(session)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, [*names, *defaults]))
    )
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert driver is not None
    with (
        sqlalchemy_errors(connection, lambda: statement.as_string(driver)),
        driver.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for row in rows:
            values = [row[n] if to is None else to(row[n]) for n, to in slots]
            copy.write_row(values + extra)


#: Per server: whether it can compress values with lz4.
_LZ4: dict[str, bool] = {}


def _compress_with_lz4(session: Session) -> None:
    """Compress the values this transaction writes with lz4 where the server can
    (PostgreSQL 14 and later, built with lz4). PostgreSQL compresses a value over about
    2 kB -- a job's environment often is -- with pglz by default, which makes a bulk
    insert of jobs take about twice the server's time. Values read back the same."""
    key = session.get_bind().engine.url.render_as_string(hide_password=True)
    if key not in _LZ4:
        settings = table("pg_settings", column("name"), column("enumvals"))
        has_lz4 = select(literal("lz4") == any_(settings.c.enumvals)).where(
            settings.c.name == "default_toast_compression"
        )
        _LZ4[key] = bool(session.scalar(has_lz4))
    if _LZ4[key]:
        session.execute(select(func.set_config("default_toast_compression", "lz4", True)))


def _decoded(value: Any) -> Any:
    return json.loads(value.text) if isinstance(value, JSONText) else value


def _scalar_defaults(table: Table, names: Sequence[str]) -> dict[str, Any] | None:
    """The scalar defaults of the columns not in ``names``; None if one of them has a
    default of another kind."""
    out = {}
    for col in table.c:
        if col.name in names or col.default is None:
            continue
        if not col.default.is_scalar:
            return None
        out[col.name] = col.default.arg  # type: ignore[attr-defined]
    return out


def _copy_value(kind: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """How a value is handed to COPY: what SQLAlchemy would bind, except that JSON goes
    as its text (which the server reads as JSON), serialized once per distinct value."""
    bound = _bound_value(kind, dialect)
    if not isinstance(kind, JSON) or not _plain_json(dialect) or bound is None:
        return bound
    seen: dict[int, str] = {}

    def text(value: Any) -> Any:
        if isinstance(value, JSONText):
            return value.text
        if not isinstance(value, list | dict):  # None, JSON.NULL...: as SQLAlchemy has it
            return bound(value)
        if id(value) not in seen:  # the values stay alive for the whole COPY
            seen[id(value)] = json.dumps(value)
        return seen[id(value)]

    return text
