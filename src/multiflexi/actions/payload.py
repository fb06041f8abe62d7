"""What MultiFlexi tells the outside world about a finished job, and never more.

:func:`load_job_info` reads a job once into a frozen :class:`JobInfo` (variables with
secret values redacted) plus the set of the job's secret values, kept apart so that they
are used only to :func:`scrub` text before it leaves. :func:`job_document` is the JSON
summary every integration sends (WebHook body, Zabbix fallback value).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from multiflexi import __version__
from multiflexi.secrets import REDACTED

if TYPE_CHECKING:
    from multiflexi.secrets import Vault
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.actions")

#: Shorter secrets are not scrubbed: replacing every "42" would destroy text, hide nothing.
MIN_SECRET_LENGTH = 3


@dataclass(frozen=True)
class ArtifactInfo:
    id: int
    filename: str
    content_type: str
    size: int
    kind: str
    state: str


@dataclass(frozen=True)
class JobInfo:
    """A finished job, as actions and monitoring see it. Holds no secret value."""

    job_id: int
    status: str
    exitcode: int | None
    signal: int | None
    exit_meaning: str
    reason: str
    created: datetime | None
    scheduled_at: datetime | None
    begin: datetime | None
    end: datetime | None
    duration: float | None
    cpu_user: float | None
    cpu_system: float | None
    max_rss_kb: int | None
    command: str
    host: str
    executor: str
    schedule_type: str
    attempt: int
    app_id: int
    app_name: str
    app_code: str
    app_uuid: str
    app_version: str
    app_homepage: str
    company_id: int
    company_name: str
    company_slug: str
    zabbix_host: str
    runtemplate_id: int | None
    runtemplate_name: str
    interv: str
    cron: str | None
    artifacts: tuple[ArtifactInfo, ...] = ()
    #: Name -> value; values of secret variables are :data:`REDACTED`.
    variables: Mapping[str, str] = field(default_factory=dict)
    secret_names: frozenset[str] = frozenset()

    @property
    def mode(self) -> str:
        """``success`` for a successful job; everything else (failed, lost...) is ``fail``."""
        return "success" if self.status == "success" else "fail"

    @property
    def item_code(self) -> str:
        """``<company slug>-<app code>-<runtemplate id>``: names this template in Zabbix."""
        rt = self.runtemplate_id if self.runtemplate_id is not None else 0
        return f"{self.company_slug}-{self.app_code}-{rt}"


def load_job_info(
    db: Database, job_id: int, vault: Vault | None
) -> tuple[JobInfo, frozenset[str], tuple[Mapping[str, Any], ...]]:
    """Read a job: (info, secret values to scrub, stored sealed environment).

    Without a vault, or when the secrets cannot be opened, the set of secret values is
    empty and a warning is logged.
    """
    from sqlalchemy import select

    from multiflexi.jobs.environment import load_env, open_overrides
    from multiflexi.jobs.lifecycle import describe_exit, is_final
    from multiflexi.jobs.service import exit_meanings, get_job
    from multiflexi.storage.models import App, Artifact, Company, RunTemplate

    with db.read() as s:
        job = get_job(s, job_id)
        app = s.get(App, job.app_id)
        company = s.get(Company, job.company_id)
        rt = s.get(RunTemplate, job.runtemplate_id) if job.runtemplate_id else None
        meanings = exit_meanings(s, job.app_id)
        arts = s.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.id))
        artifacts = tuple(
            ArtifactInfo(a.id, a.filename, a.content_type, a.size, a.kind, a.state) for a in arts
        )
        stored = tuple(dict(item) for item in (job.env or []))
        overrides = dict(job.overrides or {})
        env = load_env(stored, None)
        duration = job.wall_seconds
        if duration is None and job.begin and job.end:
            duration = (job.end - job.begin).total_seconds()
        info = JobInfo(
            job_id=job.id,
            status=str(job.status),
            exitcode=job.exitcode,
            signal=job.signal,
            exit_meaning=describe_exit(job.exitcode, job.signal, meanings)
            if is_final(job.status)
            else "",
            reason=job.reason or "",
            created=job.created,
            scheduled_at=job.scheduled_at,
            begin=job.begin,
            end=job.end,
            duration=duration,
            cpu_user=job.cpu_user,
            cpu_system=job.cpu_system,
            max_rss_kb=job.max_rss_kb,
            command=job.command or "",
            host=job.host or "",
            executor=job.executor,
            schedule_type=job.schedule_type,
            attempt=job.attempt,
            app_id=job.app_id,
            app_name=app.name if app else "",
            app_code=(app.code or str(app.id)) if app else str(job.app_id),
            app_uuid=(app.uuid or "") if app else "",
            app_version=job.app_version or (app.version if app else ""),
            app_homepage=(app.homepage or "") if app else "",
            company_id=job.company_id,
            company_name=company.name if company else "",
            company_slug=company.slug if company else "",
            zabbix_host=(company.zabbix_host or "") if company else "",
            runtemplate_id=job.runtemplate_id,
            runtemplate_name=rt.name if rt else "",
            interv=rt.interv if rt else "n",
            cron=rt.cron if rt else None,
            artifacts=artifacts,
            variables={v.name: v.value for v in env.values()},
            secret_names=frozenset(v.name for v in env.values() if v.secret),
        )
    secrets: set[str] = set()
    if vault is not None:
        try:
            secrets |= {v.value for v in load_env(stored, vault).values() if v.secret and v.value}
            opened = open_overrides(overrides, vault)
            secrets |= {opened[k] for k in info.secret_names if opened.get(k)}
        except Exception as exc:  # a wrong master key must not stop the other actions
            log.warning("action=open_secrets job_id=%s error=%s", job_id, exc)
    return info, frozenset(secrets), stored


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret (longest first) by the redaction mark."""
    ordered = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
    if not ordered or not text:
        return text
    pattern = re.compile("|".join(re.escape(s) for s in ordered))
    return pattern.sub(REDACTED, text)


