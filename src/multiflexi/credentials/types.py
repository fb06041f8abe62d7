"""Credential types: the kinds of fields, value checks, and the storage of types.

A credential type (upstream: credential type / credential prototype) names the fields a
credential of that kind provides, e.g. ``SQLServer`` provides ``DB_HOST`` ... ``DB_PASSWORD``.
JSON definitions are read by :mod:`multiflexi.credentials.typejson`. The pure half (field
kinds, value checks, specs) needs no database.
"""

from __future__ import annotations

import math
import re
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from multiflexi.env.names import name_problem
from multiflexi.errors import Conflict, Invalid, NotFound, UsageError
from multiflexi.secrets import is_secret
from multiflexi.storage.models import Credential, CredentialType, CrTypeField

#: Field kinds; ``password`` and ``secret`` fields are secret (see multiflexi.secrets).
FIELD_TYPES: tuple[str, ...] = ("string", "password", "secret", "email", "url", "integer")
FIELD_TYPES += ("number", "boolean", "select", "textarea", "file")
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{2,64}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n"})
#: Keywords that name a secret (upstream classifies sensitive fields by name too) ...
SECRET_NAME_RE = re.compile(r"PASSW|SECRET|TOKEN|API_?KEY|PRIVATE", re.IGNORECASE)
#: ... unless they name something about it: FIO_TOKEN_NAME, TOKEN_URL, KEY_PATH.
NOT_SECRET_SUFFIX_RE = re.compile(r"_(NAME|URL|PATH|FILE|TYPE|ID)$", re.IGNORECASE)


@dataclass(frozen=True)
class FieldSpec:
    """One field of a credential type: an environment variable a credential provides."""

    keyword: str
    type: str = "string"
    description: str = ""
    hint: str = ""
    default: str | None = None
    required: bool = False
    secret: bool = False
    #: ``(value, label)`` pairs of a select field.
    options: tuple[tuple[str, str], ...] = ()

    @property
    def is_secret(self) -> bool:
        return is_secret(self.type, self.secret)


@dataclass(frozen=True)
class TypeSpec:
    """A credential type definition, as parsed from JSON or from command-line options."""

    code: str
    uuid: str
    name: str
    description: str = ""
    version: str = "1.0"
    url: str = ""
    logo: str = ""
    fields: tuple[FieldSpec, ...] = ()


# -- values -----------------------------------------------------------------------------


def option_values(options: Any) -> tuple[str, ...]:
    """The allowed values of a select field, from stored or JSON options (strings or
    ``{"value", "label"}`` objects)."""
    values: list[str] = []
    for item in options or ():
        values.append(str(item.get("value", "")) if isinstance(item, dict) else str(item))
    return tuple(values)


def value_problem(field_type: str, value: str, options: Sequence[str] = ()) -> str | None:
    """Why ``value`` is not acceptable for a field of ``field_type``, or None if it is."""
    kind = field_type.lower()
    text = value.strip()
    if kind == "integer" and not re.fullmatch(r"[+-]?\d+", text):
        return f"expected an integer, got {value!r}"
    if kind == "number":
        try:
            ok = math.isfinite(float(text))
        except ValueError:
            ok = False
        if not ok:
            return f"expected a number, got {value!r}"
    if kind == "boolean" and text.lower() not in TRUE_WORDS | FALSE_WORDS:
        return f"expected true or false, got {value!r}"
    if kind == "email" and not EMAIL_RE.fullmatch(text):
        return f"expected an e-mail address, got {value!r}"
    if kind == "url":
        parsed = urlparse(text)
        if not parsed.scheme or not parsed.netloc:
            return f"expected a URL such as https://host/path, got {value!r}"
    if kind == "select" and options and value not in options:
        return f"expected one of {', '.join(options)}; got {value!r}"
    return None


def looks_secret(keyword: str) -> bool:
    """Whether a keyword names a secret (``DB_PASSWORD``, ``FIO_TOKEN``, ``API_KEY``)."""
    return bool(SECRET_NAME_RE.search(keyword)) and not NOT_SECRET_SUFFIX_RE.search(keyword)


def check_value(keyword: str, field_type: str, value: str, options: Sequence[str] = ()) -> None:
    """Raise :class:`Invalid` naming ``keyword`` when ``value`` does not fit its type."""
    problem = value_problem(field_type, value, options)
    if problem:
        raise Invalid(f"field {keyword} ({field_type}): {problem}")


