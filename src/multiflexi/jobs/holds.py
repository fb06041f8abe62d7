"""Held jobs: waiting jobs whose company or application is disabled, or whose run
template is not active.

A held job stays ``scheduled`` with its place in the queue; the executors' claim passes
over it (:mod:`multiflexi.queue`), ``job:run`` refuses it, and it runs as planned once
everything it belongs to is enabled again (or ``queue:clear`` cancels it). Holding, not
cancelling: disabling a company for an afternoon must not throw away its queue.

The rule is read from the rows as they are at each claim, never copied into the queue,
so it cannot drift from the flags it follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, case, literal, select
from sqlalchemy.orm import Session

from multiflexi.storage.models import App, Company, Job, RunTemplate, table_of

#: The words of each hold, in the order they are told (the company first: disabling it
#: holds everything of it).
COMPANY, APPLICATION, TEMPLATE = "company", "application", "run template"


def hold_reason(
    *,
    company: tuple[int, str, bool] | None,
    app: tuple[int, str, bool] | None,
    rt: tuple[int, str, bool] | None,
) -> str | None:
    """Why a waiting job of these (id, name, enabled) is held, or None. Pure."""
    for noun, row, state in (
        (COMPANY, company, "disabled"),
        (APPLICATION, app, "disabled"),
        (TEMPLATE, rt, "not active"),
    ):
        if row is not None and not row[2]:
            return f"held: {noun} {row[0]} ({row[1]}) is {state}"
    return None


def runnable(company: Any, app: Any, rt: Any) -> ColumnElement[bool]:
    """SQL: the job's company and application are enabled and its template (if any) is
    active; ``company``, ``app``, ``rt``: the tables (or aliases) joined to the job, the
    template by an outer join."""
    return and_(
        company.c.enabled.is_not(False), app.c.enabled.is_not(False), rt.c.active.is_not(False)
    )


def held_expression() -> ColumnElement[str | None]:
    """SQL: the short reason a job of the joined Company, App and RunTemplate is held."""
    return case(
        (Company.enabled.is_(False), literal("company disabled")),
        (App.enabled.is_(False), literal("application disabled")),
        (RunTemplate.active.is_(False), literal("run template not active")),
        else_=None,
    )


def held_jobs(session: Session, job_ids: Sequence[int]) -> dict[int, str]:
    """The hold of each of these jobs that is held (waiting or not: the caller asks
    about waiting ones)."""
    if not job_ids:
        return {}
    stmt = (
        select(
            Job.id,
            Company.id,
            Company.name,
            Company.enabled,
            App.id,
            App.name,
            App.enabled,
            RunTemplate.id,
            RunTemplate.name,
            RunTemplate.active,
        )
        .join(Company, Company.id == Job.company_id)
        .join(App, App.id == Job.app_id)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .where(Job.id.in_(list(job_ids)))
    )
    found: dict[int, str] = {}
    for row in session.execute(stmt):
        why = hold_reason(
            company=(row[1], row[2], bool(row[3])),
            app=(row[4], row[5], bool(row[6])),
            rt=None if row[7] is None else (row[7], row[8], bool(row[9])),
        )
        if why is not None:
            found[int(row[0])] = why
    return found


def job_hold(session: Session, job_id: int) -> str | None:
    """Why this job is held, or None."""
    return held_jobs(session, [job_id]).get(job_id)


def waiting_counts(
    session: Session,
    *,
    company_id: int | None = None,
    app_id: int | None = None,
    runtemplate_id: int | None = None,
) -> tuple[int, int]:
    """(held, free): the waiting jobs of a company, application or run template, those
    held and those the executors may claim."""
    from sqlalchemy import func

    from multiflexi.queue import WAITING

    free = runnable(table_of(Company), table_of(App), table_of(RunTemplate))
    stmt = (
        select(func.count(), func.coalesce(func.sum(case((free, 0), else_=1)), 0))
        .select_from(Job)
        .join(Company, Company.id == Job.company_id)
        .join(App, App.id == Job.app_id)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .where(Job.status.in_(list(WAITING)))
    )
    if company_id is not None:
        stmt = stmt.where(Job.company_id == company_id)
    if app_id is not None:
        stmt = stmt.where(Job.app_id == app_id)
    if runtemplate_id is not None:
        stmt = stmt.where(Job.runtemplate_id == runtemplate_id)
    total, held = session.execute(stmt).one()
    return int(held), int(total) - int(held)
