"""GDPR export (articles 15 and 20): a user's own data, in upstream's ``DataExportData``
shape plus our roles, tokens (metadata) and the user's own changes from the audit log.
Nothing of any other user; no secret (no password hash, no token, no credential value)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.accounts.service import get_user, list_assignments, user_roles
from multiflexi.accounts.tokens import list_tokens, token_record
from multiflexi.audit import list_audit
from multiflexi.storage.models import Company, Job
from multiflexi.storage.types import utcnow


def export_user_data(session: Session, user_id: int, *, address: str = "") -> dict[str, Any]:
    user = get_user(session, user_id)
    now = utcnow()
    associations = []
    for row in list_assignments(session, user_id=user.id):
        company = session.get(Company, row.company_id)
        associations.append(
            {
                "company_id": row.company_id,
                "company_code": company.slug if company else None,
                "company_name": company.name if company else None,
                "company_identifier": company.ic if company else None,
                "enabled": bool(company.enabled) if company else None,
                "associated_since": row.created_at,
                "relationship_type": row.role,
            }
        )
    changes = list_audit(session, user_id=user.id, limit=10000)
    jobs = session.scalars(
        select(Job).where(Job.launched_by == user.id).order_by(Job.id.desc()).limit(10000)
    )
    return {
        "export_metadata": {
            "export_date": now,
            "user_id": user.id,
            "export_version": "1.0",
            "gdpr_article": "Articles 15 and 20 GDPR",
            "data_controller": "the operator of this MultiFlexi installation",
            "retention_info": "kept while the account exists; audit entries as configured",
            "contact_info": "",
        },
        "user_profile": {
            "user_id": user.id,
            "username": user.login,
            "email": user.email,
            "first_name": user.firstname,
            "last_name": user.lastname,
            "account_enabled": bool(user.enabled),
            "account_created": user.created,
            "last_updated": user.saved,
            "user_settings": {},
        },
        "company_associations": associations,
        "credentials": [],  # credentials belong to companies, not to users
        "activity_logs": [
            {
                "log_id": a.id,
                "company_id": None,
                "application_id": None,
                "severity": "info",
                "source": a.source,
                "message": f"{a.action} {a.entity_type} {a.entity_id}".strip(),
                "timestamp": a.created_at,
            }
            for a in changes
        ],
        "job_history": [
            {
                "job_id": j.id,
                "application_id": j.app_id,
                "company_id": j.company_id,
                "started_at": j.begin,
                "completed_at": j.end,
                "exit_code": j.exitcode,
                "status": j.status,
            }
            for j in jobs
        ],
        "consent_records": {"consent_records": [], "consent_audit_trail": []},
        "session_history": {
            "note": "API sessions are bearer tokens; see tokens",
            "current_session_info": {"session_id": None, "started_at": None, "ip_address": address},
        },
        "audit_trails": {"data_export_requests": []},
        "roles": user_roles(session, user.id),
        "tokens": [token_record(t) for t in list_tokens(session, user.id)],
    }