def parse_field_spec(text: str) -> FieldSpec:
    """``KEY[:TYPE[:required][:secret]]`` -> :class:`FieldSpec` (TYPE defaults to string)."""
    key, *rest = text.strip().split(":")
    if name_problem(key) is not None:
        raise UsageError(f"expected --field KEY:TYPE[:required][:secret], got {text!r}")
    field_type = (rest.pop(0) if rest else "string").strip().lower() or "string"
    if field_type not in FIELD_TYPES:
        raise Invalid(
            f"unknown field type {field_type!r} for {key}; valid: {', '.join(FIELD_TYPES)}"
        )
    flags = {flag.strip().lower() for flag in rest} - {""}
    unknown = sorted(flags - {"required", "secret"})
    if unknown:
        raise UsageError(
            f"unknown flag {unknown[0]!r} in --field {text!r}; valid: required, secret"
        )
    return FieldSpec(key, field_type, required="required" in flags, secret="secret" in flags)


def spec_violations(spec: TypeSpec) -> list[str]:
    """Problems of a spec that the schemas do not catch, as ``$.path: reason``."""
    problems: list[str] = []
    if not CODE_RE.fullmatch(spec.code):
        problems.append(f"$.code: {spec.code!r} must be 2-64 letters, digits, '_' or '-'")
    if len(spec.uuid) > 40 or not spec.uuid.strip():
        problems.append(f"$.uuid: {spec.uuid!r} must be 1-40 characters")
    if len(spec.name) > 255:
        problems.append("$.name: longer than 255 characters")
    if len(spec.version) > 20:
        problems.append("$.version: longer than 20 characters")
    seen: set[str] = set()
    for i, fld in enumerate(spec.fields):
        where = f"$.fields[{i}]"
        if name_problem(fld.keyword) is not None or len(fld.keyword) > 64:
            problems.append(f"{where}.keyword: {fld.keyword!r} is not an environment variable name")
        if fld.keyword in seen:
            problems.append(f"{where}.keyword: duplicate {fld.keyword!r}")
        seen.add(fld.keyword)
        if fld.type not in FIELD_TYPES:
            problems.append(f"{where}.type: {fld.type!r} is not one of {', '.join(FIELD_TYPES)}")
        elif fld.default not in (None, ""):
            values = tuple(value for value, _label in fld.options)
            problem = value_problem(fld.type, fld.default, values)
            if problem:
                problems.append(f"{where}.default: {problem}")
    return problems


def new_spec(code: str, name: str, fields: Sequence[FieldSpec], **extra: str) -> TypeSpec:
    """A spec made from command-line options; a fresh uuid unless one is given."""
    spec = TypeSpec(
        code=code,
        uuid=extra.get("uuid") or str(uuidlib.uuid4()),
        name=name,
        description=extra.get("description", ""),
        version=extra.get("version") or "1.0",
        fields=tuple(fields),
    )
    problems = spec_violations(spec)
    if problems:
        raise Invalid(
            "invalid credential type: " + "; ".join(p.removeprefix("$.") for p in problems)
        )
    return spec


# -- storage ----------------------------------------------------------------------------


def list_types(
    session: Session,
    *,
    company_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
    descending: bool = False,
) -> list[CredentialType]:
    """Types usable by ``company_id`` (global ones and its own), or all types."""
    query = select(CredentialType)
    if company_id is not None:
        query = query.where(
            (CredentialType.company_id.is_(None)) | (CredentialType.company_id == company_id)
        )
    order = CredentialType.id.desc() if descending else CredentialType.id
    query = query.order_by(order).offset(offset).limit(limit)
    return list(session.scalars(query))


def get_type(
    session: Session, *, id: int | None = None, uuid: str | None = None, code: str | None = None
) -> CredentialType:
    """One type by id, uuid or code (the first given); :class:`NotFound` if none matches."""
    if id is not None:
        found = session.get(CredentialType, id)
        what = f"id {id}"
    elif uuid is not None:
        found = session.scalars(select(CredentialType).where(CredentialType.uuid == uuid)).first()
        what = f"uuid {uuid}"
    elif code is not None:
        found = session.scalars(select(CredentialType).where(CredentialType.code == code)).first()
        what = f"code {code!r}"
    else:
        raise UsageError("give the credential type as --id, --uuid or --code")
    if found is None:
        raise NotFound(f"credential type with {what} not found")
    return found


def type_fields(session: Session, type_id: int) -> list[CrTypeField]:
    """The fields of a type, in declaration order."""
    query = select(CrTypeField).where(CrTypeField.credential_type_id == type_id)
    return list(session.scalars(query.order_by(CrTypeField.id)))


def _replace_fields(session: Session, ct: CredentialType, fields: Sequence[FieldSpec]) -> None:
    for old in type_fields(session, ct.id):
        session.delete(old)
    session.flush()  # deletes first: the new rows reuse the unique (type, keyname) pairs
    for fld in fields:
        session.add(
            CrTypeField(
                credential_type_id=ct.id,
                keyname=fld.keyword,
                type=fld.type,
                description=fld.description,
                hint=fld.hint,
                defval=fld.default,
                required=fld.required,
                secret=fld.secret,
                options=[{"value": v, "label": label} for v, label in fld.options] or None,
            )
        )
    session.flush()


