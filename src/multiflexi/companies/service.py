"""Companies (tenants): records, environment, and which applications they use.

Every function takes the caller's :class:`~sqlalchemy.orm.Session` and raises before
anything is committed, so a refused change leaves the database as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from multiflexi.companies.slug import slugify, unique_slug, validate_slug
from multiflexi.env.layers import EnvVar
from multiflexi.errors import Conflict, Invalid, NotFound, UsageError
from multiflexi.storage.models import (
    App,
    Company,
    CompanyApp,
    CompanyEnv,
    Job,
    RunTemplate,
    company_name_key,
    table_of,
)
from multiflexi.storage.types import utcnow

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Names whose values are treated as secret (redacted in displays) in company env.
_SECRET_NAME = re.compile(r"PASSW|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)

FIELDS = ("name", "slug", "ic", "email", "zabbix_host", "enabled")


def company_record(company: Company, tz: str | None = None) -> dict[str, Any]:
    """The company as a plain mapping; times in time zone ``tz`` (default UTC)."""
    from multiflexi.scheduling.calendar import zone

    def local(value: datetime | None) -> datetime | None:
        return value.astimezone(zone(tz)) if value is not None and tz else value

    return {
        "id": company.id,
        "name": company.name,
        "slug": company.slug,
        "ic": company.ic,
        "email": company.email,
        "enabled": company.enabled,
        "zabbix_host": company.zabbix_host,
        "created": local(company.created),
        "updated": local(company.updated),
    }


def list_companies(session: Session) -> list[Company]:
    return list(session.scalars(select(Company).order_by(Company.id)))


def get_company(session: Session, company_id: int) -> Company:
    company = session.get(Company, company_id)
    if company is None:
        raise NotFound(f"company {company_id} not found")
    return company


def find_company(
    session: Session,
    *,
    company_id: int | None = None,
    ic: str | None = None,
    name: str | None = None,
    slug: str | None = None,
) -> Company:
    """The company with the first given identifier (id, ic, name, slug, in that order)."""
    if company_id is not None:
        return get_company(session, company_id)
    lookups = (
        (Company.ic, ic, ic, "IC"),
        (Company.name_key, None if name is None else company_name_key(name.strip()), name, "name"),
    )
    for column, value, given, what in lookups:
        if value is not None:
            rows = list(session.scalars(select(Company).where(column == value).limit(2)))
            if len(rows) > 1:
                raise Conflict(f"several companies have {what} {given!r}; use --id")
            if not rows:
                raise NotFound(f"no company with {what} {given!r}")
            return rows[0]
    if slug is not None:
        found = session.scalars(select(Company).where(Company.slug == slug)).first()
        if found is None:
            raise NotFound(f"no company with slug {slug!r}")
        return found
    raise UsageError("give the company as an id, --id, --slug, --name or --ic")


def resolve_company(session: Session, ref: str | int) -> Company:
    """A company given as a numeric id or as a slug (``--company``)."""
    text = str(ref).strip()
    if text.isdigit():
        return get_company(session, int(text))
    found = session.scalars(select(Company).where(Company.slug == text)).first()
    if found is None:
        raise NotFound(f"company {text!r} not found")
    return found


def _check_fields(values: Mapping[str, Any]) -> None:
    if "name" in values:
        name = values["name"]
        if not name:
            raise Invalid("company name must not be empty")
        if len(name) > 255:
            raise Invalid("company name is longer than 255 characters")
    if values.get("email") and not _EMAIL.match(values["email"]):
        raise Invalid(f"invalid e-mail address {values['email']!r}")
    if len(values.get("email") or "") > 255:
        raise Invalid("e-mail address is longer than 255 characters")
    if len(values.get("ic") or "") > 32:
        raise Invalid("IC is longer than 32 characters")
    if len(values.get("zabbix_host") or "") > 255:
        raise Invalid("zabbix_host is longer than 255 characters")


def _name_taken(session: Session, name: str, except_id: int | None = None) -> bool:
    """Whether another company has this name, compared by Unicode case folding
    (:func:`~multiflexi.storage.models.company_name_key`). A quick answer with a clear
    message; the unique index on ``name_key`` is what makes it hold under races."""
    query = select(Company.id).where(Company.name_key == company_name_key(name))
    if except_id is not None:
        query = query.where(Company.id != except_id)
    return session.scalars(query).first() is not None


def _slug_taken(session: Session, slug: str, except_id: int | None = None) -> bool:
    query = select(Company.id).where(Company.slug == slug)
    if except_id is not None:
        query = query.where(Company.id != except_id)
    return session.scalars(query).first() is not None


def _flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"{what} conflicts with an existing company (name or slug)") from None


def create_company(
    session: Session,
    *,
    name: str,
    slug: str | None = None,
    ic: str = "",
    email: str = "",
    zabbix_host: str = "",
    enabled: bool = True,
) -> Company:
    """Insert a company. Its slug is derived from the name when not given, and made
    unique with ``_2``, ``_3`` ...; a given slug must be valid and free."""
    name = name.strip()
    _check_fields({"name": name, "ic": ic, "email": email, "zabbix_host": zabbix_host})
    if _name_taken(session, name):
        raise Conflict(f"company with name {name!r} already exists")
    if slug is None or slug == "":
        slug = unique_slug(slugify(name), lambda s: _slug_taken(session, s))
    else:
        validate_slug(slug)
        if _slug_taken(session, slug):
            raise Conflict(f"company with slug {slug!r} already exists")
    company = Company(
        name=name, slug=slug, ic=ic, email=email, zabbix_host=zabbix_host, enabled=enabled
    )
    session.add(company)
    _flush(session, f"company {name!r}")
    return company


def update_company(session: Session, company_id: int, changes: Mapping[str, Any]) -> list[str]:
    """Apply ``changes`` (any of :data:`FIELDS`); returns the names of changed fields."""
    company = get_company(session, company_id)
    values = {
        k: (v.strip() if k == "name" and isinstance(v, str) else v) for k, v in changes.items()
    }
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise Invalid(f"cannot change {', '.join(sorted(unknown))} of a company")
    _check_fields(values)
    if "name" in values and _name_taken(session, values["name"], company.id):
        raise Conflict(f"company with name {values['name']!r} already exists")
    if "slug" in values:
        validate_slug(values["slug"])
        if _slug_taken(session, values["slug"], company.id):
            raise Conflict(f"company with slug {values['slug']!r} already exists")
    changed = [k for k in FIELDS if k in values and getattr(company, k) != values[k]]
    for key in changed:
        setattr(company, key, values[key])
    if changed:
        company.updated = utcnow()
        _flush(session, f"company {company.id}")
    return changed


def remove_company(session: Session, company_id: int, *, force: bool = False) -> list[int]:
    """Delete a company with its environment, app assignments and credentials.

    Refused while it has jobs: jobs are audit records and belong to their company (the
    schema keeps ``job.company_id`` mandatory). Refused while it has run templates unless
    ``force``, which deletes them too. Returns the ids of deleted run templates.
    """
    from multiflexi.runtemplates.service import delete_runtemplates

    company = get_company(session, company_id)
    jobs = session.scalar(select(func.count(Job.id)).where(Job.company_id == company.id)) or 0
    if jobs:
        raise Conflict(
            f"company {company.id} has {jobs} job(s); jobs are kept as audit records, so it "
            f"cannot be removed (disable it with `company:update --id {company.id} "
            "--enabled false`, or delete its jobs first)"
        )
    templates = list(
        session.scalars(select(RunTemplate).where(RunTemplate.company_id == company.id))
    )
    if templates and not force:
        ids = ", ".join(str(t.id) for t in templates)
        raise Conflict(
            f"company {company.id} has {len(templates)} run template(s) ({ids}); "
            "add --force to delete them too"
        )
    removed = delete_runtemplates(session, templates, force=force)
    session.delete(company)
    session.flush()
    return removed


# -- environment ----------------------------------------------------------------------


def looks_secret(name: str) -> bool:
    """Whether a company variable is treated as secret (redacted) by its name."""
    return bool(_SECRET_NAME.search(name))


def list_env(session: Session, company: Company) -> list[CompanyEnv]:
    return list(
        session.scalars(
            select(CompanyEnv)
            .where(CompanyEnv.company_id == company.id)
            .order_by(CompanyEnv.keyword)
        )
    )


def set_env(session: Session, company: Company, values: Mapping[str, str]) -> list[str]:
    """Set variables of a company; returns the names set."""
    from multiflexi.env.names import check_name

    for key, value in values.items():
        check_name(key)
        if "\x00" in value:
            raise Invalid(f"value of {key} contains a NUL character")
    existing = {e.keyword: e for e in list_env(session, company)}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            session.add(CompanyEnv(company_id=company.id, keyword=key, value=value))
    session.flush()
    return list(values)


def unset_env(session: Session, company: Company, keys: Iterable[str]) -> list[str]:
    """Remove variables of a company; a name it does not have is an error."""
    wanted = list(dict.fromkeys(keys))
    existing = {e.keyword: e for e in list_env(session, company)}
    missing = [k for k in wanted if k not in existing]
    if missing:
        raise NotFound(f"company {company.id} has no variable {', '.join(missing)}")
    for key in wanted:
        session.delete(existing[key])
    session.flush()
    return wanted


_COMPANY_ENV = (
    select(table_of(CompanyEnv).c.keyword, table_of(CompanyEnv).c.value)
    .where(table_of(CompanyEnv).c.company_id == bindparam("b_company"))
    .order_by(table_of(CompanyEnv).c.keyword)
)  # Core, built once: read for every job


def company_env_layer(session: Session, company: Company) -> list[EnvVar]:
    """The company's environment as a layer, source ``company:<id>``."""
    source = f"company:{company.id}"
    rows = session.connection().execute(_COMPANY_ENV, {"b_company": company.id})
    return [EnvVar(k, v, source, secret=looks_secret(k)) for k, v in rows]


