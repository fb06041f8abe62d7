"""credential:*, credential-type:* and run-template:*-credential(s) commands.

Option spellings of upstream are accepted alongside ours (``--company-id`` and
``--company_id``, ``--credential_id`` and ``--credential-id``); ``credential-prototype:*``,
``credtype:*`` and ``crprototype:*`` are aliases of the credential-type commands.
"""

from __future__ import annotations

from collections.abc import Callable
from textwrap import indent
from typing import Any, TypeVar

import click

from multiflexi.cli.base import cli_context, command, confirm, id_argument, parse_int, resolve_id
from multiflexi.cli.output import emit, render_record, render_table

F = TypeVar("F", bound=Callable[..., Any])
TYPE_COLUMNS = ["id", "code", "name", "version", "company_id", "credentials", "fields"]


def _aliases(verb: str) -> tuple[str, ...]:
    return tuple(f"{noun}:{verb}" for noun in ("credential-prototype", "credtype", "crprototype"))


def list_options(fn: F) -> F:
    """``--limit``, ``--offset`` and ``--order A|D`` (by id) of upstream list commands."""
    fn = click.option("--order", type=click.Choice(["A", "D"], case_sensitive=False))(fn)
    fn = click.option("--offset", type=click.IntRange(min=0), default=0)(fn)
    fn = click.option("--limit", type=click.IntRange(min=0), default=None)(fn)
    return fn


#: The company as ``--company`` (slug or id), ``--company-id`` or ``--company_id``.
company_option = click.option(
    "--company", "--company-id", "--company_id", "company", default=None, help="Slug or id."
)


def _assignments(items: tuple[str, ...], option: str = "--field") -> dict[str, str]:
    """``KEY=VALUE`` (or upstream's ``KEY:VALUE``) items -> dict; the first separator wins."""
    from multiflexi.errors import UsageError

    out: dict[str, str] = {}
    for item in items:
        cut = min((i for i in (item.find("="), item.find(":")) if i > 0), default=-1)
        key = item[:cut].strip() if cut > 0 else ""
        if not key:
            raise UsageError(f"expected {option} KEY=VALUE, got {item!r}")
        if key in out:
            raise UsageError(f"{option} {key} given twice")
        out[key] = item[cut + 1 :]
    return out


def _record_text(record: dict[str, Any], nested: str, nested_text: str) -> str:
    head = render_record({k: v for k, v in record.items() if k != nested})
    return f"{head}\n{nested}:\n{nested_text}"


# -- credential types -------------------------------------------------------------------


@command("credential-type:list", *_aliases("list"))
@company_option
@list_options
def credential_type_list(
    company: str | None, limit: int | None, offset: int, order: str | None
) -> None:
    """List credential types (global ones and, with --company, that company's)."""
    from multiflexi.credentials.service import resolve_company
    from multiflexi.credentials.types import list_types, type_record

    ctx = cli_context()
    with ctx.db.read() as s:
        cid = resolve_company(s, company).id if company else None
        types = list_types(s, company_id=cid, limit=limit, offset=offset, descending=order == "D")
        rows = [type_record(s, ct, with_fields=False) for ct in types]
    emit(rows, ctx.fmt, columns=TYPE_COLUMNS)


@command("credential-type:get", *_aliases("get"))
@id_argument()
@click.option("--uuid", default=None)
@click.option("--code", default=None)
def credential_type_get(
    pos_id: str | None, opt_id: str | None, uuid: str | None, code: str | None
) -> None:
    """Show a credential type and its fields, by id, --uuid or --code."""
    from multiflexi.credentials.types import get_type, type_record

    ctx = cli_context()
    type_id = resolve_id(pos_id, opt_id) if (pos_id or opt_id) else None
    with ctx.db.read() as s:
        record = type_record(s, get_type(s, id=type_id, uuid=uuid, code=code))
    fields = [{**f, "options": ", ".join(f["options"])} for f in record["fields"]]
    fields = [{k: v for k, v in f.items() if k != "description"} for f in fields]
    emit(record, ctx.fmt, text=_record_text(record, "fields", render_table(fields)))


