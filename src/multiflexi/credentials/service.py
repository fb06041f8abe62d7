"""Credentials: company-scoped values of a credential type, and the environment layer.

Secret fields (type ``password``/``secret``, or a field declared secret) are sealed with
the :class:`~multiflexi.secrets.Vault` before they reach the database and are shown
redacted everywhere except :func:`credential_record` with ``reveal=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session, object_session

from multiflexi.credentials.types import check_value, get_type, option_values, type_fields
from multiflexi.env.layers import EnvVar
from multiflexi.errors import Conflict, Invalid, NotFound, UsageError
from multiflexi.secrets import NOT_SET, is_sealed, is_secret, redact
from multiflexi.storage.models import (
    Company,
    CreData,
    Credential,
    CredentialType,
    CrTypeField,
    RunTemplate,
    RunTplCred,
    table_of,
)
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.secrets import Vault

log = logging.getLogger("multiflexi.audit")

#: Version of the key that sealed a value (``mfenc:v1:``).
KEY_VERSION = 1


# -- lookups ----------------------------------------------------------------------------


def _is_id(text: str) -> bool:
    """Digits that fit an id column on every backend."""
    return text.isdigit() and int(text) < 2**31


def resolve_company(session: Session, ref: str | int) -> Company:
    """A company by id or slug."""
    text = str(ref).strip()
    company = session.get(Company, int(text)) if _is_id(text) else None
    if company is None:
        company = session.scalars(select(Company).where(Company.slug == text)).first()
    if company is None:
        raise NotFound(f"company {text!r} not found")
    return company


def resolve_type(session: Session, *, type_id: int | None, code: str | None) -> CredentialType:
    """A credential type by id, or by code (a numeric code that matches no type is an id)."""
    if type_id is not None:
        return get_type(session, id=type_id)
    if code is None:
        raise UsageError("missing --credential-type-id (or --type CODE)")
    try:
        return get_type(session, code=code)
    except NotFound:
        if _is_id(code):
            return get_type(session, id=int(code))
        raise


def get_credential(session: Session, credential_id: int) -> Credential:
    cred = session.get(Credential, credential_id)
    if cred is None:
        raise NotFound(f"credential {credential_id} not found")
    return cred


def get_runtemplate(session: Session, runtemplate_id: int) -> RunTemplate:
    rt = session.get(RunTemplate, runtemplate_id)
    if rt is None:
        raise NotFound(f"run template {runtemplate_id} not found")
    return rt


def bound_credentials(
    session: Session, runtemplate_id: int
) -> list[tuple[Credential, CredentialType]]:
    """The credentials bound to a run template with their types, by type code and id."""
    rows = session.execute(
        select(Credential, CredentialType)
        .join(RunTplCred, RunTplCred.credential_id == Credential.id)
        .join(CredentialType, CredentialType.id == Credential.credential_type_id)
        .where(RunTplCred.runtemplate_id == runtemplate_id)
        .order_by(CredentialType.code, Credential.id)
    ).all()
    return [(cred, ct) for cred, ct in rows]


def _data(session: Session, credential_id: int) -> dict[str, CreData]:
    rows = session.scalars(select(CreData).where(CreData.credential_id == credential_id))
    return {row.name: row for row in rows}


# -- writing values ---------------------------------------------------------------------


def _check_keys(ct: CredentialType, fields: Mapping[str, CrTypeField], keys: Iterable[str]) -> None:
    unknown = sorted(set(keys) - set(fields))
    if unknown:
        valid = ", ".join(fields) or "(none)"
        noun = "field" if len(unknown) == 1 else "fields"
        raise Invalid(
            f"unknown {noun} {', '.join(unknown)} for credential type {ct.code}; valid: {valid}"
        )


def _check_values(fields: Mapping[str, CrTypeField], values: Mapping[str, str]) -> None:
    for key, value in values.items():
        fld = fields[key]
        if value == "":
            continue
        if is_secret(fld.type, fld.secret) and is_sealed(value):
            raise Invalid(f"field {key}: values starting with 'mfenc:' are reserved")
        check_value(key, fld.type, value, option_values(fld.options))


def _store(
    session: Session, vault: Vault, cred_id: int, fld: CrTypeField, value: str, row: CreData | None
) -> None:
    secret = is_secret(fld.type, fld.secret)
    stored = vault.seal(value) if secret and value else value
    if row is None:
        row = CreData(credential_id=cred_id, name=fld.keyname)
        session.add(row)
    row.type, row.value = fld.type, stored
    row.is_encrypted = bool(secret and value)
    row.encryption_key_version = KEY_VERSION if row.is_encrypted else None


def _check_name_free(session: Session, company_id: int, name: str) -> None:
    query = select(Credential.id).where(
        Credential.company_id == company_id, Credential.name == name
    )
    clash = session.scalars(query).first()
    if clash is not None:
        raise Conflict(f"company {company_id} already has a credential named {name!r} ({clash})")


def _missing_required(fields: Mapping[str, CrTypeField], present: Iterable[str]) -> list[str]:
    have = set(present)
    return [k for k, f in fields.items() if f.required and k not in have and not f.defval]


def create_credential(
    session: Session,
    vault: Vault,
    *,
    name: str,
    company_id: int,
    type_id: int,
    values: Mapping[str, str],
) -> Credential:
    """Create a credential of a type for a company. Keys must be fields of the type,
    values must fit their field types, and required fields without a default must be set."""
    name = name.strip()
    if not name:
        raise UsageError("missing --name")
    company = session.get(Company, company_id)
    if company is None:
        raise NotFound(f"company {company_id} not found")
    ct = get_type(session, id=type_id)
    if ct.company_id is not None and ct.company_id != company_id:
        raise Invalid(f"credential type {ct.code} belongs to company {ct.company_id}")
    fields = {f.keyname: f for f in type_fields(session, ct.id)}
    _check_keys(ct, fields, values)
    _check_values(fields, values)
    given = {k: v for k, v in values.items() if v != ""}
    missing = _missing_required(fields, given)
    if missing:
        raise Invalid(f"required field(s) of {ct.code} not set: {', '.join(missing)}")
    _check_name_free(session, company_id, name)
    cred = Credential(name=name, company_id=company_id, credential_type_id=ct.id)
    session.add(cred)
    session.flush()
    for key, value in given.items():
        _store(session, vault, cred.id, fields[key], value, None)
    session.flush()
    return cred


def update_credential(
    session: Session,
    vault: Vault,
    credential_id: int,
    *,
    name: str | None = None,
    values: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> tuple[Credential, list[str]]:
    """Rename a credential and/or change its values; returns it and the changed keys.

    An empty value keeps a stored secret (so forms can leave it blank) and blanks any
    other field; ``unset`` removes values."""
    values = dict(values or {})
    unset = list(unset)
    cred = get_credential(session, credential_id)
    ct = get_type(session, id=cred.credential_type_id)
    fields = {f.keyname: f for f in type_fields(session, ct.id)}
    stored = _data(session, cred.id)
    _check_keys(ct, fields, [*values, *(k for k in unset if k not in stored)])
    both = sorted(set(values) & set(unset))
    if both:
        raise UsageError(f"{both[0]} is both set and unset")
    _check_values(fields, values)
    new_name = name.strip() if name is not None and name.strip() != cred.name else None
    if name is not None and not name.strip():
        raise Invalid("the name cannot be empty")
    if new_name:
        _check_name_free(session, cred.company_id, new_name)
    blanked = [
        k for k, v in values.items() if v == "" and not is_secret(fields[k].type, fields[k].secret)
    ]
    removed = [k for k in [*unset, *blanked] if k in fields]
    required = [k for k in removed if fields[k].required and not fields[k].defval]
    if required:
        raise Invalid(f"required field(s) of {ct.code} cannot be emptied: {', '.join(required)}")
    changed: list[str] = []
    for key, value in values.items():
        fld = fields[key]
        if value == "" and is_secret(fld.type, fld.secret):
            continue  # blank secret: keep what is stored
        _store(session, vault, cred.id, fld, value, stored.get(key))
        changed.append(key)
    for key in unset:
        if key in stored:
            session.delete(stored[key])
            changed.append(key)
    if new_name:
        cred.name = new_name
        changed.append("name")
    if changed:
        cred.updated = utcnow()
    session.flush()
    return cred, changed


def remove_credential(session: Session, credential_id: int) -> tuple[Credential, list[int]]:
    """Delete a credential, its values and its bindings; returns it and the unbound
    run-template ids."""
    cred = get_credential(session, credential_id)
    bound = list(
        session.scalars(
            select(RunTplCred.runtemplate_id)
            .where(RunTplCred.credential_id == credential_id)
            .order_by(RunTplCred.runtemplate_id)
        )
    )
    session.execute(delete(RunTplCred).where(RunTplCred.credential_id == credential_id))
    session.execute(delete(CreData).where(CreData.credential_id == credential_id))
    session.delete(cred)
    session.flush()
    return cred, bound


def list_credentials(
    session: Session,
    *,
    company_id: int | None = None,
    type_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
    descending: bool = False,
) -> list[Credential]:
    query = select(Credential)
    if company_id is not None:
        query = query.where(Credential.company_id == company_id)
    if type_id is not None:
        query = query.where(Credential.credential_type_id == type_id)
    order = Credential.id.desc() if descending else Credential.id
    return list(session.scalars(query.order_by(order).offset(offset).limit(limit)))


# -- reading ----------------------------------------------------------------------------


def _values(
    session: Session, cred: Credential, ct: CredentialType, vault: Vault | None
) -> list[tuple[str, str | None, bool, CrTypeField | None]]:
    """``(key, value, secret, field)`` for every field of the type (None when unset) and
    every stored value whose field was since dropped from the type; decrypted with
    ``vault`` when one is given, else secret values stay sealed."""
    stored = _data(session, cred.id)
    out: list[tuple[str, str | None, bool, CrTypeField | None]] = []
    fields = type_fields(session, ct.id)
    known = {f.keyname for f in fields}
    extra = [stored[k] for k in sorted(stored) if k not in known]
    for key, fld, row in [(f.keyname, f, stored.get(f.keyname)) for f in fields] + [
        (r.name, None, r) for r in extra
    ]:
        secret = is_secret(fld.type, fld.secret) if fld else (row is not None and row.is_encrypted)
        value = None if row is None else row.value
        if row is not None and row.is_encrypted and vault is not None:
            value = vault.open(row.value)
        out.append((key, value, secret, fld))
    return out


def credential_record(
    cred: Credential, *, reveal: bool = False, vault: Vault | None = None
) -> dict[str, Any]:
    """A credential as a dict for output. Secret values are redacted unless ``reveal``
    (which needs the ``vault``); unset fields are ``None`` (secret ones ``(not set)``)."""
    session = object_session(cred)
    if session is None:
        raise RuntimeError("credential_record needs a credential attached to a session")
    if reveal and vault is None:
        raise ValueError("reveal=True needs the vault")
    if reveal:
        log.info("action=credential_revealed credential_id=%d", cred.id)
    ct = get_type(session, id=cred.credential_type_id)
    company = session.get(Company, cred.company_id)
    fields: dict[str, str | None] = {}
    for key, value, secret, _fld in _values(session, cred, ct, vault if reveal else None):
        if secret and not reveal:
            fields[key] = redact(value)
        elif secret:
            fields[key] = value or NOT_SET
        else:
            fields[key] = value
    return {
        "id": cred.id,
        "name": cred.name,
        "company_id": cred.company_id,
        "company": company.slug if company else None,
        "credential_type_id": ct.id,
        "credential_type": ct.code,
        "created": cred.created,
        "updated": cred.updated,
        "fields": fields,
    }


_ANY_BINDING = (
    select(table_of(RunTplCred).c.credential_id)
    .where(table_of(RunTplCred).c.runtemplate_id == bindparam("b_rt"))
    .limit(1)
)


def credential_layer(session: Session, runtemplate_id: int, vault: Vault) -> list[EnvVar]:
    """The environment layer of the credentials bound to a run template.

    Every field of every bound credential, decrypted, with the type's default for unset
    fields that have one; unset fields without a default are left out so that earlier
    layers keep their values. Ordered by type code, credential id, then field order.
    """
    if session.connection().execute(_ANY_BINDING, {"b_rt": runtemplate_id}).first() is None:
        return []  # most templates: one cheap query instead of the ORM's two-entity one
    creds = bound_credentials(session, runtemplate_id)
    layer: list[EnvVar] = []
    for cred, ct in creds:
        source = f"credential:{cred.id} ({ct.code})"
        for key, value, secret, fld in _values(session, cred, ct, vault):
            if value is None and fld is not None and fld.defval is not None:
                value = fld.defval
            if value is None:
                continue
            description = fld.description if fld is not None else ""
            layer.append(EnvVar(key, value, source, secret=secret, description=description))
    return layer
