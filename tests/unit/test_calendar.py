"""Interval codes, cron validation and fire times across DST changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiflexi.errors import Invalid
from multiflexi.scheduling.calendar import (
    INTERVAL_CRON,
    cron_for,
    next_fire,
    upcoming,
    validate_cron,
    validate_interval,
)

PRAGUE = "Europe/Prague"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(dt: datetime, tz: str = PRAGUE) -> str:
    return dt.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(
    ("code", "cron"),
    [
        ("y", "0 0 1 1 *"),
        ("m", "0 0 1 * *"),
        ("w", "0 0 * * 1"),
        ("d", "0 0 * * *"),
        ("h", "0 * * * *"),
        ("i", "* * * * *"),
    ],
)
def test_interval_codes_stand_for_the_upstream_cron_expressions(code: str, cron: str) -> None:
    assert INTERVAL_CRON[code] == cron
    assert cron_for(code, "5 5 5 5 5") == cron  # a stored cron is ignored unless interv c


def test_not_scheduled_and_custom_intervals() -> None:
    assert cron_for("n", "0 0 * * *") is None
    assert next_fire("n", None, utc(2026, 1, 1), PRAGUE) is None
    assert upcoming("n", None, utc(2026, 1, 1), PRAGUE) == []
    assert cron_for("c", " 30  2 * * * ") == "30 2 * * *"
    with pytest.raises(Invalid, match="needs a cron expression"):
        cron_for("c", None)
    with pytest.raises(Invalid, match="unknown interval 'x'"):
        validate_interval("x")


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 9-17/2 * * MON-FRI", "0 9-17/2 * * mon-fri"),
        ("0 0 L * *", "0 0 L * *"),
        ("0 0 1 jul *", "0 0 1 jul *"),
        ("0 0 * * 5#2", "0 0 * * 5#2"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("0 0 * * 7", "0 0 * * 7"),
        ("5 4 1,15 * *", "5 4 1,15 * *"),
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@midnight", "0 0 * * *"),
    ],
)
def test_valid_cron_expressions_are_normalised(expr: str, normalised: str) -> None:
    assert validate_cron(expr) == normalised


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * * * *", "has 6 fields; expected 5"),
        ("0 0 0 * * * 2026", "has 7 fields"),
        ("garbage", "has 1 field;"),
        ("@reboot", "has 1 field;"),
        ("", "has 0 fields"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("0 24 * * *", "hour value 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("0 0 * 13 *", "month value 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week value 8 is out of range 0-7"),
        ("*/0 * * * *", "minute step must be at least 1"),
        ("5-1 * * * *", "minute range 5-1 is reversed"),
        ("H * * * *", "minute field has an invalid value 'h'"),
        ("0 0 ? * *", "day-of-month field has an invalid part '?'"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 1 * 5#2", "combines a day of month .1. with an nth weekday .5#2."),
        ("0 0 L * mon#1", "combines a day of month .L. with an nth weekday"),
    ],
)
def test_invalid_cron_expressions_are_refused_with_a_precise_reason(
    expr: str, message: str
) -> None:
    with pytest.raises(Invalid, match=message.replace("?", r"\?").replace("*", r"\*")):
        validate_cron(expr)


def test_fire_times_are_strictly_after_the_given_moment() -> None:
    assert next_fire("d", None, utc(2026, 1, 1, 0, 0), "UTC") == utc(2026, 1, 2)
    assert next_fire("d", None, utc(2025, 12, 31, 23, 59, 59), "UTC") == utc(2026, 1, 1)
    assert next_fire("h", None, utc(2026, 1, 1, 10, 0, 0, 1), "UTC") == utc(2026, 1, 1, 11)


def test_daily_rule_is_evaluated_in_the_configured_time_zone() -> None:
    # midnight in Prague is 23:00 UTC in winter and 22:00 UTC in summer
    assert next_fire("d", None, utc(2026, 1, 10, 12), PRAGUE) == utc(2026, 1, 10, 23)
    assert next_fire("d", None, utc(2026, 7, 10, 12), PRAGUE) == utc(2026, 7, 10, 22)
    assert next_fire("w", None, utc(2026, 1, 10, 12), PRAGUE) == utc(2026, 1, 11, 23)  # Monday


def test_delay_is_added_to_every_tick() -> None:
    after = utc(2026, 1, 1, 0, 0, 30)
    assert upcoming("d", None, after, "UTC", 2, delay=60) == [
        utc(2026, 1, 1, 0, 1),
        utc(2026, 1, 2, 0, 1),
    ]


def test_invalid_time_zone_and_naive_moment_are_refused() -> None:
    with pytest.raises(Invalid, match="unknown time zone 'Mars/Olympus'"):
        next_fire("d", None, utc(2026, 1, 1), "Mars/Olympus")
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire("d", None, datetime(2026, 1, 1), "UTC")


# -- DST: Europe/Prague, spring forward 2026-03-29 02:00 -> 03:00 -------------------------


def test_daily_0230_runs_once_at_0330_on_the_spring_forward_day() -> None:
    runs = upcoming("c", "30 2 * * *", utc(2026, 3, 27, 12), PRAGUE, 4)
    assert [local(r) for r in runs] == [
        "2026-03-28 02:30 CET",
        "2026-03-29 03:30 CEST",
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
    ]


def test_hourly_runs_every_real_hour_across_spring_forward() -> None:
    runs = upcoming("h", None, utc(2026, 3, 28, 23, 30), PRAGUE, 4)
    assert runs == [
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
        utc(2026, 3, 29, 3),
    ]
    assert [local(r) for r in runs[:2]] == ["2026-03-29 01:00 CET", "2026-03-29 03:00 CEST"]


def test_minutely_runs_every_real_minute_across_spring_forward() -> None:
    runs = upcoming("i", None, utc(2026, 3, 29, 0, 58, 30), PRAGUE, 3)
    assert runs == [utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 1)]
    assert local(runs[1]) == "2026-03-29 03:00 CEST"


def test_daily_midnight_is_unaffected_by_spring_forward() -> None:
    runs = upcoming("d", None, utc(2026, 3, 27, 12), PRAGUE, 3)
    assert [local(r) for r in runs] == [
        "2026-03-28 00:00 CET",
        "2026-03-29 00:00 CET",
        "2026-03-30 00:00 CEST",
    ]


# -- DST: Europe/Prague, fall back 2026-10-25 03:00 -> 02:00 ------------------------------


def test_daily_0230_runs_once_on_the_fall_back_day() -> None:
    runs = upcoming("c", "30 2 * * *", utc(2026, 10, 23, 12), PRAGUE, 4)
    assert [local(r) for r in runs] == [
        "2026-10-24 02:30 CEST",
        "2026-10-25 02:30 CEST",
        "2026-10-26 02:30 CET",
        "2026-10-27 02:30 CET",
    ]


def test_between_the_two_0230s_the_next_daily_run_is_the_next_day() -> None:
    between = utc(2026, 10, 25, 0, 45)  # 02:45 CEST, before 02:30 CET happens
    assert local(next_fire("c", "30 2 * * *", between, PRAGUE)) == "2026-10-26 02:30 CET"  # type: ignore[arg-type]


def test_hourly_runs_in_both_repeated_hours_on_the_fall_back_day() -> None:
    runs = upcoming("h", None, utc(2026, 10, 24, 22, 30), PRAGUE, 4)
    assert runs == [
        utc(2026, 10, 24, 23),
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 2),
    ]
    assert [local(r) for r in runs[1:3]] == ["2026-10-25 02:00 CEST", "2026-10-25 02:00 CET"]


def test_minutely_runs_every_real_minute_across_fall_back() -> None:
    runs = upcoming("i", None, utc(2026, 10, 25, 0, 58, 1), PRAGUE, 3)
    assert runs == [utc(2026, 10, 25, 0, 59), utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 1)]


def test_a_rule_for_every_minute_of_hour_2_runs_only_in_the_first_occurrence() -> None:
    runs = upcoming("c", "* 2 * * *", utc(2026, 10, 24, 23, 58), PRAGUE, 61)
    assert local(runs[0]) == "2026-10-25 02:00 CEST"
    assert local(runs[59]) == "2026-10-25 02:59 CEST"
    assert local(runs[60]) == "2026-10-26 02:00 CET"


def test_a_day_skipped_entirely_fires_the_daily_rule_once() -> None:
    # Samoa skipped 2011-12-30 when it moved across the date line.
    runs = upcoming("d", None, utc(2011, 12, 28, 12), "Pacific/Apia", 3)
    days = [r.astimezone(ZoneInfo("Pacific/Apia")).date().isoformat() for r in runs]
    assert days == ["2011-12-29", "2011-12-31", "2012-01-01"]


# -- properties -----------------------------------------------------------------------

ZONES = [
    "UTC",
    PRAGUE,
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Apia",
    "Pacific/Chatham",
]
RULES = [
    ("y", None),
    ("m", None),
    ("w", None),
    ("d", None),
    ("h", None),
    ("i", None),
    ("c", "30 2 * * *"),
    ("c", "0 0 * * *"),
    ("c", "*/20 1-3 * * *"),
    ("c", "15 * * * 0"),
    ("c", "0 3 L * *"),
]
moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(
    after=moments,
    rule=st.sampled_from(RULES),
    tz=st.sampled_from(ZONES),
    delay=st.sampled_from([0, 0, 45, 3600]),
)
def test_upcoming_runs_are_strictly_increasing_aware_utc_and_after_the_moment(
    after: datetime, rule: tuple[str, str | None], tz: str, delay: int
) -> None:
    runs = upcoming(rule[0], rule[1], after, tz, 4, delay)
    assert len(runs) == 4
    assert all(r.tzinfo is UTC for r in runs)
    assert runs[0] > after
    assert all(a < b for a, b in itertools.pairwise(runs))


@settings(max_examples=100, deadline=None)
@given(after=moments, tz=st.sampled_from(ZONES))
def test_minutely_never_skips_a_real_minute(after: datetime, tz: str) -> None:
    first = next_fire("i", None, after, tz)
    assert first is not None
    assert timedelta(0) < first - after <= timedelta(minutes=1)


@settings(max_examples=100, deadline=None)
@given(after=moments, tz=st.sampled_from(ZONES), cron=st.sampled_from(["30 2 * * *", "0 0 * * *"]))
def test_a_daily_rule_fires_at_most_once_per_local_date(
    after: datetime, tz: str, cron: str
) -> None:
    runs = upcoming("c", cron, after, tz, 5)
    days = [r.astimezone(ZoneInfo(tz)).date() for r in runs]
    assert all(a < b for a, b in itertools.pairwise(days))
    assert all((b - a).days <= 2 for a, b in itertools.pairwise(days))
