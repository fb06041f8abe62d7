"""What every request handler needs, as annotated dependencies: the database, the
settings, who is asking (HTTP Basic or a bearer token), and which list shape to answer."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from multiflexi.accounts.access import Principal
from multiflexi.config import Settings
from multiflexi.errors import Unauthenticated
from multiflexi.storage.database import Database


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# Dependencies that do no I/O are coroutines: FastAPI runs them in the event loop instead
# of handing each to a worker thread.
async def get_db(request: Request) -> Database:
    return db_of(request)


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def _credentials(request: Request) -> tuple[str, str]:
    """(scheme, value) of the Authorization header; ("", "") when absent."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower(), value.strip()


def basic_pair(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthenticated("malformed Basic credentials") from None
    login, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthenticated("malformed Basic credentials")
    return login, password


def authenticate(request: Request) -> Principal:
    """The principal of the request; :class:`Unauthenticated` without valid credentials.
    Reads only, except to record a failed login or a token's last use."""
    from multiflexi.accounts import throttle
    from multiflexi.accounts.access import login_with_password, principal_of
    from multiflexi.accounts.tokens import resolve_token, touch_token
    from multiflexi.audit import current_actor

    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    db = db_of(request)
    scheme, value = _credentials(request)
    who: Principal | None
    if scheme == "basic":
        login, password = basic_pair(value)
        limits = throttle.Limits.from_settings(settings_of(request))
        who = login_with_password(
            db, login, password, address=client_address(request), limits=limits
        )
        if who is None:
            raise Unauthenticated("invalid login or password")
    elif scheme == "bearer":
        with db.read() as s:
            user, stale = resolve_token(s, value)
            who = principal_of(s, user)
        if stale is not None:
            with db.session() as s:
                touch_token(s, stale)
    else:
        raise Unauthenticated("authentication required: HTTP Basic or a bearer token")
    actor = current_actor()
    if actor is not None:
        actor.login, actor.user_id = who.login, who.user_id
    request.state.principal = who
    return who


Who = Annotated[Principal, Depends(authenticate)]
Db = Annotated[Database, Depends(get_db)]
Conf = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True)
class Shape:
    """How lists of apps, jobs and run templates are shaped, and for which client.

    ``arrays``: a JSON array instead of the spec's id-keyed object. ``client11``: the
    generated Python client (``multiflexi-client`` 1.x), whose models differ from the spec
    in a few types (see docs/api.md).
    """

    arrays: bool = False
    client11: bool = False


async def get_shape(
    request: Request,
    shape: Annotated[
        str | None,
        Query(pattern="^(array|object)$", description="List shape: array or object (id-keyed)"),
    ] = None,
) -> Shape:
    agent = request.headers.get("user-agent", "")
    generated = agent.startswith("OpenAPI-Generator/1.")
    accept = request.headers.get("accept", "")
    if shape is not None:
        arrays = shape == "array"
    else:
        arrays = generated or "shape=array" in accept.replace(" ", "")
    return Shape(arrays=arrays, client11=generated)


Shaped = Annotated[Shape, Depends(get_shape)]


async def pagination(
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    order: Annotated[str | None, Query(max_length=64, pattern=r"^[-+]?[A-Za-z_]+$")] = None,
) -> Any:
    from multiflexi.catalog import Page

    return Page(limit=limit, offset=offset, order=order)


#: An id in a path: a positive 32-bit integer (larger ones are 422, never a database error).
PathId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def as_utc(value: datetime | None) -> datetime | None:
    """A query's time in UTC; a naive time is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
