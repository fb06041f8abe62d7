"""The audit log: every change made through the CLI or the API, who made it, and what.

Changes are recorded by a SQLAlchemy ``after_flush`` hook, so every service function is
covered without calling anything: :func:`acting_as` (or :func:`set_actor`) says who acts,
and every flush of an audited table in that context writes one ``auditlog`` row per
object, in the same transaction. Values of secret columns are recorded as changed but
never with their value. Daemons set no actor: their state changes of jobs are not
user changes and are not logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.orm import Session

from multiflexi.errors import NotFound
from multiflexi.storage.models import AuditLog, Base, table_of
from multiflexi.storage.types import utcnow

REDACTED = "••••••••"
#: Tables whose changes are user changes; ``job`` only for create and delete.
AUDITED = {
    "user", "token", "rbac_user_roles", "company_user", "company", "companyenv", "companyapp",
    "apps", "runtemplate", "configuration", "actionconfig", "credentials", "credata",
    "runtplcreds", "credential_type", "job",
}  # fmt: skip
#: Columns never recorded with their value.
SECRET_COLUMNS = {"password", "token_hash", "value", "env", "overrides", "argv", "content", "data"}


@dataclass
class Actor:
    """Who acts: ``source`` is ``cli`` or ``api``; filled in by the API once authenticated."""

    source: str
    login: str = ""
    user_id: int | None = None
    address: str = ""


_actor: ContextVar[Actor | None] = ContextVar("multiflexi_actor", default=None)
_installed: list[bool] = []


def _install() -> None:
    if not _installed:
        event.listen(Session, "after_flush", _record)
        _installed.append(True)


def set_actor(actor: Actor | None) -> None:
    """Make ``actor`` the author of the changes of this context (thread, request)."""
    _install()
    _actor.set(actor)


def current_actor() -> Actor | None:
    return _actor.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    _install()
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _fields(obj: Base, *, only_changed: bool) -> dict[str, Any]:
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        column = attr.columns[0]
        if only_changed and not state.attrs[attr.key].history.has_changes():
            continue
        value = getattr(obj, attr.key, None)
        out[column.name] = REDACTED if column.name in SECRET_COLUMNS else _plain(value)
    return out


def _entity_id(obj: Base) -> str:
    key = inspect(obj).mapper.primary_key_from_instance(obj)
    return ",".join(str(part) for part in key if part is not None)


def _record(session: Session, _flush_context: Any) -> None:
    actor = _actor.get()
    if actor is None:
        return
    rows: list[dict[str, Any]] = []
    now = utcnow()

    def add(obj: Any, action: str, changes: dict[str, Any]) -> None:
        table = getattr(obj, "__tablename__", None)
        if table not in AUDITED:
            return
        rows.append(
            {
                "created_at": now,
                "user_id": actor.user_id,
                "login": actor.login[:64],
                "source": actor.source[:16],
                "address": actor.address[:64],
                "entity_type": table,
                "entity_id": _entity_id(obj)[:64],
                "action": action,
                "changes": changes,
                "note": "",
            }
        )

    for obj in session.new:
        add(obj, "create", _fields(obj, only_changed=False))
    for obj in session.dirty:
        if getattr(obj, "__tablename__", None) == "job" or not session.is_modified(obj):
            continue
        changes = _fields(obj, only_changed=True)
        if changes:
            add(obj, "update", changes)
    for obj in session.deleted:
        add(obj, "delete", {})
    if rows:
        session.connection().execute(insert(table_of(AuditLog)), rows)


def audit_record(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "user_id": row.user_id,
        "login": row.login,
        "source": row.source,
        "address": row.address,
        "entity_type": row.entity_type,
        "entity_id": row.entity_id,
        "action": row.action,
        "changes": row.changes,
    }


def list_audit(
    session: Session,
    *,
    user_id: int | None = None,
    login: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    descending: bool = True,
) -> list[AuditLog]:
    """Audit entries, newest first, filtered."""
    stmt = select(AuditLog)
    if user_id is not None:
        stmt = stmt.where(AuditLog.user_id == user_id)
    if login:
        stmt = stmt.where(AuditLog.login == login)
    if entity_type:
        stmt = stmt.where(AuditLog.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    if since is not None:
        stmt = stmt.where(AuditLog.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditLog.created_at <= until)
    order = AuditLog.id.desc() if descending else AuditLog.id.asc()
    return list(session.scalars(stmt.order_by(order).limit(limit).offset(offset)))


def get_audit(session: Session, entry_id: int) -> AuditLog:
    row = session.get(AuditLog, entry_id)
    if row is None:
        raise NotFound(f"audit log entry {entry_id} not found")
    return row