@command("credential-type:import-json", *_aliases("import-json"))
@click.option("--file", "path", required=True, help="credential-type or credential-prototype JSON.")
@company_option
def credential_type_import(path: str, company: str | None) -> None:
    """Create or update a credential type from JSON (matched by uuid, then code)."""
    from multiflexi.credentials.service import resolve_company
    from multiflexi.credentials.typejson import read_document
    from multiflexi.credentials.types import import_type

    ctx = cli_context()
    spec = read_document(path)
    with ctx.db.session() as s:
        cid = resolve_company(s, company).id if company else None
        ct, created = import_type(s, spec, company_id=cid)
    verb = "imported" if created else "updated"
    data: dict[str, Any] = {"status": "success", "message": f"Credential type {verb}"}
    data |= {"credential_type_id": ct.id, "uuid": ct.uuid, "code": ct.code, "created": created}
    data |= {"file": path, "fields": [f.keyword for f in spec.fields]}
    text = f"Credential type {ct.code} (id {ct.id}) {verb} from {path}."
    emit(data, ctx.fmt, text=text)


@command("credential-type:validate-json", *_aliases("validate-json"))
@click.option("--file", "path", required=True)
def credential_type_validate(path: str) -> None:
    """Check a credential type or prototype JSON file without importing it."""
    from multiflexi.credentials.typejson import read_document

    spec = read_document(path)
    data = {"status": "success", "valid": True, "file": path, "code": spec.code, "uuid": spec.uuid}
    emit(data, cli_context().fmt, text=f"{path} is a valid credential type ({spec.code}).")


@command("credential-type:create", *_aliases("create"))
@click.option("--code", required=True, help="Unique code, e.g. FioBank.")
@click.option("--name", required=True)
@click.option("--description", default="")
@click.option("--uuid", default=None, help="Default: a new random uuid.")
@click.option("--type-version", "--prototype-version", "type_version", default="1.0")
@click.option("--field", "fields", multiple=True, metavar="KEY:TYPE[:required][:secret]")
@company_option
def credential_type_create(
    code: str,
    name: str,
    description: str,
    uuid: str | None,
    type_version: str,
    fields: tuple[str, ...],
    company: str | None,
) -> None:
    """Create a credential type; global unless --company is given."""
    from multiflexi.credentials.service import resolve_company
    from multiflexi.credentials.types import create_type, new_spec, parse_field_spec

    ctx = cli_context()
    specs = [parse_field_spec(item) for item in fields]
    spec = new_spec(
        code, name, specs, description=description, uuid=uuid or "", version=type_version
    )
    with ctx.db.session() as s:
        cid = resolve_company(s, company).id if company else None
        ct = create_type(s, spec, company_id=cid)
    data = {"status": "success", "credential_type_id": ct.id, "code": ct.code, "uuid": ct.uuid}
    data["created"] = True
    emit(data, ctx.fmt, text=f"Credential type {ct.code} created with ID {ct.id}.")


@command("credential-type:delete", *_aliases("delete"))
@id_argument()
def credential_type_delete(pos_id: str | None, opt_id: str | None) -> None:
    """Delete a credential type (refused while credentials use it)."""
    from multiflexi.credentials.types import delete_type

    ctx = cli_context()
    type_id = resolve_id(pos_id, opt_id)
    with ctx.db.session() as s:
        ct = delete_type(s, type_id)
    data = {"status": "success", "deleted": True, "credential_type_id": type_id, "code": ct.code}
    emit(data, ctx.fmt, text=f"Credential type {type_id} ({ct.code}) deleted.")


# -- credentials ------------------------------------------------------------------------


