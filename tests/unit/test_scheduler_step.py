"""The pure part of the scheduler step: which tick is due (latest fire at or before now)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from multiflexi.errors import Invalid
from multiflexi.scheduling.calendar import next_fire
from multiflexi.scheduling.scheduler import SCHEDULE_TYPES, Ticks, _reference, latest_fire

PRAGUE = "Europe/Prague"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("interv", "cron", "at", "tz", "delay", "expected"),
    [
        ("i", None, utc(2026, 11, 28, 10, 0, 30), "UTC", 0, utc(2026, 11, 28, 10, 0)),
        ("i", None, utc(2026, 11, 28, 10, 0, 0), "UTC", 0, utc(2026, 11, 28, 10, 0)),
        ("h", None, utc(2026, 11, 28, 10, 59, 59), "UTC", 0, utc(2026, 11, 28, 10, 0)),
        ("d", None, utc(2026, 11, 28, 20, 25), "UTC", 0, utc(2026, 11, 28)),
        ("d", None, utc(2026, 11, 28, 0, 0, 59), "UTC", 90, utc(2026, 11, 27, 0, 1, 30)),
        ("w", None, utc(2026, 11, 28, 12), "UTC", 0, utc(2026, 11, 23)),  # Monday
        ("m", None, utc(2026, 11, 28, 12), "UTC", 0, utc(2026, 11, 1)),
        ("y", None, utc(2026, 11, 28, 12), "UTC", 0, utc(2026, 1, 1)),
        ("c", "0 0 29 2 *", utc(2026, 11, 28), "UTC", 0, utc(2024, 2, 29)),
        ("d", None, utc(2026, 11, 28, 22, 30), PRAGUE, 0, local(PRAGUE, 2026, 11, 28)),
        ("d", None, utc(2026, 11, 28, 23, 30), PRAGUE, 0, local(PRAGUE, 2026, 11, 29)),
        # 02:30 does not exist on 2026-03-29 in Prague: it fires at 03:30 CEST.
        ("c", "30 2 * * *", local(PRAGUE, 2026, 3, 29, 4), PRAGUE, 0, utc(2026, 3, 29, 1, 30)),
        ("c", "30 2 * * *", local(PRAGUE, 2026, 3, 29, 3), PRAGUE, 0, utc(2026, 3, 28, 1, 30)),
        # 02:30 happens twice on 2026-10-25: a daily rule fires at the first one only.
        (
            "c",
            "30 2 * * *",
            local(PRAGUE, 2026, 10, 25, 2, 45, fold=1),
            PRAGUE,
            0,
            local(PRAGUE, 2026, 10, 25, 2, 30),
        ),
        ("n", None, utc(2026, 11, 28), "UTC", 0, None),
    ],
)
def test_the_latest_fire_at_or_before_a_moment(
    interv: str, cron: str | None, at: datetime, tz: str, delay: int, expected: datetime | None
) -> None:
    assert latest_fire(interv, cron, at, tz, delay) == expected


def test_an_hourly_rule_fires_in_both_repeated_hours_of_the_autumn_change() -> None:
    first = local(PRAGUE, 2026, 10, 25, 2, 0)
    second = local(PRAGUE, 2026, 10, 25, 2, 0, fold=1)
    assert second - first == timedelta(hours=1)
    assert latest_fire("h", None, second + timedelta(minutes=5), PRAGUE) == second
    assert latest_fire("h", None, second - timedelta(minutes=5), PRAGUE) == first


@pytest.mark.parametrize(
    ("interv", "cron", "tz"),
    [
        ("i", None, "UTC"),
        ("h", None, PRAGUE),
        ("c", "*/7 3-5 * * 1,3", PRAGUE),
        ("w", None, PRAGUE),
    ],
)
def test_latest_fire_agrees_with_next_fire(interv: str, cron: str | None, tz: str) -> None:
    moment = utc(2026, 3, 27)
    for _ in range(40):
        moment = moment + timedelta(minutes=97)
        latest = latest_fire(interv, cron, moment, tz)
        assert latest is not None and latest <= moment
        following = next_fire(interv, cron, latest, tz)
        assert following is not None and following > moment


def test_an_invalid_cron_is_refused() -> None:
    with pytest.raises(Invalid):
        latest_fire("c", "61 * * * *", utc(2026, 1, 1), "UTC")


def test_cached_ticks_are_valid_until_the_following_tick() -> None:
    ticks = Ticks(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), utc(2026, 1, 1, 10, 30))
    assert ticks.valid_at(utc(2026, 1, 1, 10, 59))
    assert not ticks.valid_at(utc(2026, 1, 1, 11))
    assert not ticks.valid_at(utc(2026, 1, 1, 10, 29))  # time went back: recompute


def test_a_template_fires_for_ticks_after_it_last_fired_or_changed() -> None:
    last, created, saved = utc(2026, 1, 1, 10), utc(2025, 1, 1), utc(2026, 1, 1, 12)
    assert _reference(last, created, saved) == saved
    assert _reference(None, created, None) == created
    assert _reference(last, created, None) == last


def test_every_interval_code_has_its_schedule_type() -> None:
    assert SCHEDULE_TYPES == {
        "y": "yearly",
        "m": "monthly",
        "w": "weekly",
        "d": "daily",
        "h": "hourly",
        "i": "minutely",
        "c": "custom",
    }
