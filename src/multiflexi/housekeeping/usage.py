"""Storage usage: how many bytes of artifacts and output, where, and how fast it grows.

Every figure is a SQL aggregate over ``artifacts.size``; no content is ever read. "Output"
means the stdout/stderr artifacts, "files" every other kind. Pruned artifacts keep their
size for the record but hold no content, so they count as ``pruned_bytes`` and not as
stored bytes. Months and days are UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.orm import Session

from multiflexi.housekeeping.policy import OUTPUT_KINDS
from multiflexi.housekeeping.prune import resolve_company
from multiflexi.storage.models import App, Artifact, Company, Job, RunTemplate
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from multiflexi.storage.database import Database

_LIVE = Artifact.state != "pruned"
_OUTPUT = Artifact.kind.in_(sorted(OUTPUT_KINDS))


def _sum_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, Artifact.size), else_=0)), 0)


def _measures() -> list[ColumnElement[Any]]:
    """The columns every breakdown shows, in this order."""
    return [
        _sum_if(_LIVE & ~_OUTPUT).label("files_bytes"),
        _sum_if(_LIVE & _OUTPUT).label("output_bytes"),
        _sum_if(_LIVE).label("total_bytes"),
        _sum_if(~_LIVE).label("pruned_bytes"),
        func.count(Artifact.id).label("artifacts"),
        func.count(func.distinct(Artifact.job_id)).label("jobs"),
    ]


_MEASURE_NAMES = ("files_bytes", "output_bytes", "total_bytes", "pruned_bytes", "artifacts", "jobs")


def _period(dialect: str, column: Any, unit: str) -> ColumnElement[Any]:
    """``YYYY-MM`` or ``YYYY-MM-DD`` of a UTC timestamp, per backend."""
    if dialect == "sqlite":
        fmt = "%Y-%m" if unit == "month" else "%Y-%m-%d"
        return func.strftime(fmt, column)
    if dialect == "pgsql":
        return func.to_char(column, "YYYY-MM" if unit == "month" else "YYYY-MM-DD")
    return func.date_format(column, "%Y-%m" if unit == "month" else "%Y-%m-%d")


def _row(keys: dict[str, Any], values: Any) -> dict[str, Any]:
    out = dict(keys)
    for name, value in zip(_MEASURE_NAMES, values, strict=True):
        out[name] = int(value or 0)
    return out


def _scope(stmt: Any, company_id: int | None) -> Any:
    return stmt if company_id is None else stmt.where(Job.company_id == company_id)


def _by_company(session: Session, company_id: int | None) -> list[dict[str, Any]]:
    stmt = (
        select(Job.company_id, Company.slug, Company.name, *_measures())
        .join(Job, Job.id == Artifact.job_id)
        .join(Company, Company.id == Job.company_id)
        .group_by(Job.company_id, Company.slug, Company.name)
    )
    rows = session.execute(_scope(stmt, company_id)).all()
    out = [_row({"company_id": r[0], "company": r[1], "name": r[2]}, r[3:]) for r in rows]
    return sorted(out, key=lambda r: -r["total_bytes"])


def _by_app(session: Session, company_id: int | None) -> list[dict[str, Any]]:
    stmt = (
        select(Job.app_id, App.name, *_measures())
        .join(Job, Job.id == Artifact.job_id)
        .join(App, App.id == Job.app_id)
        .group_by(Job.app_id, App.name)
    )
    rows = session.execute(_scope(stmt, company_id)).all()
    out = [_row({"app_id": r[0], "app": r[1]}, r[2:]) for r in rows]
    return sorted(out, key=lambda r: -r["total_bytes"])


def _by_template(session: Session, company_id: int | None) -> list[dict[str, Any]]:
    stmt = (
        select(Job.runtemplate_id, RunTemplate.name, Job.company_id, *_measures())
        .join(Job, Job.id == Artifact.job_id)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .group_by(Job.runtemplate_id, RunTemplate.name, Job.company_id)
    )
    rows = session.execute(_scope(stmt, company_id)).all()
    out = [
        _row({"runtemplate_id": r[0], "runtemplate": r[1], "company_id": r[2]}, r[3:]) for r in rows
    ]
    return sorted(out, key=lambda r: -r["total_bytes"])


def _by_month(session: Session, dialect: str, company_id: int | None) -> list[dict[str, Any]]:
    # Grouped by the alias: PostgreSQL binds the format string separately in SELECT and
    # GROUP BY and would not see them as the same expression.
    month = _period(dialect, Artifact.created, "month").label("period")
    stmt = select(month, *_measures()).group_by(literal_column("period"))
    if company_id is not None:
        stmt = stmt.join(Job, Job.id == Artifact.job_id)
    rows = session.execute(_scope(stmt, company_id)).all()
    return sorted((_row({"month": r[0]}, r[1:]) for r in rows), key=lambda r: r["month"])


def _largest(session: Session, company_id: int | None, top: int) -> list[dict[str, Any]]:
    stmt = (
        select(
            Artifact.id,
            Artifact.job_id,
            Artifact.filename,
            Artifact.kind,
            Artifact.size,
            Artifact.created,
            Job.company_id,
            Job.runtemplate_id,
        )
        .join(Job, Job.id == Artifact.job_id)
        .where(_LIVE)
        .order_by(Artifact.size.desc(), Artifact.id)
        .limit(top)
    )
    keys = ("id", "job_id", "filename", "kind", "size", "created", "company_id", "runtemplate_id")
    return [dict(zip(keys, row, strict=True)) for row in session.execute(_scope(stmt, company_id))]


def _growth(
    session: Session, dialect: str, company_id: int | None, days: int, now: datetime
) -> dict[str, Any]:
    """Bytes added per day (everything stored that day, pruned since or not)."""
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = _period(dialect, Artifact.created, "day").label("period")
    stmt = (
        select(day, func.coalesce(func.sum(Artifact.size), 0), func.count(Artifact.id))
        .where(Artifact.created >= start)
        .group_by(literal_column("period"))
    )
    if company_id is not None:
        stmt = stmt.join(Job, Job.id == Artifact.job_id)
    found = {r[0]: (int(r[1]), int(r[2])) for r in session.execute(_scope(stmt, company_id))}
    per_day = []
    for offset in range(days):
        key = (start + timedelta(days=offset)).strftime("%Y-%m-%d")
        size, count = found.get(key, (0, 0))
        per_day.append({"day": key, "bytes": size, "artifacts": count})
    return {
        "days": days,
        "since": start,
        "bytes": sum(d["bytes"] for d in per_day),
        "artifacts": sum(d["artifacts"] for d in per_day),
        "per_day": per_day,
    }


def storage_usage(
    db: Database,
    *,
    company: str | None = None,
    top: int = 10,
    days: int = 30,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole ``storage:usage`` report as one JSON-ready dict."""
    moment = now or utcnow()
    with db.read() as session:
        company_id = resolve_company(session, company)
        totals_stmt = select(*_measures())
        if company_id is not None:
            totals_stmt = totals_stmt.join(Job, Job.id == Artifact.job_id)
        totals = _row({}, session.execute(_scope(totals_stmt, company_id)).one())
        return {
            "backend": db.dialect,
            "company_id": company_id,
            "totals": totals,
            "by_company": _by_company(session, company_id),
            "by_app": _by_app(session, company_id),
            "by_runtemplate": _by_template(session, company_id),
            "by_month": _by_month(session, db.dialect, company_id),
            "largest": _largest(session, company_id, top),
            "growth": _growth(session, db.dialect, company_id, max(1, days), moment),
        }
