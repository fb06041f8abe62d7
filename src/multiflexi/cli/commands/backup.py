"""db:backup: an online copy of the embedded SQLite database."""

from __future__ import annotations

from pathlib import Path

import click

from multiflexi.cli.base import cli_context, command
from multiflexi.cli.output import emit


@command("db:backup")
@click.option(
    "--output", "-o", "output", required=True, metavar="FILE", help="The new backup file."
)
def db_backup(output: str) -> None:
    """Copy the SQLite database while daemons run (a new file, mode 0600)."""
    from multiflexi.storage.backup import backup_sqlite

    ctx = cli_context()
    data = backup_sqlite(ctx.settings, Path(output))
    text = (
        f"Database {data['database']} backed up to {data['backup']} "
        f"({data['bytes']} bytes, check {data['check']}).\n"
        f"Back up the master key separately: {data['master_key']}."
    )
    emit(data, ctx.fmt, text=text)
