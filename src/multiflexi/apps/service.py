"""Applications in the database: import (upsert), export, get, list, create, update, delete.

Every function takes the caller's :class:`~sqlalchemy.orm.Session` and raises before the
caller commits, so a refused change leaves the database as it was.
"""

from __future__ import annotations

import os
import uuid as uuid_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from multiflexi.apps import appjson
from multiflexi.apps.normalize import CODE, PLACEHOLDER, check, normalize, summary
from multiflexi.apps.records import app_record, export_document, spec_from_app, split_list
from multiflexi.apps.spec import AppSpec, Document, Violation
from multiflexi.errors import AppDefinitionError, Conflict, Invalid, NotFound, UsageError
from multiflexi.storage.models import App, AppArtifact, AppExitCode, ConfField, Job, RunTemplate
from multiflexi.storage.types import utcnow

#: Columns ``create_app`` / ``update_app`` accept.
EDITABLE = (
    "name", "executable", "description", "cmdparams", "version", "homepage", "tags",
    "ociimage", "requirements", "setup", "deploy", "resultfile", "enabled", "uuid", "code",
    "image",
)  # fmt: skip
LIMITS = {"name": 255, "executable": 255, "setup": 255, "deploy": 255, "homepage": 255,
          "ociimage": 255, "version": 64, "resultfile": 255, "code": 32}  # fmt: skip
MAX_CODE_TRIES = 10000

__all__ = [
    "ImportResult",
    "app_record",
    "create_app",
    "delete_app",
    "export_document",
    "get_app",
    "import_document",
    "import_file",
    "list_apps",
    "spec_from_app",
    "update_app",
    "upsert_app",
    "validate_file",
]


@dataclass(frozen=True)
class ImportResult:
    app: App
    created: bool
    warnings: list[Violation] = field(default_factory=list)


# -- lookup ---------------------------------------------------------------------------


def get_app(
    session: Session, *, id: int | None = None, uuid: str | None = None, name: str | None = None
) -> App:
    """The application with the given id, uuid and/or name; NotFound when there is none."""
    if id is None and uuid is None and name is None:
        raise UsageError("give the application's --id, --uuid or --name")
    query = select(App)
    wanted = []
    if id is not None:
        query = query.where(App.id == id)
        wanted.append(f"id {id}")
    if uuid is not None:
        query = query.where(App.uuid == uuid)
        wanted.append(f"uuid {uuid}")
    if name is not None:
        query = query.where(App.name == name)
        wanted.append(f"name {name!r}")
    app = session.scalars(query).first()
    if app is None:
        raise NotFound(f"no application with {' and '.join(wanted)}")
    return app


