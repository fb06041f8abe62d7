"""Alembic environment: the engine comes from MultiFlexi's own configuration."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from multiflexi.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from multiflexi.config import load_settings
        from multiflexi.storage.database import Database

        engine = Database(load_settings(), check_schema=False).engine
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A table is rebuilt by copying it and dropping the old one (batch mode). With
            # foreign keys on, that DROP would delete the rows of every table that refers
            # to it (ON DELETE CASCADE). SQLite ignores this pragma inside a transaction:
            # set on the driver's connection before the migration's transaction begins.
            _pragma(connection, "PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise RuntimeError(f"migration broke a foreign key: {tuple(broken)}")
            connection.commit()
        finally:
            if sqlite:
                _pragma(connection, "PRAGMA foreign_keys=ON")


def _pragma(connection: Connection, statement: str) -> None:
    """Run ``statement`` on the driver's connection itself, outside any transaction."""
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute(statement)


run_migrations()
