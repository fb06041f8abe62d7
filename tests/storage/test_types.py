"""Timestamps keep microseconds and UTC on every backend; any text and any bytes come back
as they went in, whatever the quoting mode (MariaDB runs with NO_BACKSLASH_ESCAPES)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import LargeBinary, bindparam, insert, select, text

from multiflexi.storage.database import Database
from multiflexi.storage.models import Company

#: Every character a quoting routine treats specially, in text and inside JSON (but NUL,
#: which PostgreSQL text cannot hold: it is in the bytes).
AWKWARD = "a\\b\\\\c'd''e\"fg\nh\ri\x1aj\tk%l_m\\'n\\\"o ž 🙂"


def test_timestamps_round_trip_in_utc_with_microseconds(any_db: Database) -> None:
    prague = timezone(timedelta(hours=2))
    stamp = datetime(2026, 3, 29, 3, 30, 15, 123456, tzinfo=prague)
    with any_db.session() as s:
        s.add(Company(name="Acme", slug="acme", created=stamp))
    with any_db.read() as s:
        got = s.query(Company).one().created
    assert got == stamp
    assert got.tzinfo == UTC
    assert got.microsecond == 123456


def test_awkward_text_and_all_bytes_round_trip(any_db: Database) -> None:
    document = json.dumps({"value": AWKWARD, "nested": [AWKWARD]})
    with any_db.session() as s:
        s.add(Company(name="one", slug="one", settings=AWKWARD, logo=document))
        # Several rows in one statement: PyMySQL rewrites it into a multi-row INSERT.
        s.execute(
            insert(Company),
            [
                {"name": f"bulk {i}", "slug": f"bulk-{i}", "settings": AWKWARD, "logo": document}
                for i in range(3)
            ],
        )
    every_byte = bytes(range(256)) * 4
    with any_db.read() as s:
        stored = s.execute(select(Company.settings, Company.logo)).all()
        found = s.scalars(
            select(Company.slug).where(Company.settings.contains(AWKWARD, autoescape=True))
        ).all()
        echoed = s.scalar(select(bindparam("blob", every_byte, type_=LargeBinary)))
    assert stored == [(AWKWARD, document)] * 4
    assert sorted(found) == ["bulk-0", "bulk-1", "bulk-2", "one"]
    assert bytes(echoed) == every_byte


def test_mariadb_sessions_quote_by_doubling_and_sqlalchemy_knows(any_db: Database) -> None:
    if any_db.dialect != "mysql":
        pytest.skip("a MariaDB session mode")
    from pymysql.constants import SERVER_STATUS

    with any_db.read() as s:
        mode = s.scalar(text("SELECT @@SESSION.sql_mode"))
        driver = s.connection().connection.driver_connection
        assert driver is not None
        flags = driver.server_status
    assert "NO_BACKSLASH_ESCAPES" in mode.split(",")
    assert flags & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
    # Literals SQLAlchemy renders itself follow the same mode.
    assert any_db.engine.dialect._backslash_escapes is False  # type: ignore[attr-defined]
