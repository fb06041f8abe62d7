"""What a user may read and change, page by page: the scoped queries of the API (and of
the web interface to come).

Every function takes the :class:`~multiflexi.accounts.access.Principal` and goes through
:func:`~multiflexi.accounts.access.scoped` (lists, counts) or
:func:`~multiflexi.accounts.access.visible` / ``operable`` (one object): an object of a
company the user is not assigned to is not found. Pagination is :class:`Page`:
``limit``, ``offset`` and ``order`` (a column name, ``-name`` for descending).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from multiflexi.accounts.access import Principal, operable, require_admin, scoped, visible
from multiflexi.errors import Invalid, NotFound
from multiflexi.storage.models import (
    App,
    Artifact,
    Company,
    Credential,
    CredentialType,
    Job,
    RunTemplate,
    User,
)

if TYPE_CHECKING:
    from sqlalchemy.sql import Select

    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page:
    limit: int = 20
    offset: int = 0
    order: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise Invalid(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if self.offset < 0:
            raise Invalid(f"offset must not be negative, got {self.offset}")

    def apply(self, stmt: Select[Any], model: Any) -> Select[Any]:
        """Order (default: id), then offset and limit."""
        column = model.id
        descending = False
        if self.order:
            name = self.order.lstrip("-+ ")
            descending = self.order.startswith("-")
            column = _column(model, name)
        ordered = stmt.order_by(column.desc() if descending else column.asc())
        if column is not model.id:  # a stable order for equal values
            ordered = ordered.order_by(model.id.desc() if descending else model.id.asc())
        return ordered.offset(self.offset).limit(self.limit)


def _column(model: Any, name: str) -> Any:
    """The mapped column of ``model`` called ``name`` (attribute or database name)."""
    for attr in model.__mapper__.column_attrs:
        if name in (attr.key, attr.columns[0].name) and attr.key not in SECRET_ATTRS:
            return getattr(model, attr.key)
    raise Invalid(f"cannot order by {name!r}")


#: Columns nobody may sort or filter by (ordering would leak their content).
SECRET_ATTRS = {"password", "env", "overrides", "argv", "content", "token_hash"}


# -- applications (global: every authenticated user sees them) ------------------------------


def list_apps(session: Session, who: Principal, page: Page) -> list[App]:
    return list(session.scalars(page.apply(select(App), App)))


def get_app(session: Session, who: Principal, app_id: int) -> App:
    app = session.get(App, app_id)
    if app is None:
        raise NotFound(f"application {app_id} not found")
    return app


# -- companies ------------------------------------------------------------------------------


def list_companies(session: Session, who: Principal, page: Page) -> list[Company]:
    return list(session.scalars(page.apply(scoped(select(Company), Company.id, who), Company)))


def get_company(session: Session, who: Principal, company_id: int) -> Company:
    visible(who, company_id, f"company {company_id}")
    company = session.get(Company, company_id)
    if company is None:
        raise NotFound(f"company {company_id} not found")
    return company


# -- run templates --------------------------------------------------------------------------


def list_runtemplates(
    session: Session,
    who: Principal,
    page: Page,
    *,
    company_id: int | None = None,
    app_id: int | None = None,
) -> list[RunTemplate]:
    stmt = scoped(select(RunTemplate), RunTemplate.company_id, who)
    if company_id is not None:
        stmt = stmt.where(RunTemplate.company_id == company_id)
    if app_id is not None:
        stmt = stmt.where(RunTemplate.app_id == app_id)
    return list(session.scalars(page.apply(stmt, RunTemplate)))


def get_runtemplate(
    session: Session, who: Principal, rt_id: int, *, write: bool = False
) -> RunTemplate:
    rt = session.get(RunTemplate, rt_id)
    what = f"run template {rt_id}"
    (operable if write else visible)(who, rt.company_id if rt else None, what)
    assert rt is not None
    return rt


# -- jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobQuery:
    company_id: int | None = None
    runtemplate_id: int | None = None
    app_id: int | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: which time ``since``/``until`` compare with: created or begin
    time_field: str = "created"

    def where(self, stmt: Select[Any]) -> Select[Any]:
        from multiflexi.jobs.listing import JobFilter

        if self.company_id is not None:
            stmt = stmt.where(Job.company_id == self.company_id)
        if self.runtemplate_id is not None:
            stmt = stmt.where(Job.runtemplate_id == self.runtemplate_id)
        if self.app_id is not None:
            stmt = stmt.where(Job.app_id == self.app_id)
        statuses = JobFilter(status=self.status).statuses()
        if statuses:
            stmt = stmt.where(Job.status.in_(statuses))
        column = Job.begin if self.time_field == "begin" else Job.created
        if self.since is not None:
            stmt = stmt.where(column >= self.since)
        if self.until is not None:
            stmt = stmt.where(column <= self.until)
        return stmt


def list_jobs(session: Session, who: Principal, page: Page, query: JobQuery) -> list[Job]:
    stmt = query.where(scoped(select(Job), Job.company_id, who))
    return list(session.scalars(page.apply(stmt, Job)))


def count_jobs(session: Session, who: Principal, query: JobQuery) -> int:
    stmt = query.where(scoped(select(func.count(Job.id)), Job.company_id, who))
    return int(session.scalar(stmt) or 0)


def get_job(session: Session, who: Principal, job_id: int, *, write: bool = False) -> Job:
    job = session.get(Job, job_id)
    (operable if write else visible)(who, job.company_id if job else None, f"job {job_id}")
    assert job is not None
    return job


def matching_job_ids(session: Session, who: Principal, query: JobQuery) -> list[int]:
    """Ids of the jobs matching ``query`` that ``who`` may see (bulk deletion)."""
    stmt = query.where(scoped(select(Job.id), Job.company_id, who)).order_by(Job.id)
    return list(session.scalars(stmt))


def delete_jobs(
    db: Database, settings: Settings, who: Principal, query: JobQuery, *, dry_run: bool
) -> dict[str, Any]:
    """Delete every finished or waiting job matching ``query`` (admin only; at least one
    filter). Running jobs are left alone and reported."""
    from multiflexi.jobs.service import delete_job
    from multiflexi.queue import cancel_jobs

    require_admin(who)
    if query == JobQuery() or query == JobQuery(time_field=query.time_field):
        raise Invalid("give at least one filter (runtemplate_id, company_id, status, from, to)")
    with db.read() as s:
        ids = matching_job_ids(s, who, query)
        running = set(
            s.scalars(select(Job.id).where(Job.id.in_(ids), Job.status == "running")) if ids else []
        )
    deletable = [i for i in ids if i not in running]
    deleted: list[int] = []
    if not dry_run:
        cancel_jobs(db, deletable, "deleted through the API")
        for job_id in deletable:
            try:
                delete_job(db, settings, job_id)
            except NotFound:  # gone meanwhile
                continue
            deleted.append(job_id)
    return {
        "dry_run": dry_run,
        "matched": len(ids),
        "deleted": len(deleted),
        "job_ids": deletable if dry_run else deleted,
        "skipped_running": sorted(running),
    }


# -- artifacts ------------------------------------------------------------------------------


def list_artifacts(session: Session, who: Principal, job_id: int) -> list[Artifact]:
    get_job(session, who, job_id)
    stmt = select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id)
    return list(session.scalars(stmt))


def get_artifact(session: Session, who: Principal, artifact_id: int) -> Artifact:
    art = session.get(Artifact, artifact_id)
    job = session.get(Job, art.job_id) if art is not None else None
    visible(who, job.company_id if job else None, f"artifact {artifact_id}")
    assert art is not None
    return art


def find_artifact(session: Session, who: Principal, job_id: int, name: str) -> Artifact:
    """A job's artifact by its stored file name (compared, never used as a path)."""
    get_job(session, who, job_id)
    art = session.scalar(
        select(Artifact)
        .where(Artifact.job_id == job_id, Artifact.filename == name)
        .order_by(Artifact.id)
        .limit(1)
    )
    if art is None:
        raise NotFound(f"artifact {name!r} of job {job_id} not found")
    return art


