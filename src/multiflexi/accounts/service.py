"""Users, their global roles and their company assignments.

The Unix account that runs the CLI has a user row too (:mod:`multiflexi.users`); it has no
password and stays disabled for web login until someone gives it one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from multiflexi.accounts.passwords import hash_password
from multiflexi.errors import Conflict, Invalid, NotFound
from multiflexi.storage.models import Company, CompanyUser, User, UserRole
from multiflexi.storage.types import utcnow

ROLES = ("admin",)
COMPANY_ROLES = ("viewer", "operator")
LOGIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
EDITABLE = ("login", "email", "firstname", "lastname", "enabled")


def user_record(user: User) -> dict[str, Any]:
    """A user as shown by the CLI and the API: never the password hash."""
    return {
        "id": user.id,
        "login": user.login,
        "email": user.email,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "enabled": bool(user.enabled),
        "has_password": bool(user.password),
        "DatCreate": user.created,
        "DatSave": user.saved,
    }


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def find_user(
    session: Session,
    *,
    user_id: int | None = None,
    login: str | None = None,
    email: str | None = None,
) -> User:
    """A user by id, login or e-mail (the first one given)."""
    if user_id is not None:
        return get_user(session, user_id)
    if login is not None:
        user = session.scalar(select(User).where(User.login == login))
        if user is None:
            raise NotFound(f"user {login!r} not found")
        return user
    if email is not None:
        found = session.scalars(select(User).where(User.email == email)).all()
        if len(found) != 1:
            raise NotFound(f"user with e-mail {email!r} not found")
        return found[0]
    raise Invalid("give a user id, login or e-mail")


def list_users(session: Session, *, limit: int = 1000, offset: int = 0) -> list[User]:
    stmt = select(User).order_by(User.id).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def _check(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(EDITABLE) - {"password"})
    if unknown:
        raise Invalid(f"unknown user field {unknown[0]!r}")
    login = values.get("login")
    if login is not None and not LOGIN.match(str(login)):
        raise Invalid(f"invalid login {login!r}: letters, digits and _ . @ - (at most 64)")
    email = values.get("email")
    if email is not None and (not EMAIL.match(str(email)) or len(str(email)) > 255):
        raise Invalid(f"invalid e-mail {email!r}")
    for key in ("firstname", "lastname"):
        if key in values and len(str(values[key] or "")) > 64:
            raise Invalid(f"{key} too long (at most 64 characters)")
    if "enabled" in values and not isinstance(values["enabled"], bool):
        raise Invalid("enabled must be true or false")


def create_user(
    session: Session,
    *,
    login: str,
    email: str,
    password: str | None = None,
    firstname: str = "",
    lastname: str = "",
    enabled: bool = True,
) -> User:
    """A new user; with a password it can log in to the API (argon2id hash stored)."""
    values = {"login": login, "email": email, "firstname": firstname, "lastname": lastname}
    _check({**values, "enabled": enabled})
    if session.scalar(select(User.id).where(User.login == login)) is not None:
        raise Conflict(f"user {login!r} exists already")
    user = User(
        **values,
        enabled=enabled,
        password=hash_password(password) if password else "",
        saved=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def update_user(session: Session, user: User, changes: Mapping[str, Any]) -> list[str]:
    """Change fields (and the password, hashed); returns the names of changed fields."""
    _check(changes)
    login = changes.get("login")
    if login is not None and login != user.login:
        taken = session.scalar(select(User.id).where(User.login == login, User.id != user.id))
        if taken is not None:
            raise Conflict(f"user {login!r} exists already")
    changed = []
    for key in EDITABLE:
        if key in changes and changes[key] is not None and getattr(user, key) != changes[key]:
            setattr(user, key, changes[key])
            changed.append(key)
    if changes.get("password"):
        user.password = hash_password(str(changes["password"]))
        changed.append("password")
    if changed:
        user.saved = utcnow()
        session.flush()
    return changed


def delete_user(session: Session, user: User) -> None:
    """Remove a user with its tokens, roles and assignments; jobs keep their record."""
    from sqlalchemy import update

    from multiflexi.storage.models import Job, Token

    session.execute(update(Job).where(Job.launched_by == user.id).values(launched_by=None))
    session.execute(delete(Token).where(Token.user_id == user.id))
    session.execute(delete(UserRole).where(UserRole.user_id == user.id))
    session.execute(delete(CompanyUser).where(CompanyUser.user_id == user.id))
    session.delete(user)
    session.flush()


# -- roles -------------------------------------------------------------------------------


def user_roles(session: Session, user_id: int) -> list[str]:
    stmt = select(UserRole.role).where(UserRole.user_id == user_id).order_by(UserRole.role)
    return list(session.scalars(stmt))


def set_roles(
    session: Session,
    user: User,
    roles: list[str],
    *,
    replace: bool = True,
    assigned_by: int | None = None,
) -> list[str]:
    """Give ``user`` the global ``roles`` (replacing the others unless ``replace`` is false)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise Invalid(f"unknown role(s): {', '.join(unknown)}; valid: {', '.join(ROLES)}")
    have = set(user_roles(session, user.id))
    if replace:
        gone = have - set(roles)
        if gone:
            session.execute(
                delete(UserRole).where(UserRole.user_id == user.id, UserRole.role.in_(gone))
            )
    for role in roles:
        if role not in have:
            session.add(UserRole(user_id=user.id, role=role, assigned_by=assigned_by))
    session.flush()
    return user_roles(session, user.id)


# -- company assignments ------------------------------------------------------------------


def assignment_record(row: CompanyUser) -> dict[str, Any]:
    return {
        "company_id": row.company_id,
        "user_id": row.user_id,
        "role": row.role,
        "created_at": row.created_at,
    }


def assign_company(session: Session, company_id: int, user: User, role: str) -> CompanyUser:
    """Give ``user`` the ``role`` (viewer or operator) in a company; an existing one changes."""
    if role not in COMPANY_ROLES:
        raise Invalid(f"unknown company role {role!r}; valid: {', '.join(COMPANY_ROLES)}")
    if session.get(Company, company_id) is None:
        raise NotFound(f"company {company_id} not found")
    row = session.scalar(
        select(CompanyUser).where(
            CompanyUser.company_id == company_id, CompanyUser.user_id == user.id
        )
    )
    if row is None:
        row = CompanyUser(company_id=company_id, user_id=user.id, role=role)
        session.add(row)
    else:
        row.role = role
    session.flush()
    return row


def unassign_company(session: Session, company_id: int, user: User) -> int:
    """Remove the user's role in a company; returns how many assignments were removed."""
    rows = session.scalars(
        select(CompanyUser).where(
            CompanyUser.company_id == company_id, CompanyUser.user_id == user.id
        )
    ).all()
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def list_assignments(
    session: Session, *, user_id: int | None = None, company_id: int | None = None
) -> list[CompanyUser]:
    stmt = select(CompanyUser).order_by(CompanyUser.company_id, CompanyUser.user_id)
    if user_id is not None:
        stmt = stmt.where(CompanyUser.user_id == user_id)
    if company_id is not None:
        stmt = stmt.where(CompanyUser.company_id == company_id)
    return list(session.scalars(stmt))
