"""The user a command or daemon acts as: the Unix account running it."""

from __future__ import annotations

import getpass
import socket

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.storage.models import User


def unix_login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def current_user(session: Session) -> User:
    """The user row of the Unix account, created (disabled for web login) on first use."""
    from sqlalchemy.exc import IntegrityError

    login = unix_login()[:64]
    user = session.scalar(select(User).where(User.login == login))
    if user is None:
        # Two daemons starting on a fresh database may both try: the loser re-reads.
        try:
            with session.begin_nested():
                user = User(login=login, email=f"{login}@{socket.gethostname()}", enabled=False)
                session.add(user)
        except IntegrityError:
            user = session.scalars(select(User).where(User.login == login)).one()
    return user
