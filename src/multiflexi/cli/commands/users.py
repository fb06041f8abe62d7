"""user:*, user-role:set, user-company:*, token:* and auditlog:list."""

from __future__ import annotations

import sys
from typing import Any

import click

from multiflexi.cli.base import cli_context, command, parse_bool, parse_int
from multiflexi.cli.output import emit
from multiflexi.errors import Invalid, UsageError

USER_COLUMNS = ("id", "login", "email", "firstname", "lastname", "enabled", "has_password")


def _user_selector(fn: Any) -> Any:
    fn = click.option("--email", default=None, help="User e-mail.")(fn)
    fn = click.option("--login", default=None, help="User login.")(fn)
    fn = click.option("--id", "--user_id", "--user-id", "user_id", default=None, help="User id.")(
        fn
    )
    return fn


def _find(session: Any, user_id: str | None, login: str | None, email: str | None) -> Any:
    from multiflexi.accounts.service import find_user

    if user_id is None and login is None and email is None:
        raise UsageError("give the user with --id, --login or --email")
    uid = parse_int(user_id, "--id") if user_id is not None else None
    return find_user(session, user_id=uid, login=login, email=email)


def _read_password(
    password_file: str | None, password_stdin: bool, plaintext: str | None, *, required: bool
) -> str | None:
    """The password from a file, stdin, ``--plaintext`` (warned) or a prompt."""
    given = sum(x is not None for x in (password_file, plaintext)) + int(password_stdin)
    if given > 1:
        raise UsageError("give the password one way only")
    if plaintext is not None:
        return plaintext  # warned about once the command has succeeded (one line on error)
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as fh:
                text = fh.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise Invalid(f"cannot read password file {password_file}: {exc}") from None
        return text
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not required:
        return None
    if not sys.stdin.isatty():
        raise UsageError(
            "no terminal to ask for the password: use --password-file or --password-stdin"
        )
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


def _warn_plaintext(plaintext: str | None) -> None:
    if plaintext is not None:
        click.echo(
            "warning: --plaintext shows the password to every user of this machine (ps); "
            "use --password-file or --password-stdin",
            err=True,
        )


def _password_options(fn: Any) -> Any:
    fn = click.option(
        "--plaintext", default=None, help="Password on the command line (visible in ps)."
    )(fn)
    fn = click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")(fn)
    fn = click.option("--password-file", default=None, help="Read the password from a file.")(fn)
    return fn


@command("user:list")
@click.option("--limit", default="1000", show_default=True)
@click.option("--offset", default="0", show_default=True)
def user_list(limit: str, offset: str) -> None:
    """List users (never their password hashes)."""
    from multiflexi.accounts.service import list_users, user_record

    ctx = cli_context()
    with ctx.db.read() as s:
        rows = [
            user_record(u)
            for u in list_users(
                s, limit=parse_int(limit, "--limit"), offset=parse_int(offset, "--offset")
            )
        ]
    emit(rows, ctx.fmt, columns=USER_COLUMNS, tz=ctx.settings.timezone)


@command("user:get")
@_user_selector
def user_get(user_id: str | None, login: str | None, email: str | None) -> None:
    """Show a user with its roles and company assignments."""
    from multiflexi.accounts.service import (
        assignment_record,
        list_assignments,
        user_record,
        user_roles,
    )

    ctx = cli_context()
    with ctx.db.read() as s:
        user = _find(s, user_id, login, email)
        data = user_record(user)
        data["roles"] = user_roles(s, user.id)
        data["companies"] = [assignment_record(a) for a in list_assignments(s, user_id=user.id)]
    emit(data, ctx.fmt, tz=ctx.settings.timezone)


@command("user:create")
@click.option("--login", required=True, help="Login name.")
@click.option("--email", required=True, help="E-mail.")
@click.option("--firstname", default="", help="First name.")
@click.option("--lastname", default="", help="Last name.")
@click.option("--enabled", default="true", metavar="true|false", help="May log in (default true).")
@click.option("--no-password", is_flag=True, help="Create without a password (no web login).")
@_password_options
def user_create(
    login: str,
    email: str,
    firstname: str,
    lastname: str,
    enabled: str,
    no_password: bool,
    password_file: str | None,
    password_stdin: bool,
    plaintext: str | None,
) -> None:
    """Create a user; the password is asked for, or read with --password-file/--password-stdin."""
    from multiflexi.accounts.service import create_user

    ctx = cli_context()
    password = (
        None
        if no_password
        else _read_password(password_file, password_stdin, plaintext, required=True)
    )
    with ctx.db.session() as s:
        user = create_user(
            s,
            login=login,
            email=email,
            firstname=firstname,
            lastname=lastname,
            password=password,
            enabled=bool(parse_bool(enabled, "--enabled")),
        )
        user_id = user.id
    emit({"user_id": user_id}, ctx.fmt, text=f"User created with ID: {user_id}")
    _warn_plaintext(plaintext)


