"""db:migrate and db:status."""

from __future__ import annotations

from multiflexi.cli.base import cli_context, command
from multiflexi.cli.output import emit


@command("db:migrate", "migrate")
def db_migrate() -> None:
    """Create or upgrade the database schema to this version."""
    from multiflexi.storage.database import Database

    ctx = cli_context()
    db = Database(ctx.settings, check_schema=False)
    try:
        before, after = db.migrate()
    finally:
        db.dispose()
    data = {
        "database": ctx.settings.describe_database(),
        "before": before,
        "after": after,
        "changed": before != after,
    }
    text = (
        f"Database {data['database']} migrated from {before or 'empty'} to {after}."
        if before != after
        else f"Database {data['database']} is up to date ({after})."
    )
    emit(data, ctx.fmt, text=text)


@command("db:status")
def db_status() -> None:
    """Show the database, its schema revision, and whether it needs `db:migrate`."""
    from multiflexi.storage.database import Database
    from multiflexi.storage.migrations import HEAD

    ctx = cli_context()
    db = Database(ctx.settings, check_schema=False)
    try:
        current = db.current_revision()
    finally:
        db.dispose()
    data = {
        "database": ctx.settings.describe_database(),
        "driver": ctx.settings.db_connection,
        "revision": current,
        "head": HEAD,
        "up_to_date": current == HEAD,
    }
    emit(data, ctx.fmt)
