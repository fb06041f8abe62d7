"""API tokens: random, shown once, stored only as SHA-256, with expiry, last use, revocation.

A token is 32 random bytes in URL-safe base64 behind the prefix ``mfx_``. SHA-256 (not a
slow hash) is right here: the token has 256 bits of entropy, so nothing is gained by
slowing down a guess, and every API request pays the hash.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from multiflexi.errors import Invalid, NotFound, Unauthenticated
from multiflexi.storage.models import Token, User
from multiflexi.storage.types import utcnow

PREFIX = "mfx_"
#: last_used is written at most this often per token, so reads stay reads.
TOUCH_EVERY = timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_record(row: Token, now: datetime | None = None) -> dict[str, Any]:
    """A token's metadata; the token itself is never stored and never shown again."""
    now = now or utcnow()
    state = "active"
    if row.revoked is not None:
        state = "revoked"
    elif row.until is not None and row.until <= now:
        state = "expired"
    return {
        "id": row.id,
        "user_id": row.user_id,
        "prefix": row.prefix,
        "name": row.name,
        "start": row.start,
        "until": row.until,
        "last_used": row.last_used,
        "revoked": row.revoked,
        "state": state,
    }


def generate_token(
    session: Session, user: User, *, lifetime: timedelta | None = None, name: str = ""
) -> tuple[Token, str]:
    """A new token of ``user``: the row and the token (returned here only)."""
    if lifetime is not None and lifetime.total_seconds() <= 0:
        raise Invalid("token lifetime must be positive")
    plain = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = Token(
        user_id=user.id,
        token_hash=digest(plain),
        prefix=plain[: len(PREFIX) + 4],
        name=name[:255],
        start=now,
        until=now + lifetime if lifetime else None,
    )
    session.add(row)
    session.flush()
    return row, plain


def list_tokens(session: Session, user_id: int | None = None) -> list[Token]:
    stmt = select(Token).order_by(Token.id)
    if user_id is not None:
        stmt = stmt.where(Token.user_id == user_id)
    return list(session.scalars(stmt))


def revoke_token(session: Session, token_id: int, *, user_id: int | None = None) -> Token:
    """Revoke a token by id (only one of ``user_id`` when given); revoking twice is fine."""
    row = session.get(Token, token_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFound(f"token {token_id} not found")
    if row.revoked is None:
        row.revoked = utcnow()
        session.flush()
    return row


def revoke_plain(session: Session, plain: str) -> bool:
    """Revoke the token given in clear (logout); False when it is unknown or revoked."""
    row = session.scalar(select(Token).where(Token.token_hash == digest(plain)))
    if row is None or row.revoked is not None:
        return False
    row.revoked = utcnow()
    session.flush()
    return True


def user_of_token(session: Session, plain: str) -> User:
    """The enabled user owning a valid token (its last use recorded);
    :class:`Unauthenticated` otherwise."""
    user, stale = resolve_token(session, plain)
    if stale is not None:
        touch_token(session, stale)
    return user


def touch_token(session: Session, token_id: int) -> None:
    session.execute(update(Token).where(Token.id == token_id).values(last_used=utcnow()))


def resolve_token(session: Session, plain: str) -> tuple[User, int | None]:
    """The enabled user owning a valid token, and the token's id when its last use is due
    to be recorded (:func:`touch_token`, in a write transaction); reads only."""
    if not plain.startswith(PREFIX) or len(plain) > 100:
        raise Unauthenticated("invalid token")
    row = session.scalar(select(Token).where(Token.token_hash == digest(plain)))
    now = utcnow()
    if row is None or row.revoked is not None:
        raise Unauthenticated("invalid or revoked token")
    if row.until is not None and row.until <= now:
        raise Unauthenticated("token expired")
    user = session.get(User, row.user_id)
    if user is None or not user.enabled:
        raise Unauthenticated("invalid token")
    stale = row.last_used is None or now - row.last_used >= TOUCH_EVERY
    return user, row.id if stale else None