@command("user:update")
@_user_selector
@click.option("--new-login", "--new_login", "new_login", default=None, help="New login.")
@click.option("--new-email", "--new_email", "new_email", default=None, help="New e-mail.")
@click.option("--firstname", default=None)
@click.option("--lastname", default=None)
@click.option("--enabled", default=None, metavar="true|false")
@click.option("--password", "set_password", is_flag=True, help="Ask for a new password.")
@_password_options
def user_update(
    user_id: str | None,
    login: str | None,
    email: str | None,
    new_login: str | None,
    new_email: str | None,
    firstname: str | None,
    lastname: str | None,
    enabled: str | None,
    set_password: bool,
    password_file: str | None,
    password_stdin: bool,
    plaintext: str | None,
) -> None:
    """Change fields of a user (select it with --id, --login or --email)."""
    from multiflexi.accounts.service import update_user

    ctx = cli_context()
    if user_id is None and login is None and email is None:
        raise UsageError("give the user with --id, --login or --email")
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "login": new_login,
            "email": new_email,
            "firstname": firstname,
            "lastname": lastname,
        }.items()
        if v is not None
    }
    if enabled is not None:
        changes["enabled"] = parse_bool(enabled, "--enabled")
    password = _read_password(password_file, password_stdin, plaintext, required=set_password)
    if password is not None:
        changes["password"] = password
    with ctx.db.session() as s:
        user = _find(s, user_id, login, email)
        changed = update_user(s, user, changes)
        uid = user.id
    emit(
        {"user_id": uid, "changed": changed},
        ctx.fmt,
        text=f"User {uid} updated: {', '.join(changed) or 'nothing changed'}",
    )
    _warn_plaintext(plaintext)


@command("user:delete", "user:remove")
@_user_selector
def user_delete(user_id: str | None, login: str | None, email: str | None) -> None:
    """Delete a user with its tokens, roles and company assignments."""
    from multiflexi.accounts.service import delete_user

    ctx = cli_context()
    with ctx.db.session() as s:
        user = _find(s, user_id, login, email)
        uid = user.id
        delete_user(s, user)
    emit(
        {"status": "success", "message": "User deleted successfully", "user_id": uid},
        ctx.fmt,
        text=f"User {uid} deleted.",
    )


@command("user-role:set")
@_user_selector
@click.option("--roles", required=True, help="Comma-separated roles (admin); empty: none.")
@click.option("--replace", default="true", metavar="true|false", show_default=True)
def user_role_set(
    user_id: str | None, login: str | None, email: str | None, roles: str, replace: str
) -> None:
    """Set the global roles of a user (admin: everything)."""
    from multiflexi.accounts.service import set_roles

    ctx = cli_context()
    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    with ctx.db.session() as s:
        user = _find(s, user_id, login, email)
        have = set_roles(s, user, wanted, replace=bool(parse_bool(replace, "--replace")))
        uid = user.id
    emit(
        {"status": "success", "message": "RBAC roles updated", "user_id": uid, "roles": have},
        ctx.fmt,
        text=f"User {uid} roles: {', '.join(have) or 'none'}",
    )


@command("user-company:assign")
@click.option("--company_id", "--company-id", "company_id", required=True, help="Company id.")
@_user_selector
@click.option("--role", default="viewer", show_default=True, help="viewer or operator.")
def user_company_assign(
    company_id: str, user_id: str | None, login: str | None, email: str | None, role: str
) -> None:
    """Give a user a role in a company (viewer: read only; operator: run and edit)."""
    from multiflexi.accounts.service import assign_company

    ctx = cli_context()
    cid = parse_int(company_id, "--company_id")
    with ctx.db.session() as s:
        user = _find(s, user_id, login, email)
        assign_company(s, cid, user, role)
        uid = user.id
    emit(
        {
            "status": "success",
            "message": "User assigned to company",
            "company_id": cid,
            "user_id": uid,
            "role": role,
        },
        ctx.fmt,
        text=f"User {uid} is {role} of company {cid}.",
    )


@command("user-company:unassign")
@click.option("--company_id", "--company-id", "company_id", required=True, help="Company id.")
@_user_selector
def user_company_unassign(
    company_id: str, user_id: str | None, login: str | None, email: str | None
) -> None:
    """Remove a user's role in a company."""
    from multiflexi.accounts.service import unassign_company

    ctx = cli_context()
    cid = parse_int(company_id, "--company_id")
    with ctx.db.session() as s:
        user = _find(s, user_id, login, email)
        deleted = unassign_company(s, cid, user)
        uid = user.id
    message = "User unassigned from company" if deleted else "No assignment found"
    emit(
        {
            "status": "success",
            "message": message,
            "company_id": cid,
            "user_id": uid,
            "deleted": deleted,
        },
        ctx.fmt,
        text=message + ".",
    )