def scrub_data(data: Any, secrets: Iterable[str]) -> Any:
    """:func:`scrub` applied to every string inside a JSON-like structure."""
    frozen = frozenset(secrets)
    if isinstance(data, str):
        return scrub(data, frozen)
    if isinstance(data, Mapping):
        return {k: scrub_data(v, frozen) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [scrub_data(v, frozen) for v in data]
    return data


def find_artifact(info: JobInfo, name: str) -> ArtifactInfo | None:
    """The artifact named ``name`` (relative path, or a unique base name)."""
    wanted = name.strip().lstrip("./")
    for art in info.artifacts:
        if art.filename == wanted:
            return art
    by_base = [a for a in info.artifacts if a.filename.rsplit("/", 1)[-1] == wanted]
    return by_base[0] if len(by_base) == 1 else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def download_hint(artifact_id: int) -> str:
    return f"multiflexi-cli artifact:get {artifact_id} --output FILE"


def job_document(info: JobInfo, *, event: str = "job.finished") -> dict[str, Any]:
    """The JSON summary of a job sent to receivers. Contains no variable values at all."""
    return {
        "event": event,
        "multiflexi_version": __version__,
        "job": {
            "id": info.job_id,
            "status": info.status,
            "mode": info.mode,
            "exitcode": info.exitcode,
            "exit_meaning": info.exit_meaning,
            "signal": info.signal,
            "reason": info.reason,
            "attempt": info.attempt,
            "schedule_type": info.schedule_type,
            "executor": info.executor,
            "host": info.host,
            "command": info.command,
            "created": _iso(info.created),
            "scheduled_at": _iso(info.scheduled_at),
            "begin": _iso(info.begin),
            "end": _iso(info.end),
            "duration_seconds": info.duration,
        },
        "application": {
            "id": info.app_id,
            "name": info.app_name,
            "code": info.app_code,
            "uuid": info.app_uuid,
            "version": info.app_version,
        },
        "company": {"id": info.company_id, "name": info.company_name, "slug": info.company_slug},
        "runtemplate": {
            "id": info.runtemplate_id,
            "name": info.runtemplate_name,
            "interval": info.interv,
            "cron": info.cron,
        },
        "metrics": {
            "wall_seconds": info.duration,
            "cpu_user_seconds": info.cpu_user,
            "cpu_system_seconds": info.cpu_system,
            "max_rss_kb": info.max_rss_kb,
        },
        "artifacts": [
            {
                "id": a.id,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "kind": a.kind,
                "state": a.state,
                "download": download_hint(a.id),
            }
            for a in info.artifacts
        ],
    }


def stderr_tail(db: Database, info: JobInfo, lines: int = 20) -> str:
    """The last ``lines`` lines of the job's stderr (as stored: already masked)."""
    from multiflexi.storage import blobs

    for art in info.artifacts:
        if art.kind == "stderr":
            data = blobs.read_tail(db, art.id, 16384).decode("utf-8", "replace")
            return "\n".join(data.splitlines()[-lines:])
    return ""


def issue_title(info: JobInfo) -> str:
    return f"{info.app_name} failed on {info.company_name} (job {info.job_id})"


def issue_body(info: JobInfo, stderr: str) -> str:
    """Markdown describing a failed job, for issue trackers. Scrub it before sending."""
    code = "" if info.exitcode is None else str(info.exitcode)
    rows = [
        ("Job", f"{info.job_id} (attempt {info.attempt})"),
        ("Run template", f"{info.runtemplate_name} (#{info.runtemplate_id})"),
        ("Company", f"{info.company_name} ({info.company_slug})"),
        ("Application", f"{info.app_name} {info.app_version}".strip()),
        ("Status", info.status),
        ("Exit code", f"{code} ({info.exit_meaning})" if info.exit_meaning else code),
        ("Reason", info.reason or "-"),
        ("Started", _iso(info.begin) or "-"),
        ("Ended", _iso(info.end) or "-"),
        ("Host", info.host or "-"),
    ]
    table = "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in rows)
    parts = [
        f"Job {info.job_id} of **{info.app_name}** failed on company **{info.company_name}**.",
        "",
        "| | |\n|---|---|\n" + table,
        "",
        "Command (secrets redacted):",
        "```",
        info.command or "-",
        "```",
    ]
    if stderr.strip():
        parts += ["", "Last lines of stderr:", "```", stderr.rstrip(), "```"]
    parts += [
        "",
        f"Reported by MultiFlexi {__version__}; details: `multiflexi-cli job:show {info.job_id}`",
    ]
    return "\n".join(parts)