def list_apps(
    session: Session, *, limit: int | None = None, offset: int = 0, declarations: bool = False
) -> list[App]:
    """Applications ordered by id; ``declarations`` loads their environment, artifacts and
    exit codes in three queries instead of three per application."""
    query = select(App).order_by(App.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    if declarations:
        query = query.options(
            selectinload(App.fields),
            selectinload(App.artifact_patterns),
            selectinload(App.exit_codes),
        )
    return list(session.scalars(query))


# -- import ---------------------------------------------------------------------------


def validate_file(path: str | Path) -> list[Violation]:
    """Why a strict import would refuse the file (empty when it would not). Needs no database."""
    try:
        document = appjson.read_document(path)
    except AppDefinitionError as exc:
        return [_violation(v) for v in exc.violations]
    return check(document.data, Path(path).name)


def _violation(text: str) -> Violation:
    path, _, message = text.partition(": ")
    return Violation(path, message)


def import_file(session: Session, path: str | Path, *, strict: bool = False) -> ImportResult:
    """Import (create or update) the application defined in the file at ``path``."""
    document = appjson.read_document(path)
    return import_document(
        session, document, strict=strict, deffile=os.path.realpath(path), file_name=Path(path).name
    )


def import_document(
    session: Session,
    document: Document,
    *,
    strict: bool = False,
    deffile: str = "",
    file_name: str | None = None,
) -> ImportResult:
    """Import a parsed definition. Strict: refused unless valid against the schema."""
    if strict:
        violations = appjson.validate(document.data)
        if violations:
            raise AppDefinitionError(
                f"{document.source}: not valid against the schema: {summary(violations)}",
                [str(v) for v in violations],
            )
    try:
        spec, warnings = normalize(document.data, file_name)
    except AppDefinitionError as exc:
        raise AppDefinitionError(f"{document.source}: {exc.message}", exc.violations) from None
    app, created = upsert_app(session, spec, deffile=deffile)
    return ImportResult(app, created, [*document.warnings, *warnings])


def upsert_app(session: Session, spec: AppSpec, *, deffile: str = "") -> tuple[App, bool]:
    """Create or replace the application ``spec`` describes: found by uuid, then by name."""
    # One query for both keys: a definition is looked up by uuid, then by name.
    key = or_(App.name == spec.name, App.uuid == spec.uuid) if spec.uuid else App.name == spec.name
    matches = session.scalars(select(App).where(key)).all()
    by_uuid = next((a for a in matches if spec.uuid and a.uuid == spec.uuid), None)
    by_name = next((a for a in matches if a.name == spec.name), None)
    if by_uuid is not None and by_name is not None and by_uuid.id != by_name.id:
        raise Conflict(
            f"uuid {spec.uuid} belongs to application #{by_uuid.id} {by_uuid.name!r}, but the "
            f"name {spec.name!r} belongs to application #{by_name.id} (uuid {by_name.uuid}): "
            "two different applications; not merged"
        )
    app = by_uuid or by_name
    if app is not None and by_uuid is None and spec.uuid and app.uuid and app.uuid != spec.uuid:
        raise Conflict(
            f"the name {spec.name!r} belongs to application #{app.id} with uuid {app.uuid}, "
            f"but the definition has uuid {spec.uuid}: two different applications; not merged"
        )
    created = app is None
    if app is None:
        app = App(uuid=spec.uuid or str(uuid_mod.uuid4()), enabled=True)
    app.code = _choose_code(session, spec.code, spec.name, app)
    _apply_spec(app, spec)
    app.deffile = deffile[:1024]
    if created:
        session.add(app)
    else:
        app.updated = utcnow()
    _flush(session)
    return app, created


def _apply_spec(app: App, spec: AppSpec) -> None:
    app.name = spec.name
    app.executable = spec.executable
    app.description = spec.description
    if spec.uuid:
        app.uuid = spec.uuid
    app.version = spec.version
    app.cmdparams = spec.cmdparams
    app.setup = spec.setup
    app.deploy = spec.deploy
    app.homepage = spec.homepage
    app.image = spec.image
    app.ociimage = spec.ociimage
    app.resultfile = spec.resultfile
    app.tags = ",".join(spec.tags)
    app.requirements = ",".join(spec.requirements)
    app.extra = dict(spec.extra)

    # Rows are updated in place by key, so that unique (app_id, keyname) never sees the old
    # and the new row of one variable at once, and row ids stay stable.
    old_fields = {f.keyname: f for f in app.fields}
    fields = []
    for pos, fs in enumerate(spec.fields):
        row = old_fields.pop(fs.keyname, None) or ConfField(keyname=fs.keyname)
        row.position = pos
        for attr in ("type", "name", "description", "defval", "required", "hint", "note",
                     "secret", "multiline", "expiring", "category", "options"):  # fmt: skip
            setattr(row, attr, getattr(fs, attr))
        row.extra = dict(fs.extra)
        fields.append(row)
    app.fields = fields

    old_codes = {e.exit_code: e for e in app.exit_codes}
    codes = []
    for es in spec.exit_codes:
        code_row = old_codes.pop(es.code, None) or AppExitCode(exit_code=es.code)
        code_row.description, code_row.severity, code_row.retry = (
            es.description,
            es.severity,
            es.retry,
        )
        code_row.extra = dict(es.extra)
        codes.append(code_row)
    app.exit_codes = codes

    old_artifacts = list(app.artifact_patterns)
    artifacts = []
    for pos, spec_a in enumerate(spec.artifacts):
        art = old_artifacts[pos] if pos < len(old_artifacts) else AppArtifact()
        art.position, art.name, art.path, art.type = pos, spec_a.name, spec_a.path, spec_a.type
        art.description, art.extra = spec_a.description, dict(spec_a.extra)
        artifacts.append(art)
    app.artifact_patterns = artifacts


def _choose_code(session: Session, wanted: str | None, name: str, app: App) -> str:
    """The wanted code if free; else the app's own; else a new one derived from the name."""

    def owner(code: str) -> App | None:
        found = session.scalars(select(App).where(App.code == code)).first()
        return None if found is None or found is app else found

    if wanted:
        other = owner(wanted)
        if other is not None:
            raise Conflict(
                f"code {wanted!r} already belongs to application #{other.id} {other.name!r}"
            )
        return wanted
    if app.code:
        return app.code
    for n, candidate in enumerate(appjson.code_candidates(name)):
        if n >= MAX_CODE_TRIES:
            break
        if owner(candidate) is None:
            return candidate
    return uuid_mod.uuid4().hex[:12].upper()


def _flush(session: Session) -> None:
    """Flush, turning a unique-constraint race into Conflict (the checks ran before)."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"the change conflicts with another application: {str(exc.orig).splitlines()[0]}"
        ) from None


# -- create, update, delete -----------------------------------------------------------


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise CLI/API values for the app columns."""
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise Invalid(f"unknown application field {unknown[0]!r}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("tags", "requirements"):
            items = split_list(value) if isinstance(value, str) else [str(v).strip() for v in value]
            out[key] = ",".join(dict.fromkeys(i for i in items if i))
        elif key == "enabled":
            out[key] = bool(value)
        elif key == "uuid":
            try:
                out[key] = str(uuid_mod.UUID(str(value).strip()))
            except ValueError:
                raise Invalid(
                    f"uuid must be a UUID such as {uuid_mod.uuid4()}, got {value!r}"
                ) from None
        else:
            text = str(value).strip()
            if key in ("name", "executable") and not text:
                raise Invalid(f"{key} must not be empty")
            if key == "code" and not CODE.fullmatch(text):
                raise Invalid(f"code must be 1-32 letters, digits or _, got {text!r}")
            if key == "cmdparams":
                text = PLACEHOLDER.sub(r"{\1}", text)
            if key in LIMITS and len(text) > LIMITS[key]:
                raise Invalid(f"{key} is longer than {LIMITS[key]} characters")
            out[key] = text
    return out


def _check_unique(session: Session, app: App | None, values: dict[str, Any]) -> None:
    for column in ("name", "uuid", "code"):
        if column not in values:
            continue
        other = session.scalars(select(App).where(getattr(App, column) == values[column])).first()
        if other is not None and other is not app:
            raise Conflict(
                f"{column} {values[column]!r} already belongs to application #{other.id} {other.name!r}"
            )


def _set_base_translation(app: App, attr: str, value: str) -> None:
    """Keep a localized name/description in step with its new base value."""
    extra = dict(app.extra or {})
    translations = {k: dict(v) for k, v in extra.get("translations", {}).items()}
    if translations.get(attr):
        lang = "en" if "en" in translations[attr] else next(iter(translations[attr]))
        translations[attr][lang] = value
        extra["translations"] = translations
        app.extra = extra


def create_app(session: Session, values: dict[str, Any]) -> App:
    """A new application from column values; name and executable are required, the uuid
    is generated when not given and the code derived from the name."""
    clean = _clean(values)
    for required in ("name", "executable"):
        if not clean.get(required):
            raise UsageError(f"missing --{required}")
    clean.setdefault("uuid", str(uuid_mod.uuid4()))
    _check_unique(session, None, clean)
    app = App(extra={}, deffile="", **{k: v for k, v in clean.items() if k != "code"})
    app.code = _choose_code(session, clean.get("code"), clean["name"], app)
    session.add(app)
    _flush(session)
    return app


def update_app(session: Session, app: App, values: dict[str, Any]) -> App:
    """Change the given columns of ``app``; nothing given is a UsageError."""
    if not values:
        raise UsageError("nothing to update: give at least one field to change")
    clean = _clean(values)
    _check_unique(session, app, clean)
    for key, value in clean.items():
        setattr(app, key, value)
        if key in ("name", "description"):
            _set_base_translation(app, key, value)
    app.updated = utcnow()
    _flush(session)
    return app


def delete_app(session: Session, app: App) -> None:
    """Delete ``app`` with what it declares; refused while run templates or jobs use it."""
    templates = list(
        session.scalars(
            select(RunTemplate.id).where(RunTemplate.app_id == app.id).order_by(RunTemplate.id)
        )
    )
    if templates:
        shown = ", ".join(f"#{t}" for t in templates[:10]) + (" ..." if len(templates) > 10 else "")
        raise Conflict(
            f"application #{app.id} {app.name!r} is used by {len(templates)} run template(s) "
            f"({shown}); delete them first"
        )
    jobs = session.scalar(select(func.count()).select_from(Job).where(Job.app_id == app.id)) or 0
    if jobs:
        raise Conflict(
            f"application #{app.id} {app.name!r} has {jobs} job(s) on record; delete them first"
        )
    session.delete(app)
    _flush(session)
