"""Bindings of credentials to run templates (``runtplcreds``).

A run template uses at most one credential of each type, as upstream: binding another
credential of a type already bound replaces the old binding. The credential and the run
template must belong to the same company.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.credentials.service import bound_credentials, get_credential, get_runtemplate
from multiflexi.credentials.types import get_type
from multiflexi.errors import Conflict, NotFound
from multiflexi.storage.models import Company, Credential, RunTplCred


def assign_credential(session: Session, runtemplate_id: int, credential_id: int) -> dict[str, Any]:
    """Bind a credential to a run template of the same company. A credential of the same
    type already bound is unbound (one credential per type, as upstream)."""
    rt = get_runtemplate(session, runtemplate_id)
    cred = get_credential(session, credential_id)
    if cred.company_id != rt.company_id:
        raise Conflict(
            f"credential {cred.id} belongs to company {_company_label(session, cred.company_id)}"
            f" but run template {rt.id} belongs to company {_company_label(session, rt.company_id)}"
        )
    ct = get_type(session, id=cred.credential_type_id)
    same_type = list(
        session.scalars(
            select(RunTplCred)
            .join(Credential, Credential.id == RunTplCred.credential_id)
            .where(
                RunTplCred.runtemplate_id == rt.id,
                Credential.credential_type_id == ct.id,
            )
        )
    )
    already = any(b.credential_id == cred.id for b in same_type)
    replaced = sorted(b.credential_id for b in same_type if b.credential_id != cred.id)
    for binding in same_type:
        if binding.credential_id != cred.id:
            session.delete(binding)
    session.flush()
    if not already:
        session.add(RunTplCred(runtemplate_id=rt.id, credential_id=cred.id))
        session.flush()
    return {
        "status": "ok",
        "runtemplate_id": rt.id,
        "credential_id": cred.id,
        "prototype": ct.code,
        "assigned": not already,
        "replaced": replaced,
    }


def _company_label(session: Session, company_id: int) -> str:
    company = session.get(Company, company_id)
    return f"{company_id} ({company.slug})" if company else str(company_id)


def unassign_credential(session: Session, runtemplate_id: int, credential_id: int) -> None:
    """Remove a binding; :class:`NotFound` when the credential is not bound."""
    get_runtemplate(session, runtemplate_id)
    binding = session.scalars(
        select(RunTplCred).where(
            RunTplCred.runtemplate_id == runtemplate_id, RunTplCred.credential_id == credential_id
        )
    ).first()
    if binding is None:
        raise NotFound(
            f"credential {credential_id} is not assigned to run template {runtemplate_id}"
        )
    session.delete(binding)
    session.flush()


def runtemplate_credentials(session: Session, runtemplate_id: int) -> list[dict[str, Any]]:
    """The credentials bound to a run template, without values."""
    get_runtemplate(session, runtemplate_id)
    rows = bound_credentials(session, runtemplate_id)
    return [
        {
            "id": cred.id,
            "name": cred.name,
            "company_id": cred.company_id,
            "credential_type_id": ct.id,
            "credential_type": ct.code,
        }
        for cred, ct in rows
    ]
