"""Who is asking, and what they may see: the one place company scoping is decided.

Every list, get, count, export and stream of company-owned data goes through
:func:`scoped` (for queries) or :func:`visible` / :func:`operable` (for one object). An object
of a company the user is not assigned to is *not found*: its existence is not revealed.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.accounts import throttle
from multiflexi.accounts.passwords import verify_password
from multiflexi.errors import Forbidden, NotFound
from multiflexi.storage.models import CompanyUser, LoginAttempt, User, UserRole

if TYPE_CHECKING:
    from sqlalchemy.sql import Select

    from multiflexi.storage.database import Database

S = TypeVar("S", bound="Select[Any]")


@dataclass(frozen=True)
class Principal:
    """An authenticated user with its roles: ``admin``, or a role per company id."""

    user_id: int
    login: str
    admin: bool = False
    companies: Mapping[int, str] = field(default_factory=dict)

    def role_in(self, company_id: int) -> str | None:
        if self.admin:
            return "admin"
        return self.companies.get(company_id)

    def visible_ids(self) -> list[int] | None:
        """Company ids this user may see; None means all (admin)."""
        return None if self.admin else sorted(self.companies)


def principal_of(session: Session, user: User) -> Principal:
    roles = set(session.scalars(select(UserRole.role).where(UserRole.user_id == user.id)))
    rows = session.execute(
        select(CompanyUser.company_id, CompanyUser.role).where(CompanyUser.user_id == user.id)
    )
    return Principal(
        user_id=user.id,
        login=user.login,
        admin="admin" in roles,
        companies={int(cid): str(role) for cid, role in rows},
    )


def scoped(stmt: S, company_column: Any, who: Principal) -> S:
    """``stmt`` restricted to the companies ``who`` may see."""
    ids = who.visible_ids()
    if ids is None:
        return stmt
    return stmt.where(company_column.in_(ids))  # type: ignore[no-any-return]


def visible(who: Principal, company_id: int | None, what: str) -> None:
    """:class:`NotFound` (``what`` not found) unless ``who`` may see the company's data."""
    if company_id is None or who.role_in(company_id) is None:
        raise NotFound(f"{what} not found")


def operable(who: Principal, company_id: int | None, what: str) -> None:
    """Like :func:`visible`, and :class:`Forbidden` for a viewer."""
    visible(who, company_id, what)
    assert company_id is not None
    if who.role_in(company_id) == "viewer":
        raise Forbidden(f"viewer of company {company_id} may not change {what}")


def require_admin(who: Principal) -> None:
    if not who.admin:
        raise Forbidden("only an administrator may do this")


def login_with_password(
    db: Database,
    login: str,
    password: str,
    *,
    address: str,
    limits: throttle.Limits,
) -> Principal | None:
    """The principal of the enabled user with this login and password, else None (the
    failure is recorded). :class:`Throttled` while the (login, address) pair must wait.

    Unknown login, wrong password and disabled account all answer the same, so a caller
    learns nothing about which logins exist. A success reads only (no write transaction),
    unless earlier failures of the pair are to be forgotten.
    """
    key = throttle.key_of(login, address)
    with db.read() as s:
        throttle.check_allowed(s, key)
        user = s.scalar(select(User).where(User.login == login)) if login else None
        stored = user.password if user is not None else ""
        ok = _recently_verified(login, password, stored) or verify_password(stored, password)
        who = principal_of(s, user) if user is not None and ok and user.enabled else None
        failed_before = s.get(LoginAttempt, key) is not None
    if who is None:
        with db.session() as s:
            throttle.record_failure(s, key, limits)
        return None
    _remember(login, password, stored)
    if failed_before:
        with db.session() as s:
            throttle.record_success(s, key)
    return who


#: HTTP Basic sends the password with every request, and argon2id costs tens of
#: milliseconds by design. A successful check is remembered for a while, in this process
#: only, as a salted SHA-256 of (login, password) bound to the stored hash: a changed
#: password (a new hash) is checked with argon2 again at once.
_VERIFIED: dict[str, tuple[str, float]] = {}
_VERIFIED_SECONDS = 300.0
_VERIFIED_MAX = 4096
_SALT = secrets.token_bytes(16)


def _verified_key(login: str, password: str) -> str:
    import hashlib

    data = (
        login.encode("utf-8", "surrogatepass") + b"\0" + password.encode("utf-8", "surrogatepass")
    )
    return hashlib.sha256(_SALT + data).hexdigest()


def _recently_verified(login: str, password: str, stored: str) -> bool:
    import time

    if not stored:
        return False
    hit = _VERIFIED.get(_verified_key(login, password))
    return hit is not None and hit[0] == stored and hit[1] > time.monotonic()


def _remember(login: str, password: str, stored: str) -> None:
    import time

    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[_verified_key(login, password)] = (stored, time.monotonic() + _VERIFIED_SECONDS)