@command("user-company:list")
@click.option("--company_id", "--company-id", "company_id", default=None, help="Company id.")
@_user_selector
def user_company_list(
    company_id: str | None, user_id: str | None, login: str | None, email: str | None
) -> None:
    """List company assignments, of one user or one company."""
    from multiflexi.accounts.service import assignment_record, list_assignments

    ctx = cli_context()
    with ctx.db.read() as s:
        uid = None
        if user_id is not None or login is not None or email is not None:
            uid = _find(s, user_id, login, email).id
        cid = parse_int(company_id, "--company_id") if company_id is not None else None
        rows = [assignment_record(a) for a in list_assignments(s, user_id=uid, company_id=cid)]
    if ctx.fmt != "json" and not rows:
        emit(rows, ctx.fmt, text="No assignments found.")
        return
    emit(rows, ctx.fmt, tz=ctx.settings.timezone)


@command("token:generate", "token:create")
@click.option("--user", "user", required=True, help="User login or id.")
@click.option("--expires", default=None, help="Lifetime: 30d, 12h, 90m (default: none).")
@click.option("--name", default="", help="A note to tell tokens apart.")
def token_generate(user: str, expires: str | None, name: str) -> None:
    """Make an API token for a user; it is shown once and stored only as a hash."""
    from multiflexi.accounts.service import find_user
    from multiflexi.accounts.tokens import generate_token

    ctx = cli_context()
    lifetime = _lifetime(expires) if expires else None
    with ctx.db.session() as s:
        owner = find_user(s, user_id=int(user)) if user.isdigit() else find_user(s, login=user)
        row, plain = generate_token(s, owner, lifetime=lifetime, name=name)
        data = {"token_id": row.id, "token": plain, "user": owner.login, "until": row.until}
    emit(
        data,
        ctx.fmt,
        text=f"Token generated for user: {data['user']}\nToken ID: {data['token_id']}\n"
        f"Token: {plain}",
    )


def _lifetime(text: str) -> Any:
    import re
    from datetime import timedelta

    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not m:
        raise Invalid(f"--expires must be like 30d, 12h or 90m, got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


@command("token:list")
@click.option("--user", "user", default=None, help="Only tokens of this login or id.")
def token_list(user: str | None) -> None:
    """List tokens (prefix, owner, expiry, last use, state); never the tokens themselves."""
    from multiflexi.accounts.service import find_user
    from multiflexi.accounts.tokens import list_tokens, token_record

    ctx = cli_context()
    with ctx.db.read() as s:
        uid = None
        if user is not None:
            uid = (
                find_user(s, user_id=int(user)) if user.isdigit() else find_user(s, login=user)
            ).id
        rows = [token_record(t) for t in list_tokens(s, uid)]
    if ctx.fmt != "json" and not rows:
        emit(rows, ctx.fmt, text="No tokens found.")
        return
    emit(rows, ctx.fmt, tz=ctx.settings.timezone)


@command("token:revoke", "token:delete")
@click.option("--id", "token_id", required=True, help="Token id.")
def token_revoke(token_id: str) -> None:
    """Revoke a token: it stops working at once."""
    from multiflexi.accounts.tokens import revoke_token

    ctx = cli_context()
    tid = parse_int(token_id, "--id")
    with ctx.db.session() as s:
        revoke_token(s, tid)
    emit({"token_id": tid, "revoked": True}, ctx.fmt, text=f"Token {tid} revoked.")


@command("auditlog:list", "audit:list")
@click.option("--user", default=None, help="Only changes by this login.")
@click.option("--entity", "entity_type", default=None, help="Table name: job, runtemplate, ...")
@click.option("--entity_id", "--entity-id", "entity_id", default=None)
@click.option("--action", type=click.Choice(["create", "update", "delete"]), default=None)
@click.option("--since", default=None, help="Since: 30d, 2h, or a date.")
@click.option("--limit", default="50", show_default=True)
@click.option("--offset", default="0", show_default=True)
def auditlog_list(
    user: str | None,
    entity_type: str | None,
    entity_id: str | None,
    action: str | None,
    since: str | None,
    limit: str,
    offset: str,
) -> None:
    """List audit log entries, newest first: who changed what, when, through CLI or API."""
    from multiflexi.audit import audit_record, list_audit

    ctx = cli_context()
    when = None
    if since:
        from multiflexi.scheduling.when import parse_since

        when = parse_since(since, ctx.settings.timezone)
    with ctx.db.read() as s:
        rows = [
            audit_record(r)
            for r in list_audit(
                s,
                login=user,
                entity_type=entity_type,
                entity_id=entity_id,
                action=action,
                since=when,
                limit=parse_int(limit, "--limit"),
                offset=parse_int(offset, "--offset"),
            )
        ]
    if ctx.fmt != "json":
        if not rows:
            emit(rows, ctx.fmt, text="No audit log entries found.")
            return
        for r in rows:
            r["changes"] = ", ".join(sorted(r["changes"]))
    emit(rows, ctx.fmt, tz=ctx.settings.timezone)
