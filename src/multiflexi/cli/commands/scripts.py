"""job:script and job:env-file: the job as a runnable script or a .env file."""

from __future__ import annotations

import sys

import click

from multiflexi.cli.base import cli_context, command, confirm, id_argument, resolve_id


def _render(kind: str, pos_id: str | None, opt_id: str | None, reveal: bool, yes: bool) -> None:
    from multiflexi.scripts.job import job_env_file, job_script

    ctx = cli_context()
    job_id = resolve_id(pos_id, opt_id, "job id")
    if reveal:
        confirm(f"Write the secret values of job {job_id} in clear?", yes)
    fn = job_script if kind == "script" else job_env_file
    sys.stdout.write(fn(ctx.db, ctx.settings, job_id, reveal=reveal))
    sys.stdout.flush()


def _options(fn):  # type: ignore[no-untyped-def]
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask before revealing.")(fn)
    fn = click.option("--reveal", is_flag=True, help="Include secret values in clear.")(fn)
    return id_argument()(fn)


@command("job:script", "job2script", raw_output="a bash script")
@_options
def job_script_cmd(pos_id: str | None, opt_id: str | None, reveal: bool, yes: bool) -> None:
    """Print a bash script that reproduces the job (environment and command line)."""
    _render("script", pos_id, opt_id, reveal, yes)


@command("job:env-file", "job2env", "job:env", raw_output="a .env file")
@_options
def job_env_cmd(pos_id: str | None, opt_id: str | None, reveal: bool, yes: bool) -> None:
    """Print the job's environment as a .env file."""
    _render("env", pos_id, opt_id, reveal, yes)
