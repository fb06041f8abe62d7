"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from multiflexi.errors import Invalid

MIN_LENGTH = 8
MAX_LENGTH = 1024


@lru_cache(maxsize=1)
def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def check_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise Invalid(f"password too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"password too long: at most {MAX_LENGTH} characters")
    if "\x00" in password:
        raise Invalid("password contains a NUL character")


def hash_password(password: str) -> str:
    check_password(password)
    return str(_hasher().hash(password))


#: Verified against when a login is unknown, so that unknown and known logins take as long.
_DUMMY: list[str] = []


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored``; an empty or foreign hash never matches."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if not stored.startswith("$argon2"):
        if not _DUMMY:
            _DUMMY.append(str(_hasher().hash("not a password")))
        stored = _DUMMY[0]
        password = "\x01" + password  # never matches the dummy
    try:
        return bool(_hasher().verify(stored, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
