"""Work done on the driver's own connection, outside SQLAlchemy's execute (``COPY``, a
pipeline), with its errors raised as SQLAlchemy raises a failed statement's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


@contextmanager
def sqlalchemy_errors(connection: Connection, statement: Callable[[], str]) -> Iterator[None]:
    """A psycopg error in the block comes out as SQLAlchemy's (``IntegrityError``,
    ``OperationalError``...), and a lost connection is invalidated so that it leaves the
    pool: callers, and ``Database``'s retries of transient errors, see what they would
    have seen from ``connection.execute``. ``statement()`` names what failed."""
    from psycopg import Error

    driver = connection.connection.driver_connection
    try:
        yield
    except Error as exc:
        lost = driver is None or bool(driver.broken or driver.closed)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement(),
            None,
            exc,
            Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from exc