# -- applications of a company -------------------------------------------------------


def find_app(session: Session, *, app_id: int | None = None, app_uuid: str | None = None) -> App:
    """An application by id or UUID."""
    if app_id is not None and app_uuid:
        raise UsageError("give --app_id or --app_uuid, not both")
    if app_id is not None:
        app = session.get(App, app_id)
        if app is None:
            raise NotFound(f"application {app_id} not found")
        return app
    if app_uuid:
        found = session.scalars(select(App).where(App.uuid == app_uuid.strip())).first()
        if found is None:
            raise NotFound(f"no application with UUID {app_uuid!r}")
        return found
    raise UsageError("missing application: give --app_id or --app_uuid")


def _assignment(session: Session, company_id: int, app_id: int) -> CompanyApp | None:
    return session.scalars(
        select(CompanyApp).where(CompanyApp.company_id == company_id, CompanyApp.app_id == app_id)
    ).first()


def ensure_assigned(session: Session, company: Company, app: App) -> bool:
    """Assign ``app`` to ``company`` if needed; True when it was not assigned before."""
    if _assignment(session, company.id, app.id) is not None:
        return False
    session.add(CompanyApp(company_id=company.id, app_id=app.id))
    session.flush()
    return True


def assign_app(session: Session, company: Company, app: App) -> RunTemplate | None:
    """Assign an application and create its default run template (named after the app,
    not scheduled), as upstream does. Returns None when it was assigned already."""
    if not ensure_assigned(session, company, app):
        return None
    template = RunTemplate(app_id=app.id, company_id=company.id, name=app.name, interv="n")
    session.add(template)
    session.flush()
    return template


