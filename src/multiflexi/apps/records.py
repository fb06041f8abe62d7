"""Applications as records: JSON-ready dicts for commands, and back to definition documents."""

from __future__ import annotations

from typing import Any

from multiflexi.apps import appjson
from multiflexi.apps.spec import AppSpec, ArtifactSpec, ExitCodeSpec, FieldSpec
from multiflexi.secrets import redact
from multiflexi.storage.models import App


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: tags and requirements are stored comma-joined."""
    return [item for item in (part.strip() for part in value.split(",")) if item]


def app_record(app: App, *, detail: bool = False, reveal: bool = False) -> dict[str, Any]:
    """A JSON-ready dict of an application; ``detail`` adds what it declares. Defaults of
    secret variables are redacted unless ``reveal``."""
    record: dict[str, Any] = {
        "id": app.id,
        "uuid": app.uuid,
        "code": app.code,
        "name": app.name,
        "description": app.description,
        "version": app.version,
        "executable": app.executable,
        "cmdparams": app.cmdparams,
        "setup": app.setup,
        "deploy": app.deploy,
        "homepage": app.homepage,
        "image": app.image,
        "ociimage": app.ociimage,
        "requirements": split_list(app.requirements),
        "tags": split_list(app.tags),
        "resultfile": app.resultfile,
        "deffile": app.deffile,
        "enabled": bool(app.enabled),
        "created": app.created.isoformat() if app.created else None,
        "updated": app.updated.isoformat() if app.updated else None,
    }
    if not detail:
        return record
    keys = dict((app.extra or {}).get("keys", {}))
    record["environment"] = {
        f.keyname: {
            "type": f.type,
            "name": f.name,
            "description": f.description,
            "defval": f.defval if reveal or not f.secret or f.defval is None else redact(f.defval),
            "required": bool(f.required),
            "secret": bool(f.secret),
            "hint": f.hint,
            "note": f.note,
            "multiline": bool(f.multiline),
            "expiring": bool(f.expiring),
            "category": f.category,
            "options": f.options,
            "extra": f.extra or {},
        }
        for f in app.fields
    }
    record["artifacts"] = [
        {
            "name": a.name,
            "path": a.path,
            "type": a.type,
            "description": a.description,
            "extra": a.extra or {},
        }
        for a in app.artifact_patterns
    ]
    record["exitCodes"] = {
        str(e.exit_code): {
            "description": e.description,
            "severity": e.severity,
            "retry": bool(e.retry),
            "extra": e.extra or {},
        }
        for e in app.exit_codes
    }
    record["produces"] = keys.pop("produces", None)
    record["consumes"] = keys.pop("consumes", None)
    record["translations"] = (app.extra or {}).get("translations", {})
    record["extra"] = keys
    return record


def spec_from_app(app: App) -> AppSpec:
    """What the database holds about ``app``, as the spec an import would produce."""
    return AppSpec(
        name=app.name,
        executable=app.executable,
        description=app.description,
        uuid=app.uuid,
        code=app.code,
        version=app.version,
        cmdparams=app.cmdparams,
        setup=app.setup,
        deploy=app.deploy,
        homepage=app.homepage,
        image=app.image,
        ociimage=app.ociimage,
        resultfile=app.resultfile,
        tags=tuple(split_list(app.tags)),
        requirements=tuple(split_list(app.requirements)),
        fields=tuple(
            FieldSpec(
                keyname=f.keyname,
                type=f.type,
                name=f.name,
                description=f.description,
                defval=f.defval,
                required=bool(f.required),
                hint=f.hint,
                note=f.note,
                secret=bool(f.secret),
                multiline=bool(f.multiline),
                expiring=bool(f.expiring),
                category=f.category,
                options=f.options,
                extra=dict(f.extra or {}),
            )
            for f in app.fields
        ),
        artifacts=tuple(
            ArtifactSpec(
                path=a.path,
                name=a.name,
                type=a.type,
                description=a.description,
                extra=dict(a.extra or {}),
            )
            for a in app.artifact_patterns
        ),
        exit_codes=tuple(
            ExitCodeSpec(
                code=e.exit_code,
                description=e.description,
                severity=e.severity,
                retry=bool(e.retry),
                extra=dict(e.extra or {}),
            )
            for e in app.exit_codes
        ),
        extra=dict(app.extra or {}),
    )


def export_document(app: App) -> dict[str, Any]:
    """The definition document of ``app``; importing it gives the same application."""
    return appjson.to_document(spec_from_app(app))
