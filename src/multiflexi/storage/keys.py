"""The database's side of the master key's identity (table ``mf_setting``).

The first secret written records the fingerprint of the key that sealed it; every process
compares its own key with the recorded one before its first secret (see
:mod:`multiflexi.secrets`). Recording happens in the transaction that writes the secret
when the thread is inside one (the fingerprint and the secret commit together; a second
writer on SQLite would wait for the lock this thread holds), else in one of its own. Two
hosts recording at once: the primary key lets one win, the other reads the winner's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, cast, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from multiflexi.secrets import PREFIX
from multiflexi.storage.models import (
    ActionConfig,
    Configuration,
    CreData,
    Job,
    ModConfig,
    Setting,
)
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.storage.database import Database

#: The row of ``mf_setting`` that holds the fingerprint.
FINGERPRINT = "master_key_fingerprint"

#: Columns that hold one sealed value each, small tables: looked at by the start-up check.
_SMALL = (CreData.value, Configuration.value, ActionConfig.value, ModConfig.value)
#: Columns of JSON documents with sealed values inside (the job table: only when a secret
#: is about to be written and no identity is recorded, once in a database's life).
_JOBS = (Job.overrides, Job.env)


class KeyIdentity:
    """The recorded fingerprint of ``db`` (one per :class:`Database`), or of the database
    of ``session`` (for code that has only a session: everything then happens in it)."""

    def __init__(self, db: Database | None, session: Session | None = None) -> None:
        self.db, self.session = db, session
        #: The fingerprint this process found to be the database's.
        self.accepted: str | None = None

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        if self.session is not None:
            yield self.session
            return
        assert self.db is not None
        with self.db.read() as session:
            yield session

    def recorded(self) -> str | None:
        with self._reading() as session:
            return session.scalar(select(Setting.value).where(Setting.name == FINGERPRINT))

    def find_sealed(self, *, jobs: bool = True) -> str | None:
        """One sealed value stored in the database, or None. ``jobs``: also look inside
        the jobs' environments (a scan of the job table)."""
        with self._reading() as session:
            for column in _SMALL:
                found = session.scalar(select(column).where(column.like(PREFIX + "%")).limit(1))
                if found:
                    return str(found)
            if not jobs:
                return None
            for document in _JOBS:
                text = cast(document, Text)
                doc = session.scalar(select(text).where(text.like(f"%{PREFIX}%")).limit(1))
                if doc:
                    return _first_sealed(doc)
        return None

    def record(self, fingerprint: str) -> str:
        """Record ``fingerprint`` unless one is already; returns the recorded one."""
        row = {
            "name": FINGERPRINT,
            "value": fingerprint,
            "origin": f"{os.uname().nodename} pid {os.getpid()}"[:255],
            "created": utcnow(),
        }
        if self.session is not None:
            return _record_in(self.session, row)
        assert self.db is not None
        current = self.db.current_write()
        if current is not None:
            return _record_in(current, row)
        return self.db.run(lambda session: _record_in(session, row))


def _record_in(handle: Any, row: dict[str, Any]) -> str:
    """Insert the row on ``handle`` (a Session or a Connection inside a transaction),
    within a savepoint: losing to another writer leaves the transaction usable."""
    try:
        with handle.begin_nested():
            handle.execute(insert(Setting).values(**row))
    except IntegrityError:
        pass
    return str(handle.execute(select(Setting.value).where(Setting.name == FINGERPRINT)).scalar())


def _first_sealed(document: str) -> str | None:
    start = document.find(PREFIX)
    if start < 0:
        return None
    end = start + len(PREFIX)
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
    while end < len(document) and document[end] in allowed:
        end += 1
    return document[start:end]
