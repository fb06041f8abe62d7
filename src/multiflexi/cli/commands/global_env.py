"""global:env:* commands: the environment every job gets (a proxy, a CA bundle...)."""

from __future__ import annotations

import click

from multiflexi.cli.base import cli_context, command, parse_assignments
from multiflexi.cli.output import emit


@command("global:env:set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def global_env_set(assignments: tuple[str, ...]) -> None:
    """Set variables every job gets: a proxy, a CA bundle...

    The first layer of every job's environment: an application default, a company, a
    credential, a run template or --env replaces a value set here."""
    from multiflexi.jobs.globalenv import set_global_env

    ctx = cli_context()
    values = parse_assignments(assignments)
    with ctx.db.session() as s:
        names = set_global_env(s, values)
    emit({"set": names}, ctx.fmt, text=f"Global job environment: set {', '.join(names)}")


@command("global:env:unset")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
def global_env_unset(keys: tuple[str, ...]) -> None:
    """Remove variables from the global job environment."""
    from multiflexi.jobs.globalenv import unset_global_env

    ctx = cli_context()
    with ctx.db.session() as s:
        names = unset_global_env(s, keys)
    emit({"unset": names}, ctx.fmt, text=f"Global job environment: removed {', '.join(names)}")


@command("global:env:list")
@click.option("--reveal", is_flag=True, help="Show values of secret-looking variables.")
def global_env_list(reveal: bool) -> None:
    """List the global job environment (secret-looking values redacted)."""
    from multiflexi.companies.service import looks_secret
    from multiflexi.jobs.globalenv import list_global_env
    from multiflexi.secrets import redact

    ctx = cli_context()
    with ctx.db.read() as s:
        rows = []
        for env in list_global_env(s):
            secret = looks_secret(env.keyword)
            value = redact(env.value) if secret and not reveal else env.value
            rows.append({"name": env.keyword, "value": value, "secret": secret})
    if ctx.fmt != "json" and not rows:
        emit(rows, ctx.fmt, text="The global job environment is empty.")
        return
    emit(rows, ctx.fmt, columns=("name", "value", "secret"))
