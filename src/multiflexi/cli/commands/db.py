"""db:migrate, db:downgrade and db:status."""

from __future__ import annotations

import click

from multiflexi.cli.base import cli_context, command, confirm
from multiflexi.cli.output import emit


@command("db:migrate", "migrate")
def db_migrate() -> None:
    """Create or upgrade the database schema to this version."""
    from multiflexi.storage.database import Database
    from multiflexi.storage.migrations import HEAD

    ctx = cli_context()
    db = Database(ctx.settings, check_schema=False)
    try:
        current = db.current_revision()
        if current is not None and current != HEAD:
            db.backup_before(HEAD)
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


@command("db:downgrade")
@click.option("--to", "revision", required=True, metavar="REV", help="The revision to go back to.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Undo the newest migrations down to REV, before installing the version of REV.

    Stop the daemons first: this version's own processes would migrate an SQLite
    database back up at their next start. On SQLite a copy of the database is written
    first (``<file>.pre-downgrade-<REV>``)."""
    from multiflexi.errors import Invalid
    from multiflexi.storage.database import Database
    from multiflexi.storage.migrations import known_revisions

    ctx = cli_context()
    known = known_revisions()
    if revision not in known:
        raise Invalid(f"unknown revision {revision!r}; known: {', '.join(known)}")
    db = Database(ctx.settings, check_schema=False)
    try:
        current = db.current_revision()
        if current is None or current not in known:
            state = (
                "has no schema" if current is None else f"is at {current}, newer than this version"
            )
            raise Invalid(f"the database {state}: nothing this version can downgrade")
        if known.index(revision) >= known.index(current):
            raise Invalid(f"the database is at {current}: --to must name an older revision")
        where = ctx.settings.describe_database()
        confirm(f"Downgrade {where} from {current} to {revision}?", yes)
        db.backup_before(f"downgrade-{revision}")
        before, after = db.downgrade(revision)
    finally:
        db.dispose()
    data = {"database": ctx.settings.describe_database(), "before": before, "after": after}
    emit(data, ctx.fmt, text=f"Database {data['database']} downgraded from {before} to {after}.")


@command("db:status")
def db_status() -> None:
    """Show the database, its schema revision, and whether it needs `db:migrate`."""
    from multiflexi.storage.database import Database
    from multiflexi.storage.migrations import HEAD, is_newer

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
        "newer": current is not None and is_newer(current),
    }
    emit(data, ctx.fmt)