# -- credentials ----------------------------------------------------------------------------


def list_credentials(
    session: Session, who: Principal, page: Page, *, company_id: int | None = None
) -> list[Credential]:
    stmt = scoped(select(Credential), Credential.company_id, who)
    if company_id is not None:
        stmt = stmt.where(Credential.company_id == company_id)
    return list(session.scalars(page.apply(stmt, Credential)))


def get_credential(
    session: Session, who: Principal, credential_id: int, *, write: bool = False
) -> Credential:
    cred = session.get(Credential, credential_id)
    what = f"credential {credential_id}"
    (operable if write else visible)(who, cred.company_id if cred else None, what)
    assert cred is not None
    return cred


def list_credential_types(session: Session, who: Principal, page: Page) -> list[CredentialType]:
    """Global credential types and those of the companies ``who`` may see."""
    stmt = select(CredentialType)
    ids = who.visible_ids()
    if ids is not None:
        stmt = stmt.where(CredentialType.company_id.is_(None) | CredentialType.company_id.in_(ids))
    return list(session.scalars(page.apply(stmt, CredentialType)))


def get_credential_type(session: Session, who: Principal, type_id: int) -> CredentialType:
    ct = session.get(CredentialType, type_id)
    if ct is None or (ct.company_id is not None and who.role_in(ct.company_id) is None):
        raise NotFound(f"credential type {type_id} not found")
    return ct


# -- users ----------------------------------------------------------------------------------


def list_users(session: Session, who: Principal, page: Page) -> list[User]:
    """All users for an admin; oneself for anyone else."""
    stmt = select(User)
    if not who.admin:
        stmt = stmt.where(User.id == who.user_id)
    return list(session.scalars(page.apply(stmt, User)))


def get_user(session: Session, who: Principal, user_id: int) -> User:
    if not who.admin and user_id != who.user_id:
        raise NotFound(f"user {user_id} not found")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def counts(session: Session, who: Principal) -> dict[str, int]:
    """How many companies, apps, run templates, credentials and jobs ``who`` can see."""

    def n(model: Any, company_col: Any | None) -> int:
        stmt = select(func.count()).select_from(model)
        if company_col is not None:
            stmt = scoped(stmt, company_col, who)
        return int(session.scalar(stmt) or 0)

    return {
        "companies": n(Company, Company.id),
        "apps": n(App, None),
        "runtemplates": n(RunTemplate, RunTemplate.company_id),
        "credentials": n(Credential, Credential.company_id),
        "jobs": n(Job, Job.company_id),
    }
