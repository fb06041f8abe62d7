"""Timestamps keep microseconds and UTC on every backend; large blobs fit on MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from multiflexi.storage.database import Database
from multiflexi.storage.models import Company


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
