"""Password checks, remembered Basic logins and throttling in the service layer."""

from __future__ import annotations

from multiflexi.accounts import throttle
from multiflexi.accounts.access import login_with_password
from multiflexi.accounts.service import create_user, find_user, update_user
from multiflexi.errors import Throttled
from multiflexi.storage.database import Database

LIMITS = throttle.Limits(free=2, base_seconds=60, max_failures=5, lock_seconds=600)


def _login(db: Database, login: str, password: str, address: str = "a") -> bool:
    return login_with_password(db, login, password, address=address, limits=LIMITS) is not None


def test_a_changed_password_is_checked_again_at_once(any_db: Database) -> None:
    with any_db.session() as s:
        create_user(s, login="ann", email="ann@example.com", password="first-password")
    assert _login(any_db, "ann", "first-password")
    assert _login(any_db, "ann", "first-password")  # remembered
    with any_db.session() as s:
        update_user(s, find_user(s, login="ann"), {"password": "second-password"})
    assert not _login(any_db, "ann", "first-password")
    assert _login(any_db, "ann", "second-password")
    with any_db.session() as s:
        update_user(s, find_user(s, login="ann"), {"enabled": False})
    assert not _login(any_db, "ann", "second-password")


def test_failures_past_the_free_ones_make_the_pair_wait_and_only_that_pair(
    any_db: Database,
) -> None:
    with any_db.session() as s:
        create_user(s, login="bob", email="bob@example.com", password="right-password")
    for _ in range(3):
        assert not _login(any_db, "bob", "wrong", "1.2.3.4")
    try:
        _login(any_db, "bob", "right-password", "1.2.3.4")
        raise AssertionError("not throttled")
    except Throttled as exc:
        assert exc.retry_after >= 1
    assert _login(any_db, "bob", "right-password", "5.6.7.8")  # another address
