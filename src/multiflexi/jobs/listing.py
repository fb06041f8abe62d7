"""``job:list``: newest jobs first, with the names a reader wants next to the ids.

Uses :mod:`multiflexi.storage.fastread` so that the command stays well under a third of
a second; no SQLAlchemy import on this path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from multiflexi.errors import Invalid, NotFound
from multiflexi.storage.fastread import connect, query, utc

if TYPE_CHECKING:
    from multiflexi.config import Settings

STATUSES = ("loaded", "scheduled", "running", "success", "failed", "lost", "cancelled")
COLUMNS = (
    "id", "status", "runtemplate_id", "runtemplate", "app", "company", "created", "begin",
    "end", "exitcode", "duration", "reason", "not_before", "held",
)  # fmt: skip
#: Why a waiting job is not claimed (multiflexi.jobs.holds), in plain SQL for fastread.
_HELD = (
    "CASE WHEN j.status IN ('loaded', 'scheduled') THEN CASE"
    " WHEN NOT c.enabled THEN 'company disabled'"
    " WHEN NOT a.enabled THEN 'application disabled'"
    " WHEN r.id IS NOT NULL AND NOT r.active THEN 'run template not active' END END"
)


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    company: str | None = None
    runtemplate_id: int | None = None
    app: str | None = None
    since: datetime | None = None
    limit: int = 50
    offset: int = 0

    def statuses(self) -> list[str]:
        if not self.status:
            return []
        wanted = [s.strip() for s in self.status.split(",") if s.strip()]
        for s in wanted:
            if s not in STATUSES:
                raise Invalid(f"unknown status {s!r}; valid: {', '.join(STATUSES)}")
        return wanted


def list_jobs(settings: Settings, flt: JobFilter) -> list[dict[str, Any]]:
    """The jobs matching ``flt``; raises fastread.Unavailable when the database can't be
    read this way (the caller then uses the full path)."""
    statuses = flt.statuses()
    with connect(settings) as (conn, q, mark):
        where: list[str] = []
        params: list[Any] = []
        if statuses:
            where.append(f"j.status IN ({', '.join([mark] * len(statuses))})")
            params += statuses
        if flt.company:
            if flt.company.isdigit():
                where.append(f"j.company_id = {mark}")
                params.append(int(flt.company))
            else:
                where.append(f"c.slug = {mark}")
                params.append(flt.company)
        if flt.runtemplate_id is not None:
            where.append(f"j.runtemplate_id = {mark}")
            params.append(flt.runtemplate_id)
        if flt.app:
            if flt.app.isdigit():
                where.append(f"j.app_id = {mark}")
                params.append(int(flt.app))
            else:
                where.append(f"a.name = {mark}")
                params.append(flt.app)
        if flt.since is not None:
            where.append(f"j.created >= {mark}")
            params.append(flt.since.replace(tzinfo=None).isoformat(sep=" "))
        sql = (
            f"SELECT j.id, j.status, j.runtemplate_id, r.name, a.name, c.slug, j.created,"
            f" j.{q}begin{q}, j.{q}end{q}, j.exitcode, j.wall_seconds, j.reason, s.{q}after{q},"
            f" {_HELD}"
            f" FROM job j JOIN apps a ON a.id = j.app_id JOIN company c ON c.id = j.company_id"
            f" LEFT JOIN runtemplate r ON r.id = j.runtemplate_id"
            f" LEFT JOIN schedule s ON s.job = j.id"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY j.id DESC LIMIT {int(flt.limit)} OFFSET {int(flt.offset)}"
        )
        rows = query(conn, sql, params)
        if not rows:
            _check_named(conn, mark, flt)
    out = []
    for row in rows:
        record = dict(zip(COLUMNS, row, strict=True))
        for key in ("created", "begin", "end", "not_before"):
            record[key] = utc(record[key])
        if record["duration"] is not None:
            record["duration"] = round(float(record["duration"]), 3)
        out.append(record)
    return out


def _check_named(conn: Any, mark: str, flt: JobFilter) -> None:
    """No jobs: a company, application or template that does not exist is a typo, and
    says so, rather than look like an empty result."""
    checks: list[tuple[str, str, str, Any]] = []
    if flt.company:
        by = "id" if flt.company.isdigit() else "slug"
        checks.append(("company", by, "company", flt.company))
    if flt.app:
        by = "id" if flt.app.isdigit() else "name"
        checks.append(("apps", by, "application", flt.app))
    if flt.runtemplate_id is not None:
        checks.append(("runtemplate", "id", "run template", flt.runtemplate_id))
    for table, column, what, value in checks:
        key = int(value) if column == "id" else value
        if not query(conn, f"SELECT 1 FROM {table} WHERE {column} = {mark}", [key]):
            raise NotFound(f"{what} {value!r} not found")


def list_jobs_full(settings: Settings, flt: JobFilter) -> list[dict[str, Any]]:
    """The same through the full storage layer (migrates SQLite, explains errors)."""
    from multiflexi.errors import DatabaseError
    from multiflexi.storage.database import Database
    from multiflexi.storage.fastread import Unavailable

    db = Database(settings)
    try:
        return list_jobs(settings, flt)
    except Unavailable as exc:
        raise DatabaseError(
            f"cannot read jobs from {settings.describe_database()}: {exc}"
        ) from None
    finally:
        db.dispose()