@command("credential:create")
@click.option("--name", default=None)
@company_option
@click.option("--credential-type-id", "--credential_type_id", "type_id", default=None)
@click.option("--type", "type_code", default=None, help="Credential type code (or id).")
@click.option("--field", "fields", multiple=True, metavar="KEY=VALUE")
def credential_create(
    name: str | None,
    company: str | None,
    type_id: str | None,
    type_code: str | None,
    fields: tuple[str, ...],
) -> None:
    """Create a credential of a type for a company; secret fields are encrypted."""
    from multiflexi.credentials.service import (
        create_credential,
        credential_record,
        resolve_company,
        resolve_type,
    )
    from multiflexi.errors import UsageError
    from multiflexi.secrets import Vault

    ctx = cli_context()
    if not name:
        raise UsageError("missing --name")
    if not company:
        raise UsageError("missing --company-id (or --company SLUG)")
    values = _assignments(fields)
    tid = parse_int(type_id, "credential type id") if type_id is not None else None
    with ctx.db.session() as s:
        cid = resolve_company(s, company).id
        ct = resolve_type(s, type_id=tid, code=type_code)
        vault = Vault.from_settings(ctx.settings, ctx.db)
        cred = create_credential(s, vault, name=name, company_id=cid, type_id=ct.id, values=values)
        record = credential_record(cred)
    data = {
        "status": "success",
        "message": "Credential created successfully",
        "credential_id": cred.id,
        "created": True,
        "credential": record,
    }
    text = f"Credential {cred.id} ({cred.name}) created for company {record['company']}."
    emit(data, ctx.fmt, text=text)


@command("credential:list")
@company_option
@click.option("--type", "type_code", default=None, help="Only credentials of this type code.")
@list_options
def credential_list(
    company: str | None,
    type_code: str | None,
    limit: int | None,
    offset: int,
    order: str | None,
) -> None:
    """List credentials (values of secret fields are redacted)."""
    from multiflexi.credentials.service import (
        credential_record,
        list_credentials,
        resolve_company,
        resolve_type,
    )

    ctx = cli_context()
    with ctx.db.read() as s:
        cid = resolve_company(s, company).id if company else None
        tid = resolve_type(s, type_id=None, code=type_code).id if type_code else None
        creds = list_credentials(
            s, company_id=cid, type_id=tid, limit=limit, offset=offset, descending=order == "D"
        )
        rows = [credential_record(c) for c in creds]
    table = [
        {**r, "fields": ", ".join(k for k, v in r["fields"].items() if v is not None)} for r in rows
    ]
    columns = ["id", "name", "company", "credential_type", "fields"]
    emit(rows, ctx.fmt, text=render_table(table, columns) if rows else "No data")


@command("credential:get")
@id_argument()
@click.option("--reveal", is_flag=True, help="Show secret values in clear text (asks first).")
@click.option("-y", "--yes", is_flag=True, help="Confirm --reveal without asking.")
def credential_get(pos_id: str | None, opt_id: str | None, reveal: bool, yes: bool) -> None:
    """Show a credential; secret values are redacted unless --reveal."""
    from multiflexi.credentials.service import credential_record, get_credential
    from multiflexi.secrets import Vault

    ctx = cli_context()
    cred_id = resolve_id(pos_id, opt_id)
    with ctx.db.read() as s:
        record = credential_record(get_credential(s, cred_id))
    if reveal:
        confirm(f"Reveal the secret values of credential {cred_id}?", yes)
        vault = Vault.from_settings(ctx.settings, ctx.db)
        with ctx.db.read() as s:
            record = credential_record(get_credential(s, cred_id), reveal=True, vault=vault)
    fields = {k: "" if v is None else v for k, v in record["fields"].items()}
    nested = indent(render_record(fields) if fields else "(none)", "  ")
    emit(record, ctx.fmt, text=_record_text(record, "fields", nested))


