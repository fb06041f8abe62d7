"""Run templates the scheduler cannot queue, recorded where an operator looks.

When a due template cannot become a job (a secret that does not open, an unknown
executor, a cron expression no longer valid, ...) the scheduler writes the reason and
its first moment to ``runtemplate.last_schedule_error``/``last_schedule_error_at``; the
transaction that next queues a job of the template clears both. ``runtemplate:list``,
``runtemplate:show``, ``status``, the Prometheus metrics and Zabbix read them from here:
no failure to schedule lives only in a log line.

Only templates that would be scheduled count as broken (active, with a schedule, of an
enabled company and application): a disabled one's jobs are *held*, which
``queue:status`` tells.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from multiflexi.storage.models import App, Company, RunTemplate, table_of

_RT = table_of(RunTemplate)
#: Sets a template's reason unless it holds that reason already: the first moment stays.
_RECORD = (
    update(_RT)
    .where(
        _RT.c.id == bindparam("b_id"),
        or_(
            _RT.c.last_schedule_error.is_(None),
            _RT.c.last_schedule_error != bindparam("b_why"),
        ),
    )
    .values(last_schedule_error=bindparam("b_why"), last_schedule_error_at=bindparam("b_at"))
)
#: Longest reason stored (a reason is one line; the column is TEXT on every backend).
MAX_REASON = 2000


def one_line(why: str) -> str:
    """A reason as it is stored: one line, bounded."""
    text = " ".join(why.split()) or "unknown error"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def record_errors(session: Session, errors: Mapping[int, str], now: datetime) -> None:
    """Record why each template could not be scheduled, in the caller's transaction."""
    if errors:
        session.execute(
            _RECORD,
            [{"b_id": rt_id, "b_why": one_line(why), "b_at": now} for rt_id, why in errors.items()],
        )


def _scheduled() -> ColumnElement[bool]:
    return and_(
        RunTemplate.active.is_(True),
        RunTemplate.interv != "n",
        Company.enabled.is_(True),
        App.enabled.is_(True),
        RunTemplate.last_schedule_error.is_not(None),
    )


def broken_count(session: Session) -> int:
    """How many templates that should be scheduled cannot be."""
    stmt = (
        select(func.count())
        .select_from(RunTemplate)
        .join(Company, Company.id == RunTemplate.company_id)
        .join(App, App.id == RunTemplate.app_id)
        .where(_scheduled())
    )
    return int(session.scalar(stmt) or 0)


def broken_templates(session: Session, limit: int | None = None) -> list[dict[str, Any]]:
    """The templates that should be scheduled and cannot be, oldest problem first."""
    stmt = (
        select(
            RunTemplate.id,
            RunTemplate.name,
            Company.id.label("company_id"),
            Company.slug,
            App.id.label("app_id"),
            App.name.label("app_name"),
            App.code,
            RunTemplate.last_schedule_error,
            RunTemplate.last_schedule_error_at,
        )
        .join(Company, Company.id == RunTemplate.company_id)
        .join(App, App.id == RunTemplate.app_id)
        .where(_scheduled())
        .order_by(RunTemplate.last_schedule_error_at, RunTemplate.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        {
            "runtemplate_id": r.id,
            "runtemplate": r.name,
            "company_id": r.company_id,
            "company": r.slug,
            "app_id": r.app_id,
            "app": r.app_name,
            "app_code": r.code or "",
            "error": r.last_schedule_error,
            "since": r.last_schedule_error_at,
        }
        for r in session.execute(stmt)
    ]
