"""Throttling of failed logins per (login, client address): exponential delay, then a lock.

After ``free`` failures each further one makes the pair wait ``base * 2**(n - free)``
seconds (capped at ``lock_seconds``) before the next attempt is even checked; at
``max_failures`` the pair is locked for ``lock_seconds``. A success clears the record.
Limits come from ``API_RATE_LIMIT_*`` settings (upstream's names).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.orm import Session

from multiflexi.errors import ConfigError, Throttled
from multiflexi.storage.models import LoginAttempt
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings


@dataclass(frozen=True)
class Limits:
    free: int = 3
    base_seconds: float = 1.0
    max_failures: int = 10
    lock_seconds: int = 900

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        def num(key: str, default: float) -> float:
            raw = settings.get(key)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {raw!r}") from None
            if value < 0:
                raise ConfigError(f"{key} must not be negative")
            return value

        return cls(
            free=int(num("API_RATE_LIMIT_FREE_FAILURES", cls.free)),
            base_seconds=num("API_RATE_LIMIT_BASE_DELAY", cls.base_seconds),
            max_failures=max(1, int(num("API_RATE_LIMIT_MAX_FAILURES", cls.max_failures))),
            lock_seconds=int(num("API_RATE_LIMIT_LOCK_SECONDS", cls.lock_seconds)),
        )


def key_of(login: str, address: str) -> str:
    return f"{login[:255]}|{address[:64]}"


def check_allowed(session: Session, key: str) -> None:
    """Raise :class:`Throttled` while the pair must wait."""
    row = session.get(LoginAttempt, key)
    now = utcnow()
    if row is not None and row.locked_until is not None and row.locked_until > now:
        wait = int((row.locked_until - now).total_seconds()) + 1
        raise Throttled(f"too many failed logins; try again in {wait} s", retry_after=wait)


def record_failure(session: Session, key: str, limits: Limits) -> None:
    now = utcnow()
    row = session.get(LoginAttempt, key)
    if row is None:
        row = LoginAttempt(key=key, failures=0, last_failure=now)
        session.add(row)
    row.failures += 1
    row.last_failure = now
    if row.failures >= limits.max_failures:
        row.locked_until = now + timedelta(seconds=limits.lock_seconds)
    elif row.failures > limits.free:
        delay = min(
            limits.base_seconds * 2 ** (row.failures - limits.free - 1), limits.lock_seconds
        )
        row.locked_until = now + timedelta(seconds=delay)
    session.flush()


def record_success(session: Session, key: str) -> None:
    session.execute(delete(LoginAttempt).where(LoginAttempt.key == key))
