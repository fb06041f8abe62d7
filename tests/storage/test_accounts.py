"""Password checks, remembered Basic logins, throttling and scoping in the service layer."""

from __future__ import annotations

from multiflexi.accounts import throttle
from multiflexi.accounts.access import check_login
from multiflexi.accounts.service import create_user, update_user
from multiflexi.errors import Throttled
from multiflexi.storage.database import Database

LIMITS = throttle.Limits(free=2, base_seconds=60, max_failures=5, lock_seconds=600)


def test_a_changed_password_is_checked_again_at_once(any_db: Database) -> None:
    with any_db.session() as s:
        create_user(s, login="ann", email="ann@example.com", password="first-password")
    with any_db.session() as s:
        assert check_login(s, "ann", "first-password", address="a", limits=LIMITS) is not None
        assert check_login(s, "ann", "first-password", address="a", limits=LIMITS) is not None
    with any_db.session() as s:
        user = check_login(s, "ann", "first-password", address="a", limits=LIMITS)
        assert user is not None
        update_user(s, user, {"password": "second-password"})
    with any_db.session() as s:
        assert check_login(s, "ann", "first-password", address="a", limits=LIMITS) is None
        assert check_login(s, "ann", "second-password", address="a", limits=LIMITS) is not None
    with any_db.session() as s:
        user = check_login(s, "ann", "second-password", address="a", limits=LIMITS)
        assert user is not None
        update_user(s, user, {"enabled": False})
    with any_db.session() as s:
        assert check_login(s, "ann", "second-password", address="a", limits=LIMITS) is None


def test_failures_past_the_free_ones_make_the_pair_wait_and_only_that_pair(
    any_db: Database,
) -> None:
    with any_db.session() as s:
        create_user(s, login="bob", email="bob@example.com", password="right-password")
    for _ in range(3):
        with any_db.session() as s:
            assert check_login(s, "bob", "wrong", address="1.2.3.4", limits=LIMITS) is None
    with any_db.session() as s:
        try:
            check_login(s, "bob", "right-password", address="1.2.3.4", limits=LIMITS)
            raise AssertionError("not throttled")
        except Throttled as exc:
            assert exc.retry_after >= 1
    with any_db.session() as s:  # another address is not affected
        assert check_login(s, "bob", "right-password", address="5.6.7.8", limits=LIMITS)
