"""The wire shapes of upstream's API (spec 1.4.0), and the few changes the generated
client 1.x needs (see docs/api.md, "List shapes and the generated client")."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from multiflexi.api.deps import Shape
from multiflexi.storage.models import App, Company, Credential, Job, RunTemplate, User


def id_keyed(records: Iterable[dict[str, Any]], shape: Shape) -> Any:
    """Spec shape ``{"<id>": record}``, or a plain array for clients that ask for it."""
    rows = list(records)
    return rows if shape.arrays else {str(r["id"]): r for r in rows}


def app_wire(app: App, shape: Shape, *, detail: bool = False) -> dict[str, Any]:
    from multiflexi.apps.records import app_record

    rec = app_record(app, detail=detail)
    tags = rec["tags"]
    out: dict[str, Any] = {
        "id": app.id,
        "enabled": bool(app.enabled),
        "image": app.image or "",
        "name": app.name,
        "description": app.description or "",
        "executable": app.executable,
        "DatCreate": app.created,
        "DatUpdate": app.updated,
        "setup": app.setup or "",
        "cmdparams": app.cmdparams or "",
        "deploy": app.deploy or "",
        "homepage": app.homepage or "",
        "requirements": ",".join(rec["requirements"]),
        "ociimage": app.ociimage or "",
        "version": app.version or "",
        "code": app.code or "",
        "uuid": app.uuid,
        "topics": ",".join(tags),
        "resultfile": app.resultfile or "",
        "deffile": app.deffile or "",
        "tags": [{"id": None, "name": t} for t in tags] if shape.client11 else ",".join(tags),
    }
    if detail:
        out["artifacts"] = ",".join(a["path"] for a in rec["artifacts"])
        out["environment"] = {
            key: {
                "type": f["type"],
                "description": f["description"] or "",
                "defval": None if f["defval"] is None else str(f["defval"]),
                "required": f["required"],
                "secret": f["secret"],
            }
            for key, f in rec["environment"].items()
        }
        codes = {
            code: {
                "severity": c["severity"],
                "retry": c["retry"],
                "description": {"en": c["description"] or ""},
            }
            for code, c in rec["exitCodes"].items()
        }
        out["exitCodes"] = (
            [{"code": int(k), **v} for k, v in codes.items()] if shape.client11 else codes
        )
    return out


def company_wire(company: Company, shape: Shape) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": company.id,
        "enabled": bool(company.enabled),
        "settings": company.settings or "",
        "logo": company.logo or "",
        "name": company.name,
        "code": company.slug,
        "slug": company.slug,
        "ic": company.ic or "",
        "DatCreate": company.created,
        "DatUpdate": company.updated,
        "customer": company.customer,
        "email": company.email or "",
        "zabbix_host": company.zabbix_host or "",
    }
    if shape.client11 and len(company.slug) > 10:
        del out["code"]  # the client's model limits code to 10 characters
    return out


def runtemplate_wire(rt: RunTemplate, shape: Shape) -> dict[str, Any]:
    return {
        "id": rt.id,
        "app_id": rt.app_id,
        "company_id": rt.company_id,
        "interv": rt.interv,
        "prepared": rt.prepared,
        "success": None,
        "fail": None,
        "name": rt.name,
        "delay": rt.delay,
        "executor": rt.executor,
        "active": bool(rt.active),
        "cron": rt.cron,
        "last_schedule": rt.last_schedule,
        "next_schedule": rt.next_schedule,
        "note": rt.note or "",
        "DatCreate": rt.created,
        "DatSave": rt.saved,
        "successfull_jobs_count": rt.successfull_jobs_count,
        "failed_jobs_count": rt.failed_jobs_count,
        "timeout": rt.timeout,
        "max_attempts": rt.max_attempts,
        "overlap": rt.overlap,
    }


def job_wire(job: Job, shape: Shape) -> dict[str, Any]:
    """A job; ``env`` as an object with secret values redacted (never revealed here)."""
    from multiflexi.jobs.service import env_rows

    env = {row["name"]: row["value"] for row in env_rows(job, None)}
    out: dict[str, Any] = {
        "id": job.id,
        "app_id": job.app_id,
        "begin": job.begin,
        "end": job.end,
        "company_id": job.company_id,
        "exitcode": job.exitcode,
        "launched_by": job.launched_by,
        "env": env,
        "command": job.command,
        "schedule": job.schedule,
        "executor": job.executor,
        "runtemplate_id": job.runtemplate_id,
        "task_id": None,
        "app_version": job.app_version or "n/a",
        "schedule_type": job.schedule_type,
        "pid": job.pid,
        "status": job.status,
        "reason": job.reason,
        "created": job.created,
        "attempt": job.attempt,
        "duration": job.wall_seconds,
    }
    if shape.client11:  # the 1.x client declares these two as strings
        out["env"] = json.dumps(env, ensure_ascii=False)
        out["launched_by"] = None if job.launched_by is None else str(job.launched_by)
    return out


def user_wire(user: User) -> dict[str, Any]:
    """A user; the password hash never leaves the server."""
    return {
        "id": user.id,
        "enabled": bool(user.enabled),
        "settings": "",
        "email": user.email,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "login": user.login,
        "DatCreate": user.created,
        "DatSave": user.saved,
        "last_modifier_id": None,
    }


def credential_wire(session: Session, cred: Credential) -> dict[str, Any]:
    """A credential without any of its values: which fields are set, never what they are."""
    from multiflexi.storage.models import CreData, CredentialType

    ct = session.get(CredentialType, cred.credential_type_id)
    from sqlalchemy import select

    names = list(session.scalars(select(CreData.name).where(CreData.credential_id == cred.id)))
    return {
        "id": cred.id,
        "company_id": cred.company_id,
        "name": cred.name,
        "type": _spec_kind(names),
        "credential_type": ct.code if ct else "",
        "credential_type_id": cred.credential_type_id,
        "fields_set": sorted(names),
        "DatCreate": cred.created,
        "DatUpdate": cred.updated,
    }


def _spec_kind(field_names: list[str]) -> str:
    """The spec's ``type`` enum (password, token, certificate) guessed from the field names;
    ``credential_type`` is the real type."""
    upper = " ".join(field_names).upper()
    if "CERT" in upper:
        return "certificate"
    if "TOKEN" in upper or "KEY" in upper:
        return "token"
    return "password"