def _apply(ct: CredentialType, spec: TypeSpec) -> None:
    ct.code, ct.uuid, ct.name = spec.code, spec.uuid, spec.name
    ct.description, ct.version, ct.url, ct.logo = (
        spec.description,
        spec.version,
        spec.url,
        spec.logo,
    )


def import_type(
    session: Session, spec: TypeSpec, *, company_id: int | None = None
) -> tuple[CredentialType, bool]:
    """Insert or update a type, matched by uuid then by code; its fields are replaced.
    Returns the type and whether it was created. ``company_id`` scopes a new type (or
    moves an existing one); without it a new type is global."""
    ct = session.scalars(select(CredentialType).where(CredentialType.uuid == spec.uuid)).first()
    if ct is None:
        ct = session.scalars(select(CredentialType).where(CredentialType.code == spec.code)).first()
    else:
        other = session.scalars(
            select(CredentialType).where(
                CredentialType.code == spec.code, CredentialType.id != ct.id
            )
        ).first()
        if other is not None:
            raise Conflict(f"code {spec.code!r} is already used by credential type {other.id}")
    created = ct is None
    if ct is None:
        ct = CredentialType(company_id=company_id)
        session.add(ct)
    elif company_id is not None:
        ct.company_id = company_id
    _apply(ct, spec)
    session.flush()
    _replace_fields(session, ct, spec.fields)
    return ct, created


def create_type(
    session: Session, spec: TypeSpec, *, company_id: int | None = None
) -> CredentialType:
    """Insert a new type; an existing code or uuid is a :class:`Conflict`."""
    for column, value in ((CredentialType.code, spec.code), (CredentialType.uuid, spec.uuid)):
        existing = session.scalars(select(CredentialType).where(column == value)).first()
        if existing is not None:
            raise Conflict(f"credential type {existing.id} already has {column.key} {value!r}")
    ct = CredentialType(company_id=company_id)
    _apply(ct, spec)
    session.add(ct)
    session.flush()
    _replace_fields(session, ct, spec.fields)
    return ct


def describe_type(session: Session, ct: CredentialType, **changes: str) -> list[str]:
    """Change a type's name, description, URL or logo (its fields stay); returns what
    changed."""
    unknown = sorted(set(changes) - {"name", "description", "url", "logo"})
    if unknown:
        raise Invalid(f"cannot change {unknown[0]!r} of a credential type")
    if "name" in changes and not changes["name"].strip():
        raise Invalid("name must not be empty")
    changed = [k for k, v in changes.items() if getattr(ct, k) != v]
    for key in changed:
        setattr(ct, key, changes[key])
    session.flush()
    return changed


def delete_type(session: Session, type_id: int) -> CredentialType:
    """Delete a type and its fields; refused while credentials use it."""
    ct = get_type(session, id=type_id)
    users = list(
        session.scalars(
            select(Credential.id)
            .where(Credential.credential_type_id == type_id)
            .order_by(Credential.id)
        )
    )
    if users:
        listed = ", ".join(map(str, users[:10])) + (", ..." if len(users) > 10 else "")
        raise Conflict(
            f"credential type {type_id} ({ct.code}) is used by {len(users)} credential(s): "
            f"{listed}; remove them first"
        )
    for fld in type_fields(session, type_id):
        session.delete(fld)
    session.delete(ct)
    session.flush()
    return ct


def field_record(fld: CrTypeField) -> dict[str, Any]:
    return {
        "keyword": fld.keyname,
        "type": fld.type,
        "description": fld.description,
        "hint": fld.hint,
        "default": fld.defval,
        "required": fld.required,
        "secret": is_secret(fld.type, fld.secret),
        "options": list(option_values(fld.options)),
    }


def type_record(
    session: Session, ct: CredentialType, *, with_fields: bool = True
) -> dict[str, Any]:
    """A type as a plain dict for output."""
    fields = type_fields(session, ct.id)
    used = session.scalar(
        select(func.count()).select_from(Credential).where(Credential.credential_type_id == ct.id)
    )
    record: dict[str, Any] = {
        "id": ct.id,
        "code": ct.code,
        "uuid": ct.uuid,
        "name": ct.name,
        "description": ct.description,
        "version": ct.version,
        "url": ct.url,
        "logo": ct.logo,
        "company_id": ct.company_id,
        "credentials": used or 0,
        "created": ct.created,
    }
    if with_fields:
        record["fields"] = [field_record(f) for f in fields]
    else:
        record["fields"] = [f.keyname for f in fields]
    return record