def unassign_app(session: Session, company: Company, app: App) -> list[int]:
    """Remove an assignment and the pair's run templates (their waiting jobs are
    cancelled; finished jobs stay). Refused while one of their jobs runs."""
    from multiflexi.runtemplates.service import delete_runtemplates

    link = _assignment(session, company.id, app.id)
    templates = list(
        session.scalars(
            select(RunTemplate).where(
                RunTemplate.company_id == company.id, RunTemplate.app_id == app.id
            )
        )
    )
    if link is None and not templates:
        raise NotFound(f"application {app.id} is not assigned to company {company.id}")
    removed = delete_runtemplates(session, templates, force=False)
    if link is not None:
        session.delete(link)
    session.flush()
    return removed


def list_company_apps(
    session: Session, *, company_id: int | None = None, app_id: int | None = None
) -> list[dict[str, Any]]:
    """Assignments with company and app names and the ids of the pair's run templates."""
    query = (
        select(CompanyApp, Company, App)
        .join(Company, Company.id == CompanyApp.company_id)
        .join(App, App.id == CompanyApp.app_id)
        .order_by(CompanyApp.company_id, CompanyApp.app_id)
    )
    if company_id is not None:
        query = query.where(CompanyApp.company_id == company_id)
    if app_id is not None:
        query = query.where(CompanyApp.app_id == app_id)
    pair_query = select(RunTemplate.company_id, RunTemplate.app_id, RunTemplate.id)
    if company_id is not None:
        pair_query = pair_query.where(RunTemplate.company_id == company_id)
    if app_id is not None:
        pair_query = pair_query.where(RunTemplate.app_id == app_id)
    pairs = session.execute(pair_query)
    templates: dict[tuple[int, int], list[int]] = {}
    for cid, aid, rid in pairs:
        templates.setdefault((cid, aid), []).append(rid)
    return [
        {
            "id": link.id,
            "company_id": company.id,
            "company_name": company.name,
            "company_slug": company.slug,
            "app_id": app.id,
            "app_name": app.name,
            "app_uuid": app.uuid,
            "runtemplate_ids": sorted(templates.get((company.id, app.id), [])),
        }
        for link, company, app in session.execute(query)
    ]
