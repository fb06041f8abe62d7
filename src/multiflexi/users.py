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
    login = unix_login()[:64]
    user = session.scalar(select(User).where(User.login == login))
    if user is None:
        user = User(login=login, email=f"{login}@{socket.gethostname()}", enabled=False)
        session.add(user)
        session.flush()
    return user
