"""job:script and job:env-file: the job as a runnable script or an environment file."""

from __future__ import annotations

import sys
from typing import Any

import click

from multiflexi.cli.base import cli_context, command, confirm, id_argument, resolve_id


def _job_id(pos_id: str | None, opt_id: str | None, reveal: bool, yes: bool) -> int:
    job_id = resolve_id(pos_id, opt_id, "job id")
    if reveal:
        confirm(f"Write the secret values of job {job_id} in clear?", yes)
    return job_id


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _options(fn: Any) -> Any:
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask before revealing.")(fn)
    fn = click.option("--reveal", is_flag=True, help="Include secret values in clear.")(fn)
    return id_argument()(fn)


@command("job:script", "job2script", raw_output="a bash script")
@_options
@click.option(
    "--workdir",
    metavar="DIR",
    help="Run in DIR (created if missing) instead of a fresh temporary directory.",
)
def job_script_cmd(
    pos_id: str | None, opt_id: str | None, reveal: bool, yes: bool, workdir: str | None
) -> None:
    """Print a bash script that runs the job again as it ran: in a directory of its own,
    with exactly its environment and command line, exiting with the command's code."""
    from multiflexi.scripts.job import job_script

    ctx = cli_context()
    job_id = _job_id(pos_id, opt_id, reveal, yes)
    _write(job_script(ctx.db, ctx.settings, job_id, reveal=reveal, workdir=workdir))


@command("job:env-file", "job2env", "job:env", own_format=True)
@_options
@click.option(
    "-f",
    "--format",
    "env_format",
    type=click.Choice(["shell", "dotenv", "systemd", "json", "text"], case_sensitive=False),
    default=None,
    help="shell (the default; text is the same): for `set -a; source FILE`; dotenv: for "
    "python-dotenv; systemd: for EnvironmentFile=; json: one object.",
)
def job_env_cmd(
    pos_id: str | None, opt_id: str | None, reveal: bool, yes: bool, env_format: str | None
) -> None:
    """Print the job's environment as a file: for bash by default, or for python-dotenv,
    systemd, or as JSON (-f/--format). No value is refused."""
    from multiflexi.scripts.job import job_env_file

    ctx = cli_context()
    fmt = (env_format or ctx.fmt).lower()  # `-f json` before the command counts too
    job_id = _job_id(pos_id, opt_id, reveal, yes)
    fmt = "shell" if fmt == "text" else fmt
    _write(job_env_file(ctx.db, ctx.settings, job_id, reveal=reveal, fmt=fmt))
