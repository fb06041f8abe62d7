"""Alembic environment: the engine comes from MultiFlexi's own configuration."""

from __future__ import annotations

from alembic import context

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
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