@command("credential:update")
@id_argument()
@click.option("--name", default=None)
@click.option("--field", "fields", multiple=True, metavar="KEY=VALUE")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove a stored value.")
def credential_update(
    pos_id: str | None,
    opt_id: str | None,
    name: str | None,
    fields: tuple[str, ...],
    unset: tuple[str, ...],
) -> None:
    """Rename a credential or change its values (a blank secret keeps the stored one)."""
    from multiflexi.credentials.service import update_credential
    from multiflexi.secrets import Vault

    ctx = cli_context()
    cred_id = resolve_id(pos_id, opt_id)
    values = _assignments(fields)
    with ctx.db.session() as s:
        vault = Vault.from_settings(ctx.settings, ctx.db)
        _cred, changed = update_credential(s, vault, cred_id, name=name, values=values, unset=unset)
    message = "Credential updated successfully" if changed else "No changes"
    data = {"status": "success", "message": message, "credential_id": cred_id}
    data |= {"updated": bool(changed), "changed": changed}
    text = f"Credential {cred_id} " + (
        f"updated: {', '.join(changed)}." if changed else "unchanged."
    )
    emit(data, ctx.fmt, text=text)


@command("credential:remove", "credential:delete")
@id_argument()
def credential_remove(pos_id: str | None, opt_id: str | None) -> None:
    """Delete a credential and unbind it from run templates."""
    from multiflexi.credentials.service import remove_credential

    ctx = cli_context()
    cred_id = resolve_id(pos_id, opt_id)
    with ctx.db.session() as s:
        _cred, unbound = remove_credential(s, cred_id)
    data: dict[str, Any] = {"status": "success", "message": "Credential removed successfully"}
    data |= {"credential_id": cred_id, "removed": True, "unassigned_runtemplates": unbound}
    emit(data, ctx.fmt, text=f"Credential {cred_id} removed.")


# -- bindings ---------------------------------------------------------------------------


def runtemplate_id_option(fn: F) -> F:
    """The run template as ID, ``--id`` or the pre-2.5.5 ``--runtemplate_id``."""
    fn = click.argument("pos_id", required=False, metavar="ID")(fn)
    names = ("--id", "--runtemplate_id", "--runtemplate-id")
    return click.option(*names, "opt_id", default=None, help="Run template id.")(fn)


def credential_id_option(fn: F) -> F:
    return click.option("--credential_id", "--credential-id", "credential_id", required=True)(fn)


@command("run-template:assign-credential")
@runtemplate_id_option
@credential_id_option
def assign_credential(pos_id: str | None, opt_id: str | None, credential_id: str) -> None:
    """Bind a credential to a run template (replaces one of the same type)."""
    from multiflexi.credentials.bindings import assign_credential as assign

    ctx = cli_context()
    rt_id = resolve_id(pos_id, opt_id, "run template id")
    cred_id = parse_int(credential_id, "credential id")
    with ctx.db.session() as s:
        data = assign(s, rt_id, cred_id)
    text = f"Credential #{cred_id} assigned to RunTemplate #{rt_id}"
    if data["replaced"]:
        text += f" (replacing #{', #'.join(map(str, data['replaced']))})"
    emit(data, ctx.fmt, text=text + ".")


@command("run-template:unassign-credential")
@runtemplate_id_option
@credential_id_option
def unassign_credential(pos_id: str | None, opt_id: str | None, credential_id: str) -> None:
    """Remove a credential from a run template."""
    from multiflexi.credentials.bindings import unassign_credential as unassign

    ctx = cli_context()
    rt_id = resolve_id(pos_id, opt_id, "run template id")
    cred_id = parse_int(credential_id, "credential id")
    with ctx.db.session() as s:
        unassign(s, rt_id, cred_id)
    data = {"status": "ok", "runtemplate_id": rt_id, "credential_id": cred_id, "unassigned": True}
    emit(data, ctx.fmt, text=f"Credential #{cred_id} unassigned from RunTemplate #{rt_id}.")


@command("run-template:list-credentials")
@runtemplate_id_option
def list_credentials(pos_id: str | None, opt_id: str | None) -> None:
    """List the credentials bound to a run template."""
    from multiflexi.credentials.bindings import runtemplate_credentials

    ctx = cli_context()
    rt_id = resolve_id(pos_id, opt_id, "run template id")
    with ctx.db.read() as s:
        rows = runtemplate_credentials(s, rt_id)
    emit(rows, ctx.fmt)
