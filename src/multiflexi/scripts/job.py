"""job2script and job2env: a finished or queued job as a runnable script or a .env file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from multiflexi.env.layers import Env
from multiflexi.jobs import environment
from multiflexi.secrets import Vault
from multiflexi.storage.models import App, Company, Job

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database


def _load(
    db: Database, settings: Settings, job_id: int, reveal: bool
) -> tuple[Job, App, Company, Env]:
    from multiflexi.jobs.service import get_job

    with db.read() as session:
        job = get_job(session, job_id)
        app = session.get(App, job.app_id)
        company = session.get(Company, job.company_id)
        assert app is not None and company is not None
        env = environment.load_env(
            job.env or [], Vault.from_settings(settings, db) if reveal else None
        )
    return job, app, company, env


def _header(kind: str, job: Job, app: App, company: Company, reveal: bool) -> list[str]:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"{app.name} v{app.version or 'n/a'} job #{job.id} {kind}. Generated {stamp} for company: {company.name}",
    ]
    if not reveal and any(v.get("secret") for v in job.env or []):
        lines.append("Secret values are redacted; use --reveal to include them.")
    return lines


def job_env_file(
    db: Database, settings: Settings, job_id: int, *, reveal: bool = False, fmt: str = "shell"
) -> str:
    """The job's environment as a file in format ``fmt`` (``scripts.render.FORMATS``)."""
    from multiflexi.scripts.render import render_env_file

    job, app, company, env = _load(db, settings, job_id, reveal)
    variables = sorted((v.name, v.value) for v in env.values())
    return render_env_file(variables, _header("environment", job, app, company, reveal), fmt)


def job_script(
    db: Database,
    settings: Settings,
    job_id: int,
    *,
    reveal: bool = False,
    workdir: str | None = None,
) -> str:
    """A bash script that runs the job's command again, in a fresh directory (or
    ``workdir``, made absolute here), with exactly the job's environment."""
    import os

    from multiflexi.env.cmdline import build_argv
    from multiflexi.scripts.render import render_script

    job, app, company, env = _load(db, settings, job_id, reveal)
    argv = build_argv(app.executable, app.cmdparams or "", env.as_dict())
    variables = [(v.name, v.value, v.source) for v in env.values()]
    tmp = env.get("MULTIFLEXI_TMP")
    return render_script(
        variables,
        argv,
        _header("launcher", job, app, company, reveal),
        job_id=job.id,
        job_dir=job.workdir or (tmp.value if tmp is not None else None),
        workdir=None if workdir is None else os.path.abspath(workdir),
    )
