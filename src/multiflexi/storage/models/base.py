"""Declarative base with a naming convention, so constraints have the same names on every
backend and Alembic can alter them."""

from __future__ import annotations

from typing import cast

from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: ``__table_args__`` of the tables whose ids people and scripts use (``job:show 42``,
#: ``artifact:get 7``): SQLite then never hands out an id again after its row was
#: deleted (``AUTOINCREMENT``). PostgreSQL sequences and MariaDB's AUTO_INCREMENT (since
#: 10.2.4, also across restarts) never do; docs/guarantees.md. A migration that rebuilds
#: such a table on SQLite (batch mode, to alter or drop a column) must pass
#: ``table_kwargs={"sqlite_autoincrement": True}``: a rebuild does not keep it by itself
#: (tests/storage/test_ids_never_reused.py checks every such table at the head).
NEVER_REUSED = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """A model's table, typed as one, for Core statements."""
    return cast(Table, model.__table__)
